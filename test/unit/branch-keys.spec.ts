// The rule of gids and branch ids (lib/transport/branch-keys.ts), on its own and as the AP applies
// it: a transaction whose gid breaks it is refused before anything is sent to DTM. The participant
// side (the branch guard, and @BranchContext() on a route without a branch decorator) is in
// test/e2e/barrier-security.spec.ts, against the real DTM server; here the op rule of such routes and
// the barrier's refusal of an undo call they found breaking the rules.
import { describe, expect, it } from '@jest/globals';
import { BranchBarrier, branchKeysProblem, DtmClient, DtmFailureError, DtmUsageError, MAX_BRANCH_KEY_LENGTH, resolveDtmConfig } from 'nestjs-dtm';
import { DTM_OPS, DTM_TRANS_TYPES, opProblem, transTypeProblem } from '../../lib/transport/branch-keys.js';
import type { DtmTransport } from '../../lib/transport/dtm-transport.js';
import { HttpTransport } from '../../lib/transport/http/http.transport.js';
import { Saga } from '../../lib/transactions/saga.js';
import type { TransactionRuntime } from '../../lib/transactions/transaction-runtime.js';

describe('branchKeysProblem', () => {
  it.each([
    ['Vtr7mDqTCg9kDdZXsNy4kF', '01'], // DTM's newGid (shortuuid), a saga / TCC / XA branch
    ['0f8fad5b-d9cb-469f-a165-70867728950e', '0101'], // a UUID; a nested TCC branch
    ['01ARZ3NDEKTSV4RRFFQ69G5FAV', '01-02'], // a ULID; a message branch of a topic's second subscriber
    ['order-7', '00'], // the back-check and workflow resume branch
    ['Order_7:2026', ''],
    ['tenant/order#7', '02'],
    ['YWJj+/d==', '01'], // base64
    ['TestSagaNormal.v2@svc~1', '99'],
    ['g'.repeat(MAX_BRANCH_KEY_LENGTH), '0'.repeat(MAX_BRANCH_KEY_LENGTH)],
  ])('accepts gid %j with branch id %j', (gid, branchId) => {
    expect(branchKeysProblem(gid, branchId)).toBeUndefined();
  });

  it.each([
    ['g'.repeat(129), '01', 'the gid is 129 characters, over the limit of 128'],
    ['', '01', 'the gid is empty'],
    ['Order-7 ', '01', 'the gid has a space at position 8'],
    [' Order-7', '01', 'the gid has a space at position 1'],
    ['order 7', '01', 'the gid has a space at position 6'],
    ['a\nb', '01', 'the gid has a control character (U+000A) at position 2'],
    ['a\u0000', '01', 'the gid has a control character (U+0000) at position 2'],
    ["x', 1); --", '01', 'the gid has a quote at position 2'],
    ['a"b', '01', 'the gid has a quote at position 2'],
    ['a`b', '01', 'the gid has a quote at position 2'],
    ['a\\b', '01', 'the gid has a backslash at position 2'],
    ['a;b', '01', "the gid has a ';' (DTM strips it from gids) at position 2"],
    ['café', '01', 'the gid has a non-ASCII character (U+00E9) at position 4'],
    ['ok-gid', '0'.repeat(129), 'the branch id is 129 characters, over the limit of 128'],
    ['ok-gid', "01'", 'the branch id has a quote at position 3'],
  ])('refuses gid %j with branch id %j: %s', (gid, branchId, problem) => {
    expect(branchKeysProblem(gid, branchId)).toContain(problem);
  });

  it('never repeats the value: DTM reads the words FAILURE and ONGOING anywhere in an answer', () => {
    const problem = branchKeysProblem(`ONGOING-${'x'.repeat(200)}`, '01')!;
    expect(problem).toBe("the gid is 208 characters, over the limit of 128 (DTM's SQL stores and the barrier table keep it in varchar(128))");
    expect(branchKeysProblem("ONGOING'", '01')).not.toContain('ONGOING');
  });
});

describe('transTypeProblem', () => {
  const problem = 'the trans_type is none DTM sends (saga, msg, tcc, xa, workflow, in lower case)';

  it.each(['saga', 'msg', 'tcc', 'xa', 'workflow'])('accepts %j, a type DTM v1.19 sends', (transType) => {
    expect(transTypeProblem(transType)).toBeUndefined();
  });

  it.each(['SAGA', 'Tcc', 'saga ', ' saga', 'saga\n', 'sa\u0000ga', 'sagas', 'other', 'x'.repeat(46), 'ONGOING', 'FAILURE-saga'])('refuses %j, without repeating it', (transType) => {
    expect(transTypeProblem(transType)).toBe(problem);
  });

  it('the types are the ones DTM v1.19 registers a processor for (dtmsvr/trans_type_*.go), each short enough for the barrier\'s varchar(45)', () => {
    expect([...DTM_TRANS_TYPES].sort()).toEqual(['msg', 'saga', 'tcc', 'workflow', 'xa']);
    expect(Math.max(...[...DTM_TRANS_TYPES].map((type) => type.length))).toBeLessThanOrEqual(45);
  });
});

