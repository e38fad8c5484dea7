// The transaction builders, with no network: a transport that records what the core asks it to
// send (in neutral terms), with the real HTTP / gRPC payload encoding. The wire mapping of each
// transport is tested in wire-mapping.spec.ts.
import { describe, expect, it, jest } from '@jest/globals';
import { DtmClient, DtmDisabledError, DtmFailureError, DtmGidInUseError, DtmOutcomeUnknownError, DtmUnavailableError, DtmUsageError, resolveDtmConfig, type DtmConfig, type DtmProtocol } from 'nestjs-dtm';
import type { BranchInfo, BranchKind, TransactionRecord } from '../../lib/transport/dtm.types.js';
import type { XaDatabase } from '../../lib/xa/xa.types.js';
import type { BranchRegistration, DtmTransport, TransactionRequest } from '../../lib/transport/dtm-transport.js';
import { parseTarget } from '../../lib/transport/branch-target.js';
import { GrpcCodecs } from '../../lib/transport/grpc/grpc-codecs.js';
import { GrpcTransport } from '../../lib/transport/grpc/grpc.transport.js';
import { HttpTransport } from '../../lib/transport/http/http.transport.js';
import { payloadText } from '../../lib/transport/payload.js';
import { Msg } from '../../lib/transactions/msg.js';
import { Saga } from '../../lib/transactions/saga.js';
import { Tcc } from '../../lib/transactions/tcc.js';
import { Xa } from '../../lib/transactions/xa.js';
import { BranchIdGenerator } from '../../lib/transactions/branch-id.generator.js';
import type { TransactionRuntime } from '../../lib/transactions/transaction-runtime.js';
import { BranchAuth } from '../../lib/auth/branch-auth.js';

const config: DtmConfig = resolveDtmConfig(
  { config: { serverUrl: 'http://dtm:36789/api/dtmsvr', retryInterval: 12, transactionTimeout: 90, branchTimeout: 8 } },
  {},
);

/** A runtime whose transports record prepare / submit / abort instead of sending them; one decorated branch pair, `withdraw`. */
function recordingRuntime(headers: Record<string, string> = {}) {
  const sent: { op: string; protocol: DtmProtocol; request: TransactionRequest }[] = [];
  const registered: BranchRegistration[] = [];
  const http = new HttpTransport(config);
  const transports = { http, grpc: new GrpcTransport(config, http, new GrpcCodecs()) };
  const recording = (t: DtmTransport): DtmTransport =>
    Object.assign(Object.create(t) as DtmTransport, {
      prepare: async (request: TransactionRequest) => void sent.push({ op: 'prepare', protocol: t.protocol, request: structuredClone(request) }),
      submit: async (request: TransactionRequest) => void sent.push({ op: 'submit', protocol: t.protocol, request: structuredClone(request) }),
      abort: async (request: TransactionRequest) => void sent.push({ op: 'abort', protocol: t.protocol, request: structuredClone(request) }),
      registerBranch: async (registration: BranchRegistration) => void registered.push(structuredClone(registration)),
    });
  const branches: Record<string, string> = {
    'saga-action:withdraw': 'http://app/withdraw',
    'saga-compensate:withdraw': 'http://app/withdraw-revert',
    'saga-action:audit': 'http://app/audit',
    // a name whose action has a @GrpcMethod and whose compensation is an HTTP route only (as a gRPC transaction resolves it)
    'saga-action:ship': '127.0.0.1:9/shop.Shop/Ship',
    'saga-compensate:ship': 'http://app/ship-revert',
    'tcc-try:hold': '127.0.0.1:9/shop.Shop/Hold',
    'tcc-confirm:hold': '127.0.0.1:9/shop.Shop/HoldConfirm',
    'tcc-cancel:hold': 'http://app/hold-cancel',
  };
  const runtime: TransactionRuntime = {
    config,
    transport: (protocol) => recording(transports[protocol]),
    passThroughHeaders: () => headers,
    query: async () => null,
    waitForFinal: async () => {
      throw new Error('not in unit tests');
    },
    branchTarget: (kind: BranchKind, name: string) => {
      const target = branches[`${kind}:${name}`];
      if (!target) throw new DtmUsageError(`no ${kind} branch named "${name}"`);
      return target;
    },
    hasBranch: (kind: BranchKind, name: string) => `${kind}:${name}` in branches,
    // another service's saga branch `bank/withdraw`, as its manifest would give it
    remoteBranch: async (ref): Promise<Record<string, string>> => {
      if (ref.service === 'bank' && ref.branch === 'withdraw') return { action: 'http://bank/withdraw', compensate: 'http://bank/withdraw-revert' };
      // another service's branches whose ops its manifest puts on different transports
      if (ref.service === 'stock' && ref.branch === 'take') return { action: '127.0.0.1:9/stock.Stock/Take', compensate: 'http://stock/take-revert' };
      if (ref.service === 'stock' && ref.branch === 'reserve') return { try: 'http://stock/reserve', confirm: 'http://stock/reserve-confirm', cancel: '127.0.0.1:9/stock.Stock/ReserveCancel' };
      throw new DtmUsageError(`no ${ref.service} branch ${ref.branch}`);
    },
    remoteFailed: () => undefined,
  };
  return { runtime, sent, registered };
}

