// Each transport's wire mapping, with no network: the HTTP bodies against the shape and key order
// of DTM's Go SDK, and the gRPC messages against DTM's own proto (read from DTM's Go module, which
// scripts/setup.sh downloads), encoded with the module's embedded descriptor and decoded with the
// upstream file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { TransactionRequest } from '../../lib/transport/dtm-transport.js';
import { DTM_GRPC_DESCRIPTOR } from '../../lib/transport/grpc/dtm-grpc.proto.js';
import { toGrpcRegistration, toGrpcRequest } from '../../lib/transport/grpc/grpc-wire.js';
import { fromWireTransaction, toWireRegistration, toWireRequest } from '../../lib/transport/http/http-wire.js';
import { dtmModuleDir } from '../support/services/dtm.js';

const options = { timeoutToFail: 90, retryInterval: 12, branchTimeout: 8, branchHeaders: {} };

const saga: TransactionRequest = {
  gid: 'gid-1',
  transType: 'saga',
  options,
  concurrent: false,
  steps: [{ action: 'http://a/TransOut', compensate: 'http://a/TransOutRevert' }],
  payloads: ['{"amount":30}'],
};

describe('HTTP wire mapping', () => {
  it('a saga body: snake_case, keys in the Go SDK order, unset options left out', () => {
    const body = toWireRequest(saga);
    expect(body).toEqual({
      gid: 'gid-1',
      trans_type: 'saga',
      timeout_to_fail: 90,
      request_timeout: 8,
      retry_interval: 12,
      concurrent: false,
      steps: [{ action: 'http://a/TransOut', compensate: 'http://a/TransOutRevert' }],
      payloads: ['{"amount":30}'],
      protocol: '',
    });
    expect(Object.keys(body)).toEqual(['gid', 'trans_type', 'timeout_to_fail', 'request_timeout', 'retry_interval', 'concurrent', 'steps', 'payloads', 'protocol']);
  });

  it('every option, a back-check, a rollback reason and workflow extras', () => {
    const body = toWireRequest({
      gid: 'g',
      transType: 'msg',
      options: { ...options, retryLimit: 3, waitResult: true, branchHeaders: { 'x-tenant': 't' } },
      customData: '{"delay":1}',
      queryPrepared: 'http://a/qp',
      rollbackReason: 'because',
      extra: { status: 'succeed' },
    });
    expect(body).toMatchObject({
      custom_data: '{"delay":1}',
      wait_result: true,
      retry_limit: 3,
      branch_headers: { 'x-tenant': 't' },
      query_prepared: 'http://a/qp',
      rollback_reason: 'because',
      req_extra: { status: 'succeed' },
    });
  });

  it('no retry interval set: retry_interval is left out (DTM\'s own applies, as with the Go SDK\'s omitempty)', () => {
    const { retryInterval: _unset, ...noInterval } = options;
    const body = toWireRequest({ ...saga, options: noInterval });
    expect('retry_interval' in body).toBe(false);
    expect(toGrpcRequest({ ...saga, options: noInterval }).TransOptions.RetryInterval).toBe(0);
  });

  it('a TCC registration: the payload as data, confirm and cancel as fields', () => {
    expect(toWireRegistration({ gid: 'g', transType: 'tcc', branchId: '01', payload: '{"a":1}', fields: { confirm: 'http://c', cancel: 'http://x' } })).toEqual({
      gid: 'g',
      trans_type: 'tcc',
      branch_id: '01',
      data: '{"a":1}',
      confirm: 'http://c',
      cancel: 'http://x',
    });
  });
});

describe('HTTP query answers', () => {
  const base = { gid: 'g', trans_type: 'saga', status: 'succeed' } as const;
  const sqlOptions = '{"wait_result":true,"timeout_to_fail":300,"request_timeout":5,"retry_interval":7,"branch_headers":{"x-tenant":"t1"},"concurrent":true,"retry_limit":4}';

  it('a SQL store\'s answer (options only in the `options` text, top-level concurrent false): the options come from the text', () => {
    const record = fromWireTransaction({ ...base, options: sqlOptions, concurrent: false }, []);
    expect(record.options).toEqual({ timeoutToFail: 300, retryInterval: 7, branchTimeout: 5, retryLimit: 4, waitResult: true, branchHeaders: { 'x-tenant': 't1' }, concurrent: true });
    expect([record.steps, record.payloads]).toEqual([[], []]);
  });

  it('top-level fields (Redis / boltdb stores) win when set; the text fills in the rest', () => {
    const record = fromWireTransaction({ ...base, options: sqlOptions, timeout_to_fail: 60, branch_headers: { 'x-a': 'b' } }, []);
    expect(record.options).toMatchObject({ timeoutToFail: 60, retryInterval: 7, branchTimeout: 5, branchHeaders: { 'x-a': 'b' } });
  });

  it.each(['not json', '[1,2]', 'null', '"text"', '{"timeout_to_fail":"300","branch_headers":{"x":1,"y":"ok"},"retry_interval":null}'])('options text %s: ignored where it is not what DTM writes', (text) => {
    const record = fromWireTransaction({ ...base, options: text, retry_interval: 9 }, []);
    expect(record.options).toEqual({ timeoutToFail: undefined, retryInterval: 9, branchTimeout: undefined, retryLimit: undefined, waitResult: undefined, branchHeaders: text.startsWith('{') ? { y: 'ok' } : {}, concurrent: false });
  });

  it("a branch's data is a Buffer; in JSON, text on an HTTP transaction (base64 with dataEncoding when not UTF-8), base64 with dataEncoding on a gRPC one", () => {
    const branch = (data: Buffer, url?: string) => ({ gid: 'g', branch_id: '01', op: 'action', status: 'succeed' as const, url, bin_data: data.toString('base64'), finish_time: '2026-12-07T11:00:00Z' });
    const json = (protocol: string, ...branches: ReturnType<typeof branch>[]) => JSON.parse(JSON.stringify(fromWireTransaction({ ...base, protocol }, branches))).branches;
    const text = Buffer.from('{"amount":30,"note":"caf\u00e9"}');
    const bytes = Buffer.from([0x0a, 0x02, 0xff, 0xfe]);
    const record = fromWireTransaction({ ...base, protocol: 'http' }, [branch(text, 'http://bank/in')]);
    expect(Buffer.isBuffer(record.branches[0].data)).toBe(true);
    expect(record.branches[0].data.equals(text)).toBe(true);
    expect(json('http', branch(text, 'http://bank/in'), branch(bytes), branch(Buffer.alloc(0)))).toEqual([
      { branchId: '01', op: 'action', status: 'succeed', url: 'http://bank/in', data: '{"amount":30,"note":"caf\u00e9"}', finishTime: '2026-12-07T11:00:00.000Z' },
      { branchId: '01', op: 'action', status: 'succeed', data: bytes.toString('base64'), dataEncoding: 'base64', finishTime: '2026-12-07T11:00:00.000Z' },
      { branchId: '01', op: 'action', status: 'succeed', data: '', finishTime: '2026-12-07T11:00:00.000Z' },
    ]);
    // protobuf bytes are often valid UTF-8 too (0x0a, 0x01, 'x'): on gRPC they are base64 whatever they hold
    expect(json('grpc', branch(Buffer.from([0x0a, 0x01, 0x78]), 'bank:50051/bank.Bank/In'))).toEqual([
      { branchId: '01', op: 'action', status: 'succeed', url: 'bank:50051/bank.Bank/In', data: 'CgF4', dataEncoding: 'base64', finishTime: '2026-12-07T11:00:00.000Z' },
    ]);
  });
});

