// The bodies the builders send, checked against the shape and key order of DTM's Go SDK
// (no network: toRequest() is what submit() / prepare() send).
import { describe, expect, it } from '@jest/globals';
import { DtmClient, DtmDisabledError, DtmError, resolveDtmConfig } from 'nestjs-dtm';
import { BranchIdGenerator } from '../../lib/transactions/branch-id.generator.js';
import { encodePayload } from '../../lib/client/dtm-wire.js';

const client = new DtmClient(
  resolveDtmConfig({ config: { serverUrl: 'http://dtm:36789/api/dtmsvr', retryInterval: 12, transactionTimeout: 90, branchTimeout: 8 } }, {}),
);

describe('Saga.toRequest', () => {
  it('sends module defaults as DTM options, payloads JSON-encoded once, keys in the Go SDK order', () => {
    const body = client
      .newSaga('gid-1')
      .add('http://a/TransOut', 'http://a/TransOutRevert', { amount: 30 })
      .add('http://b/TransIn', 'http://b/TransInRevert', '{"amount":30}')
      .toRequest();
    expect(body).toEqual({
      gid: 'gid-1',
      trans_type: 'saga',
      timeout_to_fail: 90,
      request_timeout: 8,
      retry_interval: 12,
      concurrent: false,
      steps: [
        { action: 'http://a/TransOut', compensate: 'http://a/TransOutRevert' },
        { action: 'http://b/TransIn', compensate: 'http://b/TransInRevert' },
      ],
      payloads: ['{"amount":30}', '{"amount":30}'],
      protocol: '',
    });
    expect(Object.keys(body)).toEqual(['gid', 'trans_type', 'timeout_to_fail', 'request_timeout', 'retry_interval', 'concurrent', 'steps', 'payloads', 'protocol']);
  });

  it('lets per-transaction options override the module defaults', () => {
    const body = client
      .newSaga('gid-2', { timeoutToFail: 5, branchHeaders: { 'x-tenant': 't1' } })
      .setOptions({ retryInterval: 1, waitResult: true, branchHeaders: { 'x-b': '2' } })
      .setRetryLimit(3)
      .add('http://a/x', 'http://a/y', {})
      .toRequest();
    expect(body).toMatchObject({
      wait_result: true,
      timeout_to_fail: 5,
      request_timeout: 8,
      retry_interval: 1,
      retry_limit: 3,
      branch_headers: { 'x-tenant': 't1', 'x-b': '2' },
    });
  });

  it('puts concurrency and branch orders in custom_data as DTM reads them', () => {
    const body = client
      .newSaga('gid-3')
      .add('http://a/1', 'http://a/1c', {})
      .add('http://a/2', 'http://a/2c', {})
      .add('http://a/3', 'http://a/3c', {})
      .enableConcurrent()
      .addBranchOrder(2, [0, 1])
      .toRequest();
    expect(body.custom_data).toBe('{"concurrent":true,"orders":{"2":[0,1]}}');
    expect(body.concurrent).toBe(true);
  });

  it('refuses branch orders naming steps that do not exist', () => {
    const saga = client.newSaga('gid-4').add('http://a/1', 'http://a/1c', {}).enableConcurrent().addBranchOrder(1, [0]);
    expect(() => saga.toRequest()).toThrow('step 1 does not exist: the saga has 1 step(s), numbered from 0');
  });
});

describe('Msg.toRequest', () => {
  it('sends topics as topic:// actions, the delay in custom_data, concurrency at the top level', () => {
    const msg = client.newMsg('gid-5').add('http://a/TransIn', { amount: 1 }).addTopic('orders', { id: 7 }).setDelay(10).enableConcurrent();
    expect(msg.toRequest()).toMatchObject({
      gid: 'gid-5',
      trans_type: 'msg',
      custom_data: '{"delay":10}',
      concurrent: true,
      steps: [{ action: 'http://a/TransIn' }, { action: 'topic://orders' }],
      payloads: ['{"amount":1}', '{"id":7}'],
    });
  });
});

describe('payload encoding', () => {
  it('encodes objects once, passes strings and UTF-8 Buffers as they are, never sends an empty body', () => {
    expect(encodePayload({ a: 1 })).toBe('{"a":1}');
    expect(encodePayload([1, 2])).toBe('[1,2]');
    expect(encodePayload('{"already":"json"}')).toBe('{"already":"json"}');
    expect(encodePayload(Buffer.from('héllo', 'utf8'))).toBe('héllo');
    expect(encodePayload(undefined)).toBe('{}');
    expect(encodePayload(null)).toBe('null');
    expect(encodePayload(42)).toBe('42');
  });

  it('refuses what DTM would mangle', () => {
    expect(() => encodePayload('')).toThrow(/must not be an empty string .*GET/);
    expect(() => encodePayload(Buffer.from([0xff, 0xfe]))).toThrow(/valid UTF-8/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodePayload(cyclic)).toThrow(DtmError);
  });
});

describe('branch ids', () => {
  it('counts 01..99 under a parent, like DTM', () => {
    const top = new BranchIdGenerator();
    expect([top.next(), top.next()]).toEqual(['01', '02']);
    const nested = new BranchIdGenerator('01');
    expect([nested.next(), nested.next()]).toEqual(['0101', '0102']);
    for (let i = 3; i <= 99; i++) nested.next();
    expect(() => nested.next()).toThrow(/no more sub-branch ids under "01"/);
  });
});

describe('gids and a disabled client', () => {
  it('refuses an empty gid or one with spaces', () => {
    expect(() => client.newSaga('')).toThrow(/gid must be a non-empty string/);
    expect(() => client.newMsg('a b')).toThrow(/gid must be a non-empty string/);
  });

  it('throws DtmDisabledError on any use when enabled is false', async () => {
    const disabled = new DtmClient(resolveDtmConfig({ config: { enabled: false } }, {}));
    expect(disabled.enabled).toBe(false);
    expect(() => disabled.newSaga('g')).toThrow(DtmDisabledError);
    await expect(disabled.generateGid()).rejects.toThrow(/DTM is disabled \(lynx\.dtm\.enabled: false\), so generateGid\(\) cannot run/);
    await expect(disabled.tccGlobalTransaction('g', async () => undefined)).rejects.toBeInstanceOf(DtmDisabledError);
  });
});