describe('Saga', () => {
  it("submitAndWait's options other than timeout and pollInterval (another API's timeoutMs, a bare number) are a DtmUsageError before anything is sent, not a wait of the default 60 s", async () => {
    const { runtime, sent } = recordingRuntime();
    const refusal = (wait: unknown) => new Saga(runtime, 'gid-wait', {}).add('withdraw', { amount: 1 }).submitAndWait(wait as never).catch((e: unknown) => e);
    const unknownKey = await refusal({ timeoutMs: 5000 });
    expect(unknownKey).toBeInstanceOf(DtmUsageError);
    expect((unknownKey as Error).message).toBe('waitForFinal\'s options take timeout and pollInterval (both in seconds), not "timeoutMs": use timeout, in seconds');
    expect(((await refusal({ timeout: 5, poll: 1 })) as Error).message).toBe('waitForFinal\'s options take timeout and pollInterval (both in seconds), not "poll"');
    const bareNumber = await refusal(5);
    expect(bareNumber).toBeInstanceOf(DtmUsageError);
    expect((bareNumber as Error).message).toBe("waitForFinal's options must be an object ({ timeout, pollInterval }, in seconds), got 5: use { timeout: 5 }");
    expect(sent).toEqual([]);
    const client = new DtmClient(config);
    await expect(client.waitForFinal('gid-wait', { timeoutMs: 5000 } as never)).rejects.toThrow('not "timeoutMs": use timeout, in seconds');
    client.onModuleDestroy();
  });

  it('a step of another service by name takes its targets from the service (resolved at submit), in the order the steps were added', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Saga(runtime, 'gid-remote').add('http://a/TransOut', 'http://a/TransOutRevert', { amount: 1 }).add({ service: 'bank', branch: 'withdraw' }, { amount: 2 }).add('audit', { amount: 3 }).submit();
    expect(sent[0].request.steps).toEqual([
      { action: 'http://a/TransOut', compensate: 'http://a/TransOutRevert' },
      { action: 'http://bank/withdraw', compensate: 'http://bank/withdraw-revert' },
      { action: 'http://app/audit', compensate: '' },
    ]);
    expect(sent[0].request.payloads).toEqual(['{"amount":1}', '{"amount":2}', '{"amount":3}']);
  });

  it('a step naming an unknown branch of another service fails the submit, and nothing is sent', async () => {
    const { runtime, sent } = recordingRuntime();
    await expect(new Saga(runtime, 'gid-remote-2').add({ service: 'bank', branch: 'withdrw' }, {}).submit()).rejects.toThrow('no bank branch withdrw');
    expect(sent).toEqual([]);
  });

  it('resolves the module defaults when created, payloads encoded once per step; a saga has no timeout (transaction_timeout is for TCC / XA / msg)', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Saga(runtime, 'gid-1')
      .add('http://a/TransOut', 'http://a/TransOutRevert', { amount: 30 })
      .add('http://b/TransIn', 'http://b/TransInRevert', '{"amount":30}')
      .submit();
    expect(sent).toEqual([
      {
        op: 'submit',
        protocol: 'http',
        request: {
          gid: 'gid-1',
          transType: 'saga',
          options: { timeoutToFail: 0, retryInterval: 12, branchTimeout: 8, branchHeaders: {} },
          concurrent: false,
          steps: [
            { action: 'http://a/TransOut', compensate: 'http://a/TransOutRevert' },
            { action: 'http://b/TransIn', compensate: 'http://b/TransInRevert' },
          ],
          payloads: ['{"amount":30}', '{"amount":30}'],
        },
      },
    ]);
  });

  it('takes lynx.dtm.saga_timeout for sagas and transaction_timeout for msgs', async () => {
    const { runtime, sent } = recordingRuntime();
    const withSagaTimeout = { ...runtime, config: { ...runtime.config, sagaTimeout: 300 } };
    await new Saga(withSagaTimeout, 'gid-st').add('http://a/x', {}).submit();
    await new Msg(withSagaTimeout, 'gid-mt').add('http://a/x', {}).submit();
    expect(sent.map((s) => [s.request.transType, s.request.options.timeoutToFail])).toEqual([
      ['saga', 300],
      ['msg', 90],
    ]);
  });

  it('no retry interval configured nor set: none is sent (DTM\'s own applies, a shorter timeoutToFail being its first look); one set per transaction is', async () => {
    const { runtime, sent } = recordingRuntime();
    const unset = { ...runtime, config: resolveDtmConfig({ config: { serverUrl: 'http://dtm:36789/api/dtmsvr' } }, {}) };
    expect(unset.config.retryInterval).toBeUndefined();
    await new Msg(unset, 'gid-ri1', { timeoutToFail: 3 }).add('http://a/x', {}).prepare('http://a/qp');
    await new Msg(unset, 'gid-ri2', { timeoutToFail: 3, retryInterval: 2 }).add('http://a/x', {}).prepare('http://a/qp');
    expect(sent.map((s) => s.request.options)).toEqual([
      { timeoutToFail: 3, branchTimeout: 30, branchHeaders: {} },
      { timeoutToFail: 3, retryInterval: 2, branchTimeout: 30, branchHeaders: {} },
    ]);
  });

  it('lets per-transaction options (seconds, branchTimeout as in the Go plugin) override the defaults; headers merge', async () => {
    const { runtime, sent } = recordingRuntime({ 'x-request-id': 'inbound' });
    await new Saga(runtime, 'gid-2', { timeoutToFail: 5, branchTimeout: 3, branchHeaders: { 'x-tenant': 't1' } })
      .setOptions({ retryInterval: 1, waitResult: false, branchHeaders: { 'x-b': '2' } })
      .setRetryLimit(3)
      .add('http://a/x', 'http://a/y', {})
      .submit();
    expect(sent[0].request.options).toEqual({
      timeoutToFail: 5,
      retryInterval: 1,
      branchTimeout: 3,
      retryLimit: 3,
      branchHeaders: { 'x-request-id': 'inbound', 'x-tenant': 't1', 'x-b': '2' },
    });
  });

  it('explicit branchHeaders replace a pass-through header in any spelling (DTM would store both); a name twice, or a framing header, is refused', async () => {
    const { runtime, sent } = recordingRuntime({ 'x-tenant': 'inbound', 'x-request-id': 'r-1', traceparent: 'tp' });
    await new Saga(runtime, 'gid-h1', { branchHeaders: { 'X-Tenant': 'explicit', 'X-Env': 'a' } })
      .setOptions({ branchHeaders: { 'X-REQUEST-ID': 'mine', 'x-env': 'b' } })
      .add('http://a/x', {})
      .submit();
    expect(sent[0].request.options.branchHeaders).toEqual({ traceparent: 'tp', 'X-Tenant': 'explicit', 'X-REQUEST-ID': 'mine', 'x-env': 'b' });
    expect(() => new Saga(runtime, 'gid-h2', { branchHeaders: { 'X-A': '1', 'x-a': '2' } })).toThrow(new DtmUsageError('branch headers X-A and x-a are one header (names are case-insensitive); give it once'));
    for (const name of ['Content-Length', 'host', 'Transfer-Encoding', 'Proxy-Authorization', 'dtm-gid', 'Content-Type', 'content-encoding']) {
      expect(() => new Saga(runtime, 'gid-h3', { branchHeaders: { [name]: '2' } })).toThrow(/describes the request that carries it/);
    }
    // a content type of the app's would replace the one DTM gives the payload it sends: the error says so
    expect(() => new Saga(runtime, 'gid-h4', { branchHeaders: { 'content-type': 'text/plain' } })).toThrow(/content type or encoding, connection, proxy: DTM gives each branch call its own, and one given here would replace it/);
    expect(sent).toHaveLength(1);
  });

  it('a submit DTM refuses because it holds the gid already is DtmGidInUseError, with waitResult too: the stored status is never read as this saga\'s', async () => {
    const { runtime } = recordingRuntime();
    // queries after the refused submit (submitAndWait's check of the gid before it sends is one before)
    let queried = 0;
    let refused = false;
    const refusal = (protocol: DtmProtocol) =>
      new DtmFailureError("DTM refused submit of gid-r: current status 'succeed', cannot sumbmit. FAILURE", { gid: 'gid-r', protocol, status: protocol === 'http' ? 409 : 10 });
    const refusing: TransactionRuntime = {
      ...runtime,
      query: async () => {
        if (refused) queried++;
        return null;
      },
      transport: (protocol) =>
        Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
          submit: async () => {
            refused = true;
            throw refusal(protocol);
          },
        }),
    };
    for (const protocol of ['http', 'grpc'] as const) {
      for (const waitResult of [true, false]) {
        refused = false;
        const err = await new Saga(refusing, 'gid-r', { protocol, waitResult }).add('http://a/x', {}).submitAndWait().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DtmGidInUseError);
        expect(err).toBeInstanceOf(DtmFailureError);
        expect(err).toMatchObject({ gid: 'gid-r', currentStatus: 'succeed', protocol, status: protocol === 'http' ? 409 : 10 });
        expect((err as Error).message).toContain(`DTM refused submit of gid-r: it already holds a transaction gid-r that is "succeed" (current status 'succeed', cannot sumbmit)`);
      }
    }
    // one query per refusal, which only names the gid DTM holds (its MySQL store finds gids without case), never read as this saga's status
    expect(queried).toBe(4);

    // DTM's record under the gid is of another gid, differing in case: the refusal names it
    const otherCase: TransactionRuntime = { ...refusing, query: async () => ({ gid: 'GID-R', status: 'succeed', transType: 'saga' }) as unknown as TransactionRecord };
    const named = await new Saga(otherCase, 'gid-r', { protocol: 'http' }).add('http://a/x', {}).submit().catch((e: unknown) => e);
    expect(named).toBeInstanceOf(DtmGidInUseError);
    expect((named as Error).message).toContain('DTM answers it as "GID-R", a saga of another gid that differs only in case');

    // a message this object prepared: the transaction under the gid is its own, so the refusal is its outcome
    const own = new Msg(refusing, 'gid-m').add('http://a/x', {});
    await own.prepare('http://a/check');
    const err = await own.submit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmFailureError);
    expect(err).not.toBeInstanceOf(DtmGidInUseError);
  });

  it('a URL step without compensation: the payload is the payload, the compensation empty (as DTM\'s Go SDK)', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Saga(runtime, 'gid-3').add('http://a/TransOut', '{"amount":30}').add('http://a/TransIn', { amount: 30 }).add('', { amount: 1 }).submit();
    expect(sent[0].request.steps).toEqual([
      { action: 'http://a/TransOut', compensate: '' },
      { action: 'http://a/TransIn', compensate: '' },
      { action: '', compensate: '' },
    ]);
    expect(sent[0].request.payloads).toEqual(['{"amount":30}', '{"amount":30}', '{"amount":1}']);
  });

  it('a branch name takes its @SagaCompensate; three arguments are always action, compensation, payload', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Saga(runtime, 'gid-4').add('withdraw', { amount: 1 }).add('audit', {}).add('http://a/x', '', { n: 2 }).submit();
    expect(sent[0].request.steps).toEqual([
      { action: 'http://app/withdraw', compensate: 'http://app/withdraw-revert' },
      { action: 'http://app/audit', compensate: '' },
      { action: 'http://a/x', compensate: '' },
    ]);
  });

  it('puts concurrency and branch orders in custom data as DTM reads them', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Saga(runtime, 'gid-5').add('http://a/1', 'http://a/1c', {}).add('http://a/2', 'http://a/2c', {}).add('http://a/3', 'http://a/3c', {}).enableConcurrent().addBranchOrder(2, [0, 1]).submit();
    expect(sent[0].request.customData).toBe('{"concurrent":true,"orders":{"2":[0,1]}}');
    expect(sent[0].request.concurrent).toBe(true);
  });

  it('refuses misuse with DtmUsageError before anything is sent', async () => {
    const { runtime, sent } = recordingRuntime();
    const saga = new Saga(runtime, 'gid-6').add('http://a/1', 'http://a/1c', {}).enableConcurrent().addBranchOrder(1, [0]);
    await expect(saga.submit()).rejects.toThrow(new DtmUsageError('step 1 does not exist: the saga has 1 step(s), numbered from 0'));
    expect(() => new Saga(runtime, 'gid-7').add('nope', {})).toThrow(DtmUsageError);
    expect(() => new Saga(runtime, 'gid-8').add('127.0.0.1:9/bank.Bank/Withdraw', {})).toThrow(/gRPC target, which DTM cannot call in a transaction it receives over HTTP/);
    expect(() => new Saga(runtime, 'gid-9').add('etcd://bank/Withdraw', {})).toThrow(/discovery drivers such as etcd/);
    expect(() => new Saga(runtime, 'gid-10').add('http://a/x', 42 as unknown as string, {})).toThrow(/the compensation must be a target string/);
    expect(() => new Saga(runtime, 'gid-11', { protocol: 'http' }).setOptions({ protocol: 'grpc' })).toThrow(/protocol is chosen when it is created/);
    expect(sent).toEqual([]);
  });

  it('over gRPC: payloads are bytes; an http:// step gets its JSON text as bytes; gRPC targets are allowed', async () => {
    const { runtime, sent } = recordingRuntime();
    const proto = Uint8Array.from([8, 30]);
    await new Saga(runtime, 'gid-12', { protocol: 'grpc' })
      .add('127.0.0.1:9/bank.Bank/Withdraw', '127.0.0.1:9/bank.Bank/WithdrawRevert', proto)
      .add('http://a/TransIn', { amount: 30 })
      .submit();
    expect(sent[0].protocol).toBe('grpc');
    expect(sent[0].request.payloads?.map((p) => Buffer.from(p as Uint8Array).toString('hex'))).toEqual(['081e', Buffer.from('{"amount":30}').toString('hex')]);
    expect(() => new Saga(runtime, 'gid-13', { protocol: 'grpc' }).add('127.0.0.1:9/bank.Bank/Withdraw', { amount: 1 })).toThrow(
      /knows no proto declaring that method \(neither grpcProtos nor the protos of this app's gRPC servers\): add its .proto to DtmModule.forRoot\(\{ grpcProtos/,
    );
  });

  it('a step whose action and compensation are on different transports (gRPC and http://) is refused when added, by targets, by name or of another service: DTM sends both the one payload', async () => {
    const { runtime, sent } = recordingRuntime();
    const proto = Uint8Array.from([8, 30]);
    const grpc = () => new Saga(runtime, 'gid-mix', { protocol: 'grpc' });
    const fix = 'Put all of its ops on one transport: give targets of one kind (all http(s):// URLs, or all gRPC host:port/package.Service/Method), or serve every handler of the branch name on the same transport';
    let refused: unknown;
    try {
      grpc().add('http://a/ok', 'http://a/ok-revert', {}).add('127.0.0.1:9/bank.Bank/Withdraw', 'http://a/WithdrawRevert', proto);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DtmUsageError);
    expect((refused as DtmUsageError).gid).toBe('gid-mix');
    expect((refused as Error).message).toBe(
      'saga gid-mix step 1 has its ops on different transports (action 127.0.0.1:9/bank.Bank/Withdraw, compensate http://a/WithdrawRevert): DTM sends the one payload of a step or TCC branch to each of its ops, encoded for one transport, so the other ops could not read it and DTM would retry them forever. ' +
        `${fix} (each with a @GrpcMethod, or none of them)`,
    );
    expect(() => grpc().add('https://a/Withdraw', '127.0.0.1:9/bank.Bank/WithdrawRevert', {})).toThrow(/saga gid-mix step 0 has its ops on different transports \(action https:\/\/a\/Withdraw, compensate 127.0.0.1:9\/bank.Bank\/WithdrawRevert\)/);
    expect(() => grpc().add('ship', proto)).toThrow('saga gid-mix step 0 ("ship") has its ops on different transports (action 127.0.0.1:9/shop.Shop/Ship, compensate http://app/ship-revert)');
    await expect(grpc().add({ service: 'stock', branch: 'take' }, {}).submit()).rejects.toThrow(
      'saga gid-mix step 0 (branch "take" of service "stock") has its ops on different transports (action 127.0.0.1:9/stock.Stock/Take, compensate http://stock/take-revert)',
    );
    // a refused step of another service stays refused: a second submit never sends it with empty targets
    const remote = grpc().add({ service: 'stock', branch: 'take' }, {});
    await expect(remote.submit()).rejects.toThrow(DtmUsageError);
    await expect(remote.submit()).rejects.toThrow(DtmUsageError);
    expect(sent).toEqual([]);
    // one transport per step, or no compensation: as before, steps may differ from one another
    await grpc()
      .add('127.0.0.1:9/bank.Bank/Withdraw', '127.0.0.1:9/bank.Bank/WithdrawRevert', proto)
      .add('127.0.0.1:9/bank.Bank/Audit', '', proto)
      .add('http://a/TransIn', 'http://a/TransInRevert', { amount: 30 })
      .add('', 'http://a/only-undo', {})
      .submit();
    expect(sent[0].request.steps).toEqual([
      { action: '127.0.0.1:9/bank.Bank/Withdraw', compensate: '127.0.0.1:9/bank.Bank/WithdrawRevert' },
      { action: '127.0.0.1:9/bank.Bank/Audit', compensate: '' },
      { action: 'http://a/TransIn', compensate: 'http://a/TransInRevert' },
      { action: '', compensate: 'http://a/only-undo' },
    ]);
    // a step with only a compensation has its payload encoded for the compensation
    expect(() => grpc().add('', '127.0.0.1:9/bank.Bank/WithdrawRevert', { amount: 1 })).toThrow(/the payload of 127.0.0.1:9\/bank.Bank\/WithdrawRevert is an object, but the module knows no proto/);
  });
});