/** DTM v1.19.0's own dtmgimp.proto, parsed as it is. */
function upstreamRoot(): protobuf.Root {
  const text = readFileSync(join(dtmModuleDir(), 'client', 'dtmgrpc', 'dtmgpb', 'dtmgimp.proto'), 'utf8');
  const root = protobuf.parse(text, { keepCase: true }).root;
  root.add(protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/empty.proto')!).lookupType('google.protobuf.Empty'));
  return root;
}

describe('gRPC wire mapping', () => {
  it('the embedded descriptor is DTM v1.19.0\'s dtmgimp.proto: every message field (name, number, type, rule) and every method', () => {
    const upstream = upstreamRoot().lookup('dtmgimp') as protobuf.Namespace;
    const ours = protobuf.Root.fromJSON(DTM_GRPC_DESCRIPTOR as protobuf.INamespace).lookup('dtmgimp') as protobuf.Namespace;
    const shape = (ns: protobuf.Namespace) =>
      ns.nestedArray.map((item) =>
        item instanceof protobuf.Type
          ? { message: item.name, fields: item.fieldsArray.map((f) => `${f.id} ${f.name} ${f.repeated ? 'repeated' : ''} ${f.map ? (f as unknown as protobuf.MapField).keyType : ''} ${f.type}`) }
          : { service: item.name, methods: (item as protobuf.Service).methodsArray.map((m) => `${m.name}(${m.requestType}) ${m.responseType}`) },
      );
    expect(shape(ours).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))).toEqual(
      shape(upstream).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
  });

  it('a request encoded with the module\'s descriptor decodes with DTM\'s proto to what the Go SDK sends', () => {
    const definition = protoLoader.fromJSON(DTM_GRPC_DESCRIPTOR as never, { keepCase: true, longs: Number, defaults: true });
    const submit = (definition['dtmgimp.Dtm'] as Record<string, { requestSerialize(v: unknown): Buffer }>).Submit;
    const bytes = submit.requestSerialize(
      toGrpcRequest({
        ...saga,
        payloads: [Buffer.from([8, 30])],
        options: { ...options, waitResult: true, retryLimit: 2, branchHeaders: { 'x-tenant': 't' } },
        customData: '{"concurrent":true,"orders":{}}',
        rollbackReason: 'r',
      }),
    );
    const decoded = upstreamRoot().lookupType('dtmgimp.DtmRequest').toObject(upstreamRoot().lookupType('dtmgimp.DtmRequest').decode(bytes), { longs: Number, bytes: String });
    expect(decoded).toEqual({
      Gid: 'gid-1',
      TransType: 'saga',
      TransOptions: { WaitResult: true, TimeoutToFail: 90, RetryInterval: 12, BranchHeaders: { 'x-tenant': 't' }, RequestTimeout: 8, RetryLimit: 2 },
      CustomedData: '{"concurrent":true,"orders":{}}',
      BinPayloads: ['CB4='],
      QueryPrepared: '',
      Steps: '[{"action":"http://a/TransOut","compensate":"http://a/TransOutRevert"}]',
      RollbackReason: 'r',
    });
  });

  it('TCC / XA requests send Steps as the literal null, as the Go SDK does; registrations carry fields in Data', () => {
    expect(toGrpcRequest({ gid: 'g', transType: 'tcc', options }).Steps).toBe('null');
    expect(toGrpcRegistration({ gid: 'g', transType: 'xa', branchId: '01', fields: { url: 'h:1/p.S/M' } })).toEqual({
      Gid: 'g',
      TransType: 'xa',
      BranchID: '01',
      Op: '',
      Data: { url: 'h:1/p.S/M' },
      BusiPayload: new Uint8Array(0),
    });
  });
});