describe('opProblem (a call to a route without a branch decorator, which declares no ops)', () => {
  const problem = "the op is none DTM sends (action, compensate, try, confirm, cancel, commit, rollback, msg; a workflow's resume, trans_type workflow and branch 00, its name)";

  it('the ops are the ones DTM v1.19 sends (client/dtmcli/dtmimp/consts.go), each short enough for the barrier\'s varchar(45)', () => {
    expect([...DTM_OPS].sort()).toEqual(['action', 'cancel', 'commit', 'compensate', 'confirm', 'msg', 'rollback', 'try']);
    for (const op of DTM_OPS) expect(opProblem(op, 'saga', '01')).toBeUndefined();
  });

  it.each([['ACTION'], ['action '], ['o'.repeat(46)], ['prepare'], ['ONGOING']])('refuses %j, without repeating it', (op) => {
    expect(opProblem(op, 'saga', '01')).toBe(problem);
    expect(opProblem(op, 'workflow', '01')).toBe(problem);
  });

  it("accepts any op in a workflow's resume (trans_type workflow, branch 00): DTM sends the workflow's name there", () => {
    expect(opProblem('transfer-v2', 'workflow', '00')).toBeUndefined();
  });
});

describe('BranchBarrier with a refusal (DtmClient.barrier() of an undo call @BranchContext() found breaking the rules)', () => {
  const refusal = 'the gid has a space at position 3';
  /** A database and a Redis client that fail the test if the barrier touches them. */
  const untouched = {
    db: { dialect: 'postgres', transaction: () => Promise.reject(new Error('touched the database')), execute: () => Promise.reject(new Error('touched the database')) },
    tx: { dialect: 'postgres', execute: () => Promise.reject(new Error('touched the transaction')) },
    redis: { eval: () => Promise.reject(new Error('touched Redis')) },
  } as const;
  const business = () => Promise.reject(new Error('ran the business'));

  it.each(['compensate', 'cancel', 'rollback'])('op %s: every method resolves as a null compensation, writing nothing, running nothing', async (op) => {
    const barrier = new BranchBarrier('saga', 'g- x', '01', op, { refusal });
    const skipped = { executed: false, reason: 'null-compensation' };
    expect(await barrier.callWithDb(untouched.db as never, business)).toEqual(skipped);
    expect(await barrier.call(untouched.tx as never, business)).toEqual(skipped);
    expect(await barrier.redisCheckAdjustAmount(untouched.redis as never, 'k', 5)).toEqual(skipped);
  });

  it.each(['action', 'try', 'msg'])('op %s: every method throws DtmFailureError saying why, writing nothing, running nothing', async (op) => {
    const barrier = new BranchBarrier('saga', 'g- x', '01', op, { refusal });
    const failure = `branch call refused: ${refusal}; the handler did not run and nothing was written`;
    for (const attempt of [
      () => barrier.callWithDb(untouched.db as never, business),
      () => barrier.call(untouched.tx as never, business),
      () => barrier.redisCheckAdjustAmount(untouched.redis as never, 'k', 5),
      () => barrier.queryPrepared(untouched.db as never),
      () => barrier.redisQueryPrepared(untouched.redis as never),
    ]) {
      const error = await attempt().then(() => undefined, (e: unknown) => e);
      expect([error instanceof DtmFailureError, (error as Error).message]).toEqual([true, failure]);
    }
  });
});

describe('the AP side: a gid that breaks the rule is refused before anything is sent to DTM', () => {
  const config = resolveDtmConfig({ config: { serverUrl: 'http://127.0.0.1:9/api/dtmsvr' } }, {});
  const client = new DtmClient(config);

  it('names the limit, for every kind of transaction', async () => {
    const tooLong = `order-${'7'.repeat(130)}`;
    expect(() => client.newSaga(tooLong)).toThrow(new DtmUsageError(`gid "order-${'7'.repeat(54)}…" cannot be used: the gid is 136 characters, over the limit of 128 (DTM's SQL stores and the barrier table keep it in varchar(128)); nothing was sent to DTM. Use generateGid(), or a business id such as order-7 or Order_7:2026`));
    expect(() => client.newMsg('order-7;drop')).toThrow(/gid "order-7;drop" cannot be used: the gid has a ';' \(DTM strips it from gids\) at position 8/);
    let ran = false;
    const body = async () => {
      ran = true;
    };
    // an unreachable DTM: anything sent would fail as DtmUnavailableError, not as DtmUsageError
    await expect(client.tccGlobalTransaction('Order-7 ', body)).rejects.toThrow(/the gid has a space at position 8/);
    await expect(client.xaGlobalTransaction("o'7", body)).rejects.toBeInstanceOf(DtmUsageError);
    expect(ran).toBe(false);
  });

  it('the transaction is not even built: no prepare or submit reaches the transport', () => {
    const sent: string[] = [];
    const http = new HttpTransport(config);
    const transport = Object.assign(Object.create(http) as DtmTransport, {
      prepare: async () => void sent.push('prepare'),
      submit: async () => void sent.push('submit'),
    });
    const runtime = { config, transport: () => transport, passThroughHeaders: () => ({}) } as unknown as TransactionRuntime;
    expect(() => new Saga(runtime, 'é-7').add('http://app/a', 'http://app/b', {})).toThrow(/non-ASCII character \(U\+00E9\) at position 1/);
    expect(sent).toEqual([]);
    // the same gid, fixed, goes through
    expect(() => new Saga(runtime, 'e-7').add('http://app/a', 'http://app/b', {})).not.toThrow();
  });
});