/** The wait of a real DtmClient (`DtmClient.waitForFinal` with a submit of this app's own), its status queries answered by `query` instead of DTM, its warnings kept in `warnings`. */
function clientWait(warnings: string[], query: (gid: string) => Promise<TransactionRecord | null>): TransactionRuntime['waitForFinal'] {
  const client = new DtmClient(config);
  Object.assign(client as unknown as object, { http: { query }, logger: { warn: (message: string) => warnings.push(message) } });
  return (client as unknown as { runtime: TransactionRuntime }).runtime.waitForFinal;
}

describe('Msg', () => {
  it('sends topics as topic:// actions, the delay in custom data, concurrency over HTTP', async () => {
    const { runtime, sent } = recordingRuntime();
    await new Msg(runtime, 'gid-20').add('http://a/TransIn', { amount: 1 }).addTopic('orders', { id: 7 }).setDelay(10).enableConcurrent().prepare('http://a/qp');
    expect(sent[0]).toMatchObject({
      op: 'prepare',
      request: {
        gid: 'gid-20',
        transType: 'msg',
        customData: '{"delay":10}',
        concurrent: true,
        queryPrepared: 'http://a/qp',
        steps: [{ action: 'http://a/TransIn' }, { action: 'topic://orders' }],
        payloads: ['{"amount":1}', '{"id":7}'],
      },
    });
    expect(() => new Msg(runtime, 'gid-21', { protocol: 'grpc' }).enableConcurrent()).toThrow(/gRPC API cannot carry concurrent messages/);
  });

  describe("a submit left undecided after the prepare (no answer, a broken connection) is decided by DTM's record, as for TCC / XA", () => {
    /** DTM's status of the gid after the submit (`query failed`: no answer), and the submit's error: one that may have reached DTM, or one never sent. */
    const undecided = (after: string, sent: 'maybe' | 'never', waitResult = false) => {
      const { runtime } = recordingRuntime();
      const state = { submits: 0, queriesAfter: 0 };
      const submitError = new DtmUnavailableError(`could not reach http://dtm:36789/api/dtmsvr/submit (${sent === 'maybe' ? 'socket hang up' : 'connect ECONNREFUSED'})`, {
        cause: { code: sent === 'maybe' ? 'ECONNRESET' : 'ECONNREFUSED' },
      });
      const deciding: TransactionRuntime = {
        ...runtime,
        query: async (gid) => {
          if (state.submits === 0) return null; // the check after the prepare
          state.queriesAfter++;
          if (after === 'query failed') throw new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/query (connect ECONNREFUSED)');
          if (after === 'absent') return null;
          return { gid, status: after, transType: 'msg' } as unknown as TransactionRecord;
        },
        transport: (protocol) =>
          Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
            submit: async () => {
              state.submits++;
              throw submitError;
            },
          }),
      };
      const msg = new Msg(deciding, 'gid-u', { waitResult, timeoutToFail: 40 }).add('http://a/x', {});
      return { msg, state, submitError };
    };

    it('submitted or succeed: the submit took, submit() resolves (one query, after the failed submit)', async () => {
      for (const status of ['submitted', 'succeed']) {
        const { msg, state } = undecided(status, 'maybe');
        await msg.prepare('http://a/check');
        await expect(msg.submit()).resolves.toBeUndefined();
        expect(state).toEqual({ submits: 1, queriesAfter: 1 });
      }
    });

    it("with waitResult, submitted: DtmOutcomeUnknownError 'submitted' (DTM took it, its first round not known ended); succeed resolves", async () => {
      const { msg, submitError } = undecided('submitted', 'maybe', true);
      await msg.prepare('http://a/check');
      const err = await msg.submit().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid: 'gid-u', lastStatus: 'submitted', cause: submitError });
      expect((err as Error).message).toMatch(/^DTM took the submit of gid-u and holds it "submitted", though its answer did not come \(could not reach .*socket hang up\)/);
      const succeeded = undecided('succeed', 'maybe', true);
      await succeeded.msg.prepare('http://a/check');
      await expect(succeeded.msg.submit()).resolves.toBeUndefined();
    });

    it("prepared: DtmOutcomeUnknownError 'prepared' saying DTM was asked, that a submit on its way may still take, and what comes next (the back-check after timeout_to_fail, or a submit again)", async () => {
      const { msg } = undecided('prepared', 'maybe');
      await msg.prepare('http://a/check');
      const err = await msg.submit().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid: 'gid-u', lastStatus: 'prepared' });
      expect((err as Error).message).toBe(
        'the submit of msg gid-u did not get through (could not reach http://dtm:36789/api/dtmsvr/submit (socket hang up)): DTM, asked after it, holds the message prepared (a submit still on its way to DTM may yet take it). DTM back-checks its query-prepared target once its timeout_to_fail (40 s) passed and delivers it if the local transaction committed; or submit it again now: submit() on the same Msg (DTM takes the submit of a message it holds prepared). Wait for it with waitForFinal("gid-u"), never send it again under a new gid',
      );
    });

    it("DTM answering no query: 'unknown' after a submit that may have reached it; 'prepared' after one never sent, saying it did not reach DTM", async () => {
      const maybe = undecided('query failed', 'maybe');
      await maybe.msg.prepare('http://a/check');
      const unknown = await maybe.msg.submit().catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(unknown).toMatchObject({ gid: 'gid-u', lastStatus: 'unknown' });
      expect((unknown as Error).message).toMatch(/^the submit of msg gid-u may or may not have reached DTM \(.*socket hang up\)\), and DTM could not be asked what it holds then \(.*query \(connect ECONNREFUSED\)\): it holds the message either prepared \(no submit got through: it back-checks .*\) or submitted \(it delivers it\)/);
      const never = undecided('query failed', 'never');
      await never.msg.prepare('http://a/check');
      const prepared = await never.msg.submit().catch((e: unknown) => e);
      expect(prepared).toMatchObject({ gid: 'gid-u', lastStatus: 'prepared' });
      expect((prepared as Error).message).toContain('(could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)): it did not reach DTM, which answered no query either: DTM holds the message prepared.');
    });

    it('doAndSubmit, its local transaction committed: submitted resolves with its result; prepared says not to run the local transaction again', async () => {
      const took = undecided('submitted', 'maybe');
      await expect(took.msg.doAndSubmit('http://a/check', async () => 'saved')).resolves.toBe('saved');
      expect(took.state).toEqual({ submits: 1, queriesAfter: 1 });
      const held = undecided('prepared', 'maybe');
      const err = await held.msg.doAndSubmit('http://a/check', async () => 'saved').catch((e: unknown) => e);
      expect(err).toMatchObject({ gid: 'gid-u', lastStatus: 'prepared' });
      expect((err as Error).message).toMatch(/^the local transaction of msg gid-u committed, but its submit did not get through \(.*\): DTM, asked after it, holds the message prepared .* Do not run the local transaction again; wait for it with waitForFinal\("gid-u"\)/);
    });

    it("failed (DTM's back-check found the local transaction rolled back): DtmFailureError", async () => {
      const { msg, state } = undecided('failed', 'maybe');
      await msg.prepare('http://a/check');
      const err = await msg.submit().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmFailureError);
      expect(err).toMatchObject({ gid: 'gid-u', reason: 'FAILURE' });
      expect(state).toEqual({ submits: 1, queriesAfter: 1 });
    });

    it("absent (DTM took the prepare and now holds no record of it): DtmOutcomeUnknownError 'absent' saying so (lost, or the query went to another DTM) and to submit it again, never that DTM holds it prepared", async () => {
      for (const doAndSubmit of [false, true]) {
        const { msg, state } = undecided('absent', 'maybe');
        const err = await (doAndSubmit ? msg.doAndSubmit('http://a/check', async () => 'saved') : msg.prepare('http://a/check').then(() => msg.submit())).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(err).toMatchObject({ gid: 'gid-u', lastStatus: 'absent' });
        const message = (err as Error).message;
        expect(message).toMatch(/may not have reached DTM \(could not reach .*socket hang up\)\), and DTM, asked after it, holds no record of gid-u, though it took its prepare: DTM lost it .* or the query reached another DTM than the prepare/);
        expect(message).toContain('submit() on the same Msg (DTM stores a submit of a gid it holds nothing of, and delivers it)');
        expect(message).not.toMatch(/holds (the message|it) prepared/);
        expect(message.startsWith('the local transaction of msg gid-u committed')).toBe(doAndSubmit);
        expect(state).toEqual({ submits: 1, queriesAfter: 1 });
      }
    });

    describe('submitAndWait() after prepare(), its submit never sent (DTM refusing connections for a moment): the wait (DtmClient\'s own) sends it again, as a TCC\'s', () => {
      /** A prepared Msg whose first submit is refused a connection, waited for by a real DtmClient's wait whose status queries get `answers` (one per query, the last repeated; `refused`: no connection). */
      const neverSent = (answers: ('refused' | 'prepared' | 'succeed')[]) => {
        const { runtime } = recordingRuntime();
        const state = { submits: 0, queries: 0, queriesAtSubmit: [] as number[] };
        const warnings: string[] = [];
        const waiting: TransactionRuntime = {
          ...runtime,
          query: async () => null, // the check after the prepare
          waitForFinal: clientWait(warnings, async (gid) => {
            const answer = answers[Math.min(state.queries++, answers.length - 1)];
            if (answer === 'refused') throw new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/query (connect ECONNREFUSED)', { cause: { code: 'ECONNREFUSED' } });
            const branches = answer === 'succeed' ? [{ branchId: '01', op: 'action', url: 'http://a/x', data: Buffer.from('{}'), status: 'succeed' }] : [];
            return { gid, status: answer, transType: 'msg', branches } as unknown as TransactionRecord;
          }),
          transport: (protocol) =>
            Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
              submit: async () => {
                state.queriesAtSubmit.push(state.queries);
                if (state.submits++ === 0) throw new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)', { cause: { code: 'ECONNREFUSED' } });
              },
            }),
        };
        return { msg: new Msg(waiting, 'gid-w', { timeoutToFail: 40 }).add('http://a/x', {}), state, warnings };
      };

      it('DTM back, holding it prepared: submitted again at the first look that shows it (no submit of it can still arrive), resolves with the outcome', async () => {
        const { msg, state, warnings } = neverSent(['refused', 'refused', 'prepared', 'succeed']);
        await msg.prepare('http://a/check');
        const final = await msg.submitAndWait({ timeout: 5, pollInterval: 0.001 });
        expect(final).toMatchObject({ gid: 'gid-w', status: 'succeed' });
        expect(state.queriesAtSubmit).toEqual([0, 3]); // the second submit right after the third query, the first to show it prepared
        expect(warnings).toEqual(['DTM still holds gid-w as prepared, and its submit did not reach DTM (could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)): submitting it again under the same gid']);
      });

      it.each([
        [
          'failed again, maybe after reaching DTM (a reset)',
          new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/submit (socket hang up)', { cause: { code: 'ECONNRESET' } }),
          "DTM still holds gid-w as prepared after a submit that may have reached it (could not reach http://dtm:36789/api/dtmsvr/submit (socket hang up)): submitting it again under the same gid (DTM v1.19 goes on when storing a submit failed, e.g. its store did not answer in time: it would back-check the message at its timeout)",
        ],
        [
          'answered by DTM (not stored)',
          undefined,
          "DTM still holds gid-w as prepared although it accepted its submit: submitting it again under the same gid (DTM v1.19 goes on when storing a submit failed, e.g. its store did not answer in time: it would back-check the message at its timeout)",
        ],
      ])('its first submit again %s, DTM still holding it prepared: the second, 3 s on, warns naming that last submit\'s error, not the first submit\'s (fake timers)', async (_what, againError, secondWarning) => {
        jest.useFakeTimers({ now: 1_000_000 });
        try {
          const { runtime } = recordingRuntime();
          const submitsAt: number[] = [];
          const warnings: string[] = [];
          const waiting: TransactionRuntime = {
            ...runtime,
            query: async () => null, // the check after the prepare
            // DTM's record: prepared until the third submit (the second sent again) got through
            waitForFinal: clientWait(warnings, async (gid) => {
              const done = submitsAt.length >= 3;
              const branches = done ? [{ branchId: '01', op: 'action', url: 'http://a/x', data: Buffer.from('{}'), status: 'succeed' }] : [];
              return { gid, status: done ? 'succeed' : 'prepared', transType: 'msg', branches } as unknown as TransactionRecord;
            }),
            transport: (protocol) =>
              Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
                submit: async () => {
                  submitsAt.push(Date.now());
                  if (submitsAt.length === 1) throw new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)', { cause: { code: 'ECONNREFUSED' } });
                  if (submitsAt.length === 2 && againError) throw againError;
                },
              }),
          };
          const msg = new Msg(waiting, 'gid-w', { timeoutToFail: 40 }).add('http://a/x', {});
          await msg.prepare('http://a/check');
          let settled = false;
          const outcome = msg.submitAndWait({ timeout: 10, pollInterval: 0.01 }).finally(() => (settled = true));
          outcome.catch(() => undefined);
          while (!settled) await jest.advanceTimersByTimeAsync(100);

          expect(await outcome).toMatchObject({ gid: 'gid-w', status: 'succeed' });
          expect(submitsAt).toHaveLength(3);
          expect(submitsAt[1]).toBe(submitsAt[0]); // sent again at the first look: the first submit never reached DTM
          expect(submitsAt[2] - submitsAt[1]).toBeGreaterThanOrEqual(3000); // the second again once DTM's record showed it unstored for 3 s
          expect(warnings).toEqual([
            'DTM still holds gid-w as prepared, and its submit did not reach DTM (could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)): submitting it again under the same gid',
            secondWarning,
          ]);
        } finally {
          jest.useRealTimers();
        }
      });

      it("DTM answering no query until the wait ends: DtmOutcomeUnknownError 'prepared' (no submit reached DTM), saying what DTM does with a prepared message and to call submitAndWait() again", async () => {
        const { msg, state } = neverSent(['refused']);
        await msg.prepare('http://a/check');
        const err = await msg.submitAndWait({ timeout: 0.2, pollInterval: 0.01 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(err).toMatchObject({ gid: 'gid-w', lastStatus: 'prepared' });
        expect((err as Error).message).toBe(
          'the outcome of gid-w is not known after 0.2 s: DTM answered no status query, and no submit of it reached DTM, which holds it prepared (the last: could not reach http://dtm:36789/api/dtmsvr/query (connect ECONNREFUSED)). DTM calls none of its branches meanwhile, and once its timeout_to_fail passed back-checks its query-prepared target and delivers it if the local transaction committed, unless a submit gets through first: call submitAndWait() again on the same Msg (DTM takes the submit of a message it holds prepared), or wait with waitForFinal("gid-w") or query it later, never start it again under a new gid',
        );
        expect(state.submits).toBe(1);
        expect(state.queries).toBeGreaterThan(1); // the wait asked until its end
      });
    });

    it('a message submitted whole (no prepare) is not asked: the submit\'s own error, no query', async () => {
      const { msg, state, submitError } = undecided('submitted', 'maybe');
      await expect(msg.submit()).rejects.toBe(submitError);
      expect(state).toEqual({ submits: 1, queriesAfter: 0 });
    });
  });
});

describe('TCC', () => {
  it('a branch whose Try, Confirm and Cancel are on different transports is refused before it is registered (DTM sends the Try\'s payload to the other two)', async () => {
    const { runtime, sent, registered } = recordingRuntime();
    const proto = Uint8Array.from([8, 30]);
    const tcc = (gid: string, body: (tcc: Tcc) => Promise<unknown>) => new Tcc(runtime, gid, { protocol: 'grpc' }).run(body);
    await expect(tcc('gid-tm1', (t) => t.callBranch(proto, '127.0.0.1:9/bank.Bank/Try', '127.0.0.1:9/bank.Bank/Confirm', 'http://a/cancel'))).rejects.toThrow(
      'tcc gid-tm1 branch has its ops on different transports (try 127.0.0.1:9/bank.Bank/Try, confirm 127.0.0.1:9/bank.Bank/Confirm, cancel http://a/cancel): DTM sends the one payload',
    );
    await expect(tcc('gid-tm2', (t) => t.callBranch({}, 'http://a/try', '127.0.0.1:9/bank.Bank/Confirm', ''))).rejects.toThrow(/tcc gid-tm2 branch has its ops on different transports \(try http:\/\/a\/try, confirm 127.0.0.1:9\/bank.Bank\/Confirm\)/);
    await expect(tcc('gid-tm3', (t) => t.callBranch(proto, 'hold'))).rejects.toThrow('tcc gid-tm3 branch "hold" has its ops on different transports (try 127.0.0.1:9/shop.Shop/Hold, confirm 127.0.0.1:9/shop.Shop/HoldConfirm, cancel http://app/hold-cancel)');
    await expect(tcc('gid-tm4', (t) => t.callBranch({}, { service: 'stock', branch: 'reserve' }))).rejects.toThrow(
      'tcc gid-tm4 branch "reserve" of service "stock" has its ops on different transports (try http://stock/reserve, confirm http://stock/reserve-confirm, cancel 127.0.0.1:9/stock.Stock/ReserveCancel)',
    );
    expect(registered).toEqual([]);
    // each body's error aborted what was prepared, with the message as the reason
    expect(sent.map((s) => [s.request.gid, s.op])).toEqual(['gid-tm1', 'gid-tm2', 'gid-tm3', 'gid-tm4'].flatMap((gid) => [[gid, 'prepare'], [gid, 'abort']]));
    expect(sent[1].request.rollbackReason).toContain('has its ops on different transports');
  });
});

describe("TCC / XA: a submit left undecided (no answer, a broken connection) is decided by DTM's record", () => {
  /** A TCC or XA whose submit fails with a reset (it may have reached DTM), DTM's status of its gid then being `after` (`failed` with a rollback reason). */
  const undecided = (kind: 'tcc' | 'xa', after: string, waitResult = false) => {
    const { runtime } = recordingRuntime();
    const state = { submits: 0, queriesAfter: 0 };
    const submitError = new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/submit (socket hang up)', { cause: { code: 'ECONNRESET' } });
    const deciding: TransactionRuntime = {
      ...runtime,
      query: async (gid) => {
        if (state.submits === 0) return null; // the check after the prepare
        state.queriesAfter++;
        if (after === 'absent') return null;
        return { gid, status: after, transType: kind, ...(after === 'failed' ? { rollbackReason: 'Timeout after 30 seconds' } : {}) } as unknown as TransactionRecord;
      },
      transport: (protocol) =>
        Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
          submit: async () => {
            state.submits++;
            throw submitError;
          },
        }),
    };
    const run = () => (kind === 'tcc' ? new Tcc(deciding, 'gid-d', { waitResult }).run(async () => 'body') : new Xa(deciding, 'gid-d', { waitResult }).run(async () => 'body'));
    return { run, state };
  };

  it("submitted or succeed without waitResult: the submit took, the body's result (one query, after the failed submit)", async () => {
    for (const kind of ['tcc', 'xa'] as const) {
      for (const status of ['submitted', 'succeed']) {
        const { run, state } = undecided(kind, status);
        await expect(run()).resolves.toBe('body');
        expect(state).toEqual({ submits: 1, queriesAfter: 1 });
      }
    }
  });

  it("with waitResult, submitted: DtmOutcomeUnknownError 'submitted' (its first round not known to have ended); prepared: 'prepared' either way", async () => {
    for (const kind of ['tcc', 'xa'] as const) {
      await expect(undecided(kind, 'submitted', true).run()).rejects.toMatchObject({ name: 'DtmOutcomeUnknownError', gid: 'gid-d', lastStatus: 'submitted' });
      await expect(undecided(kind, 'prepared').run()).rejects.toMatchObject({ name: 'DtmOutcomeUnknownError', gid: 'gid-d', lastStatus: 'prepared' });
      await expect(undecided(kind, 'prepared', true).run()).rejects.toMatchObject({ name: 'DtmOutcomeUnknownError', gid: 'gid-d', lastStatus: 'prepared' });
    }
  });

  it("failed (DTM rolled it back, its timeoutToFail passed before the submit took): DtmFailureError with DTM's rollback reason; aborting: DtmOutcomeUnknownError 'aborting', not 'prepared'", async () => {
    for (const kind of ['tcc', 'xa'] as const) {
      const failed = await undecided(kind, 'failed').run().catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(DtmFailureError);
      expect(failed).toMatchObject({ gid: 'gid-d', reason: 'Timeout after 30 seconds' });
      const aborting = await undecided(kind, 'aborting').run().catch((e: unknown) => e);
      expect(aborting).toMatchObject({ name: 'DtmOutcomeUnknownError', gid: 'gid-d', lastStatus: 'aborting' });
      expect((aborting as Error).message).toMatch(/^the submit of gid-d may not have reached DTM \(.*socket hang up\)\), and DTM holds the transaction \("aborting"\)/);
    }
  });

  it("absent (DTM took the prepare and the branches, and now holds no record): DtmOutcomeUnknownError 'absent' saying so, that DTM ends no branch of it and not to submit it again; never that DTM holds it prepared", async () => {
    for (const kind of ['tcc', 'xa'] as const) {
      const { run, state } = undecided(kind, 'absent');
      const err = await run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid: 'gid-d', lastStatus: 'absent' });
      const message = (err as Error).message;
      expect(message).toMatch(/^the submit of gid-d may not have reached DTM \(.*socket hang up\)\), and DTM, asked after it, holds no record of gid-d, though it took its prepare: DTM lost it /);
      expect(message).toContain(kind === 'tcc' ? "DTM neither confirms nor cancels any branch of a transaction it holds no record of: what the branches' Trys reserved stays" : "DTM neither commits nor rolls back any branch of a transaction it holds no record of: the branches' prepared XA transactions stay");
      expect(message).toContain('a submit again would not reach them');
      expect(message).not.toMatch(/holds (the transaction|it) prepared/);
      expect(state).toEqual({ submits: 1, queriesAfter: 1 });
    }
  });

  it("tccGlobalTransactionAndWait / xaGlobalTransactionAndWait, DTM's record gone in the wait (its submit answered, or refused a connection): DtmOutcomeUnknownError 'absent' saying DTM lost it, not DtmUsageError", async () => {
    for (const kind of ['tcc', 'xa'] as const) {
      for (const refused of [false, true]) {
        const { runtime } = recordingRuntime();
        const lostRecord: TransactionRuntime = {
          ...runtime,
          query: async () => null, // the check after the prepare: the query failing leaves the prepare as DTM answered it
          waitForFinal: clientWait([], async () => null),
          transport: (protocol) =>
            Object.assign(Object.create(runtime.transport(protocol)) as DtmTransport, {
              submit: async () => {
                if (refused) throw new DtmUnavailableError('could not reach http://dtm:36789/api/dtmsvr/submit (connect ECONNREFUSED)', { cause: { code: 'ECONNREFUSED' } });
              },
            }),
        };
        const body = async () => 'body';
        const err = await (kind === 'tcc' ? new Tcc(lostRecord, 'gid-l').runAndWait(body, { timeout: 1 }) : new Xa(lostRecord, 'gid-l').runAndWait(body, { timeout: 1 })).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(err).toMatchObject({ gid: 'gid-l', lastStatus: 'absent' });
        expect((err as Error).message).toMatch(
          new RegExp(`^the submit of gid-l ${refused ? 'may not have reached DTM \\(.*ECONNREFUSED\\)\\)' : 'was answered by DTM'}, and DTM, asked after it, holds no record of gid-l, though it took its prepare: DTM lost it `),
        );
      }
    }
  });
});

describe('branch targets', () => {
  it('a URL scheme in any case is an HTTP (or topic) target whose scheme is lower-cased, the rest kept: DTM tells http:// from gRPC case-sensitively', async () => {
    expect(parseTarget('HTTP://Host:8080/Path/X?q=A')).toEqual({ kind: 'http', value: 'http://Host:8080/Path/X?q=A' });
    expect(parseTarget('Https://User:Pw@Host/Y')).toEqual({ kind: 'http', value: 'https://User:Pw@Host/Y' });
    expect(parseTarget('TOPIC://Orders')).toEqual({ kind: 'topic', value: 'topic://Orders' });
    expect(parseTarget('http://Host/Z')).toEqual({ kind: 'http', value: 'http://Host/Z' });
    expect(() => parseTarget('ETCD://bank/Withdraw')).toThrow(/discovery drivers such as etcd/);
    // what DTM stores, and what the module calls itself (a TCC Try)
    const { runtime, sent, registered } = recordingRuntime();
    await new Saga(runtime, 'gid-case', { protocol: 'grpc' }).add('HTTP://A/TransOut', 'hTTp://A/TransOutRevert', { amount: 1 }).submit();
    expect(sent[0].request.steps).toEqual([{ action: 'http://A/TransOut', compensate: 'http://A/TransOutRevert' }]);
    await new Tcc(runtime, 'gid-case2', { protocol: 'grpc' }).run((t) => t.callBranch({}, 'HTTP://127.0.0.1:1/try', 'HTTP://A/confirm', 'HTTPS://A/cancel')).catch(() => undefined);
    expect(registered[0].fields).toEqual({ confirm: 'http://A/confirm', cancel: 'https://A/cancel' });
  });
});

describe('payload text', () => {
  it('encodes objects once, passes strings and UTF-8 bytes as they are, never an empty body', () => {
    expect(payloadText({ a: 1 })).toBe('{"a":1}');
    expect(payloadText([1, 2])).toBe('[1,2]');
    expect(payloadText('{"already":"json"}')).toBe('{"already":"json"}');
    expect(payloadText(Buffer.from('héllo', 'utf8'))).toBe('héllo');
    expect(payloadText(new TextEncoder().encode('plain Uint8Array'))).toBe('plain Uint8Array');
    expect(payloadText(undefined)).toBe('{}');
    expect(payloadText(null)).toBe('null');
    expect(payloadText(42)).toBe('42');
  });

  it('refuses what DTM would mangle, as misuse', () => {
    expect(() => payloadText('')).toThrow(/must not be an empty string .*GET/);
    expect(() => payloadText(Buffer.from([0xff, 0xfe]))).toThrow(/valid UTF-8/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => payloadText(cyclic)).toThrow(DtmUsageError);
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
  const client = new DtmClient(config);

  it('refuses an empty gid or one with spaces', () => {
    expect(() => client.newSaga('')).toThrow(DtmUsageError);
    expect(() => client.newMsg('a b')).toThrow(/gid "a b" cannot be used: the gid has a space at position 2/);
  });

  it('throws DtmDisabledError on any use when enabled is false', async () => {
    const disabled = new DtmClient(resolveDtmConfig({ config: { enabled: false } }, {}));
    expect(disabled.enabled).toBe(false);
    expect(() => disabled.newSaga('g')).toThrow(DtmDisabledError);
    await expect(disabled.generateGid()).rejects.toThrow(/DTM is disabled \(lynx\.dtm\.enabled: false\), so generateGid\(\) cannot run/);
    await expect(disabled.tccGlobalTransaction('g', async () => undefined)).rejects.toBeInstanceOf(DtmDisabledError);
  });
});

describe('bad input is refused with DtmUsageError before anything is sent', () => {
  const untyped = <T>(value: unknown) => value as T; // what plain JavaScript may pass: the types refuse it

  it('branch headers DTM could never send: a line break in a value, a name that is no HTTP token, a value that is no string, headers that are no object', async () => {
    const { runtime, sent } = recordingRuntime();
    const saga = (branchHeaders: unknown) => new Saga(runtime, 'gid-h', { branchHeaders: untyped(branchHeaders) }).add('http://a/x', 'http://a/y', {});
    expect(() => saga({ a: 'x\r\nX-Injected: 1' })).toThrow(/branch header "a" has a line break or another control character in its value/);
    expect(() => saga({ 'bad name': 'x' })).toThrow(/branch header "bad name" is not an HTTP header name/);
    expect(() => saga({ '': 'x' })).toThrow(DtmUsageError);
    expect(() => saga({ a: 1 })).toThrow(/branch header "a" must have a string value, got number/);
    expect(() => saga('x')).toThrow(/branchHeaders must be an object, got string/);
    expect(() => new Saga(runtime, 'gid-h2').setOptions(untyped(null))).toThrow(/the options must be an object, got null/);
    // tab is allowed in a value; over gRPC the stricter metadata rules apply as before
    expect(saga({ a: 'x\ty' }).options.branchHeaders).toEqual({ a: 'x\ty' });
    expect(sent).toEqual([]);
  });

  it('with authenticated calls, forwarded headers are signed: a value that is not ASCII is refused (it would not reach the branch as signed); trace propagation is not signed', async () => {
    const { runtime, sent } = recordingRuntime({ 'x-request-id': 'r1', baggage: 'k=v' });
    const signing: TransactionRuntime = { ...runtime, config: { ...config, branchAuthKeys: new BranchAuth(['k'.repeat(40)]) } };
    expect(() => new Saga(signing, 'gid-a', { branchHeaders: { 'x-tenant': 'José' } })).toThrow(/branch header x-tenant has a value that is not printable ASCII/);
    expect(() => new Saga(runtime, 'gid-a', { branchHeaders: { 'x-tenant': 'José' } })).not.toThrow(); // without keys: as before
    await new Saga(signing, 'gid-a', { branchHeaders: { 'X-Tenant': 't1', 'x-b3-traceid': 'ab' } }).add('http://a/x', 'http://a/y', {}).submit();
    expect(sent[0].request.options.branchHeaders).toMatchObject({ 'x-request-id': 'r1', baggage: 'k=v', 'X-Tenant': 't1', 'dtm-auth-headers': 'x-request-id,x-tenant' });
    // the tokens' issue time (Unix seconds), which they sign
    expect(Math.abs(Number(sent[0].request.options.branchHeaders['dtm-auth-issued']) - Date.now() / 1000)).toBeLessThan(5);
    // over gRPC: spaces around a value and user-agent never reach a gRPC branch as sent
    expect(() => new Saga(runtime, 'gid-g', { protocol: 'grpc', branchHeaders: { 'x-tenant': 't1 ' } })).toThrow(/has spaces around its value/);
    expect(() => new Saga(signing, 'gid-g', { protocol: 'grpc', branchHeaders: { 'user-agent': 'me' } })).toThrow(/branch header user-agent cannot be signed for gRPC branches/);
    expect(() => new Saga(signing, 'gid-g', { protocol: 'grpc', branchHeaders: { 'x-key-bin': 'AQ==' } })).toThrow(/x-key-bin cannot be signed/);
    expect(() => new Saga(runtime, 'gid-g', { protocol: 'grpc', branchHeaders: { 'user-agent': 'me' } })).not.toThrow(); // without keys: as before
  });

  it('a target with a space, a line break or a control character; a protocol that does not exist; null options are no options', () => {
    const { runtime } = recordingRuntime();
    const saga = new Saga(runtime, 'gid-t');
    expect(() => saga.add('http://a/x\r\nX-Y: z', {})).toThrow(/holds a space, a line break or another control character: DTM could never call it/);
    expect(() => saga.add('http://a/x y', {})).toThrow(DtmUsageError);
    expect(() => saga.add('http://a/x', 'http://a/\u0000', {})).toThrow(DtmUsageError);
    expect(() => new Saga(runtime, 'gid-p', { protocol: untyped('ftp') })).toThrow("protocol must be 'http' or 'grpc', got \"ftp\"");
    expect(new Saga(runtime, 'gid-n', untyped(null)).protocol).toBe('http');
    expect(() => new Saga(runtime, 'gid-w', { waitResult: untyped('yes') })).toThrow('waitResult must be true or false, got "yes"');
    expect(() => resolveDtmConfig(untyped(null), {})).toThrow(/options: must be an object such as \{ configFile: "config.yaml" \}/);
    expect(() => resolveDtmConfig(untyped('config.yaml'), {})).toThrow(/options: must be an object/);
  });

  it('saga branch orders: a circle (or a step waiting for itself) is refused at submit, as are preSteps that are no array and indexes that are no numbers', async () => {
    const { runtime, sent } = recordingRuntime();
    const two = () => new Saga(runtime, 'gid-o').add('http://a/1', 'http://a/1r', {}).add('http://a/2', 'http://a/2r', {}).add('http://a/3', 'http://a/3r', {}).enableConcurrent();
    await expect(two().addBranchOrder(0, [1]).addBranchOrder(1, [2]).addBranchOrder(2, [0]).submit()).rejects.toThrow("the saga's branch orders wait in a circle (0 → 1 → 2 → 0)");
    await expect(two().addBranchOrder(1, [1]).submit()).rejects.toThrow('wait in a circle (1 → 1)');
    expect(() => two().addBranchOrder(0, untyped(null))).toThrow('addBranchOrder(0, preSteps): preSteps must be an array of step indexes, got null');
    await expect(two().addBranchOrder(untyped('0'), []).submit()).rejects.toThrow('a step is given by its index, a whole number from 0 to 2, got string "0"');
    expect(sent).toEqual([]);
    // orders without a circle pass: 2 after 0 and 1, 1 after 0
    await two().addBranchOrder(2, [0, 1]).addBranchOrder(1, [0]).submit();
    expect(JSON.parse(sent[0].request.customData!)).toEqual({ concurrent: true, orders: { '2': [0, 1], '1': [0] } });
  });

  it('a TCC / XA body or a message\'s local transaction that is no function, a Try without Confirm and Cancel, a message without a back-check or with an empty topic', async () => {
    const { runtime, sent } = recordingRuntime();
    await expect(new Tcc(runtime, 'gid-tcc').run(untyped(undefined))).rejects.toThrow('the body of tcc gid-tcc must be a function, got undefined');
    await expect(new Xa(runtime, 'gid-xa').runAndWait(untyped(null))).rejects.toThrow('the body of xa gid-xa must be a function, got null');
    await expect(new Msg(runtime, 'gid-m').add('http://a/x', {}).doAndSubmit('http://a/qp', untyped(undefined))).rejects.toThrow('the local transaction of msg gid-m must be a function, got undefined');
    await expect(new Msg(runtime, 'gid-m2').add('http://a/x', {}).doAndSubmitDb('http://a/qp', untyped<never>(null), async () => 1)).rejects.toThrow(/db must be a barrier database/);
    await expect(new Msg(runtime, 'gid-m3').add('http://a/x', {}).prepare(untyped(undefined))).rejects.toThrow(DtmUsageError);
    await expect(new Msg(runtime, 'gid-m4').add('http://a/x', {}).prepare('')).rejects.toThrow('the back-check target is empty');
    expect(() => new Msg(runtime, 'gid-m5').addTopic('')).toThrow('a topic must be a non-empty string');
    expect(sent).toEqual([]); // nothing prepared
    // the Try given as a target without its Confirm / Cancel: refused before the branch is registered
    const refused = new Tcc(runtime, 'gid-tcc2').run(async (tcc) => tcc.callBranch({}, 'http://a/try', untyped(undefined), untyped(undefined)));
    await expect(refused).rejects.toThrow(/a Try given as a target needs its Confirm and Cancel targets/);
    expect(sent.map((s) => s.op)).toEqual(['prepare', 'abort']); // the body's error aborts what was prepared
  });

  it('list() filters DTM would answer with a 500, or with every transaction', async () => {
    const client = new DtmClient(config);
    await expect(client.list({ limit: untyped('x') })).rejects.toThrow('list(filter): limit must be a whole number from 1 to 1000, got "x"; nothing was sent');
    await expect(client.list({ limit: -1 })).rejects.toThrow(DtmUsageError);
    await expect(client.list({ limit: 1e9 })).rejects.toThrow(DtmUsageError);
    await expect(client.list({ status: untyped({}) })).rejects.toThrow('status must be a string, got object');
    await expect(client.list({ createdAfter: new Date('nope') })).rejects.toThrow('createdAfter must be a valid Date');
  });

  it('xaLocalTransaction() without an XA branch call, without an XA database or without a function', async () => {
    const client = new DtmClient(config);
    const connects: string[] = [];
    const db = untyped<XaDatabase>({ dialect: 'mysql', connect: async () => void connects.push('connect') });
    const branch = untyped<BranchInfo>({ gid: 'gid-xa', branchId: '01', transType: 'xa', op: 'action', phase2Url: 'http://a/xa' });
    await expect(client.xaLocalTransaction(untyped(undefined), db, async () => 1)).rejects.toThrow('xaLocalTransaction(branch, db, business) needs the @BranchContext() of an XA branch call (an @XaBranch handler) as branch');
    await expect(client.xaLocalTransaction(untyped({ ...branch, transType: 'saga' }), db, async () => 1)).rejects.toThrow(DtmUsageError);
    await expect(client.xaLocalTransaction(branch, untyped<XaDatabase>(null), async () => 1)).rejects.toThrow(/db must be an XA database \(mysqlXaDatabase\(.*got null$/);
    await expect(client.xaLocalTransaction(branch, untyped<XaDatabase>({ dialect: 'oracle', connect: db.connect }), async () => 1)).rejects.toThrow(/got an object without connect\(\) and dialect mysql \/ postgres/);
    await expect(client.xaLocalTransaction(branch, db, untyped('run'))).rejects.toThrow('the local transaction of XA branch gid-xa-01 must be a function, got string');
    expect(connects).toEqual([]); // no connection opened
  });
});
