// DTM on a SQL store (MariaDB) keeps rollback_reason, options, custom_data, result, query_prepared
// and branch URLs in varchar(1024) columns (sqls/dtmsvr.storage.mysql.sql), counted in characters
// (utf8mb4), and answers a longer value with a 500 "Data too long for column ..." after which it
// holds nothing of the call. The module cuts the rollback reason it sends to 1024 characters (an
// abort DTM refused would leave the transaction to its timeoutToFail), and reads DTM's refusal of
// options too long as a refusal, at once (DtmServerError), not as a 5xx that may pass.
import { expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { DtmServerError } from 'nestjs-dtm';
import { waitForTransaction } from 'nestjs-dtm/testing';
import { startDtmApp } from '../support/dtm-app.js';
import { queryTrans } from '../support/harness.js';
import { useSqlStoreDtmApp } from '../support/sql-store-dtm.js';
import { startBranchApp } from './branch-app.js';
import { startShopApp } from './grpc-app.js';

const fx = useSqlStoreDtmApp('dtm-sql-limits');

/** POSTs `body` to DTM's `op` straight (not through the module): `<status> <body>`. */
async function post(op: string, body: unknown): Promise<string> {
  const res = await fetch(`${fx.dtm.serverUrl}/${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return `${res.status} ${await res.text()}`;
}

it('pins DTM v1.19 on MariaDB: rollback_reason takes 1024 characters (4-byte ones too: characters, not bytes); one more is a 500 "Data too long" and the abort is lost', async () => {
  const fits = await fx.app.client.generateGid();
  expect(await post('prepare', { gid: fits, trans_type: 'tcc', protocol: '' })).toMatch(/^200/);
  expect(await post('abort', { gid: fits, trans_type: 'tcc', rollback_reason: '😀'.repeat(1024), protocol: '' })).toMatch(/^200/);
  // DTM answers the abort before it finishes it (a goroutine moves 'aborting' to 'failed').
  const finished = await waitForTransaction(fx.dtm.serverUrl, fits, { timeout: 10 });
  expect(finished.status).toBe('failed');
  expect(Array.from(finished.rawRollbackReason ?? '')).toHaveLength(1024);

  const over = await fx.app.client.generateGid();
  expect(await post('prepare', { gid: over, trans_type: 'tcc', protocol: '' })).toMatch(/^200/);
  expect(await post('abort', { gid: over, trans_type: 'tcc', rollback_reason: 'x'.repeat(1025), protocol: '' })).toMatch(/^500 .*Data too long for column 'rollback_reason'/);
  expect((await queryTrans(over, fx.dtm.serverUrl)).transaction?.status).toBe('prepared');
  await post('forceStop', { gid: over });
});

it('TCC whose body error has a message over 1024 characters: the abort reaches DTM (the reason cut to 1024 characters, marked), the branch is cancelled at once', async () => {
  const gid = await fx.app.client.generateGid();
  fx.recorder.answer('/Try', { status: 409, body: { message: `insufficient stock 😀: ${'sku-123, '.repeat(150)}` } });
  const outcome = await fx.app.client
    .tccGlobalTransactionAndWait(gid, async (tcc) => {
      await tcc.callBranch({ amount: 1 }, fx.recorder.urlFor('/Try'), fx.recorder.urlFor('/Confirm'), fx.recorder.urlFor('/Cancel'));
    }, { timeoutToFail: 600 }, { timeout: 10 })
    .then((o) => o.status, (e: Error) => `${e.name}: ${e.message.slice(0, 300)}`);
  expect(outcome).toBe('failed');
  expect(fx.recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Try', '/Cancel']);
  const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
  expect(Array.from(reason)).toHaveLength(1024);
  expect(reason).toContain('insufficient stock 😀');
  expect(reason.endsWith('…')).toBe(true);
});

it('a saga whose options DTM cannot store (a 1100-character forwarded bearer token): DtmServerError at once naming the column and the fix, not a resubmit loop ending "outcome unknown"; nothing stored or run', async () => {
  const gid = await fx.app.client.generateGid();
  const started = Date.now();
  const error = await fx.app.client
    .newSaga(gid, { branchHeaders: { authorization: `Bearer ${'x'.repeat(1100)}` } })
    .add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1 })
    .submitAndWait({ timeout: 15 })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmServerError);
  expect((error as Error).message).toMatch(/options.*varchar\(1024\).*branch header/s);
  expect(Date.now() - started).toBeLessThan(10_000); // not the wait's 15 s
  expect((await queryTrans(gid, fx.dtm.serverUrl)).transaction).toBeFalsy();
  expect(fx.recorder.callsFor(gid)).toEqual([]);
});

it('a TCC whose options DTM cannot store: its prepare is refused, DtmServerError before the body runs', async () => {
  const gid = await fx.app.client.generateGid();
  let ran = false;
  const error = await fx.app.client
    .tccGlobalTransaction(gid, async () => {
      ran = true;
    }, { branchHeaders: { authorization: `Bearer ${'x'.repeat(1100)}` } })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmServerError);
  expect((error as Error).message).toContain("Data too long for column 'options'");
  expect(ran).toBe(false);
});

it('a SQL store keeps no saga steps: submitAndWait tells a saga still running under the gid by its branches (the same saga submitted again goes on, another one is DtmGidInUseError, nothing sent)', async () => {
  const gid = await fx.app.client.generateGid();
  const transfer = (amount: number) =>
    fx.app.client.newSaga(gid, { retryInterval: 60 }).add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount }).add(fx.recorder.urlFor('/TransIn'), '', { amount });
  fx.recorder.answer('/TransOut', 425, 200);
  await transfer(5).submit();
  await fx.recorder.waitForCalls('/TransOut', 1, { gid });
  expect((await queryTrans(gid, fx.dtm.serverUrl)).transaction?.steps).toBeUndefined();

  // another payload: another saga
  await expect(transfer(6).submitAndWait({ timeout: 10 })).rejects.toMatchObject({ name: 'DtmGidInUseError', gid, currentStatus: 'submitted' });
  expect(fx.recorder.callsFor(gid).map((c) => c.body)).toEqual(['{"amount":5}']);
  const final = await transfer(5).submitAndWait({ timeout: 20 });
  expect(final.status).toBe('succeed');
  expect(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.body}`)).toEqual(['/TransOut {"amount":5}', '/TransOut {"amount":5}', '/TransIn {"amount":5}']);
});

it('the outcome a wait answers on a SQL store has the branch statuses DTM wrote in the end (DTM writes them in 200 ms batches, after it recorded the transaction finished): a saga\'s actions and a TCC\'s confirms succeed, not prepared', async () => {
  const saga = await fx.app.client.generateGid();
  const sagaFinal = await fx.app.client
    .newSaga(saga)
    .add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1 })
    .add(fx.recorder.urlFor('/TransIn'), fx.recorder.urlFor('/TransInRevert'), { amount: 1 })
    .submitAndWait();
  expect([sagaFinal.status, sagaFinal.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)]).toEqual([
    'succeed',
    ['01 compensate prepared', '01 action succeed', '02 compensate prepared', '02 action succeed'],
  ]);

  const tcc = await fx.app.client.generateGid();
  const tccFinal = await fx.app.client.tccGlobalTransactionAndWait(tcc, async (t) => {
    await t.callBranch({ amount: 1 }, fx.recorder.urlFor('/Try'), fx.recorder.urlFor('/Confirm'), fx.recorder.urlFor('/Cancel'));
  });
  expect([tccFinal.status, tccFinal.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)]).toEqual(['succeed', ['01 cancel prepared', '01 confirm succeed']]);
  // what DTM holds now: the same
  expect((await queryTrans(tcc, fx.dtm.serverUrl)).branches.map((b) => b.status)).toEqual(['prepared', 'succeed']);
});

it("a saga action of this app answering FAILURE with a reason over what DTM's rollback_reason takes (DTM stores 'url:<url> return failed: <answer> FAILURE'): the saga rolls back at once with the reason cut, not after a retry interval with 'fail message lost'", async () => {
  const bank = await startBranchApp('express', { serverUrl: fx.dtm.serverUrl, retryInterval: 60 });
  try {
    const gid = await bank.client.generateGid();
    bank.ledger.script('transIn', 'failure-long');
    const final = await bank.client.newSaga(gid).add('transOut', { amount: 10 }).add('transIn', { amount: 10 }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('transIn refused: "limits" 😀 line over its limit;');
    const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
    expect(reason).toMatch(/^url:http:\/\/127\.0\.0\.1:\d+\/api\/v1\/bank\/trans-in return failed: \{"dtm_result":"FAILURE","message":"transIn refused: .*…"\} FAILURE$/);
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
    expect(bank.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transIn', 'transInCompensate', 'transOutCompensate']);
  } finally {
    await bank.close();
  }
});

it("the same for a reason of quotes, whose JSON escapes make the answer twice its length (before: the cut gave up on it, the answer went whole and DTM failed to store the rollback)", async () => {
  const bank = await startBranchApp('express', { serverUrl: fx.dtm.serverUrl, retryInterval: 60 });
  try {
    const gid = await bank.client.generateGid();
    bank.ledger.script('transIn', 'failure-quotes');
    const final = await bank.client.newSaga(gid).add('transOut', { amount: 10 }).add('transIn', { amount: 10 }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toMatch(/^transIn refused: "+…$/);
    const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
    expect(bank.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transIn', 'transInCompensate', 'transOutCompensate']);
  } finally {
    await bank.close();
  }
});

it('the same over gRPC: a @GrpcMethod saga action answering ABORTED with a reason over what DTM stores rolls the saga back at once, its reason cut', async () => {
  const shop = await startShopApp('microservice', { serverUrl: fx.dtm.serverUrl, grpcServer: fx.dtm.grpcAddress, retryInterval: 60 });
  try {
    const gid = await shop.client.generateGid();
    const sku = `sku-"7" 😀 ${'one line over its limit; '.repeat(70)}`;
    const final = await shop.client.newSaga(gid).add('reserve', { sku, quantity: 1, script: 'refuse' }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('out of stock: sku-"7" 😀 one line over its limit;');
    const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
    expect(reason).toMatch(/^url:127\.0\.0\.1:\d+\/tests\.Shop\/Reserve return failed: out of stock: sku-"7" .*… FAILURE$/);
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
    expect(shop.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['reserve', 'reserveRevert']);
  } finally {
    await shop.close();
  }
});

it("a saga action of this app throwing its own ConflictException (409) of some 2000 characters: the saga rolls back at once, DTM's rollback reason the cut message within 1024 characters (before: the 409 went cut to 4000 only, DTM failed to store it and rolled back a retry interval later, 'fail message lost')", async () => {
  const bank = await startBranchApp('express', { serverUrl: fx.dtm.serverUrl, retryInterval: 60 });
  try {
    const gid = await bank.client.generateGid();
    bank.ledger.script('transIn', 'conflict-long');
    const final = await bank.client.newSaga(gid).add('transOut', { amount: 10 }).add('transIn', { amount: 10 }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toMatch(/^transIn conflicts: "limits" 😀 (line over its limit; )+[a-z ]*…$/);
    const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
    expect(reason).toMatch(/^url:http:\/\/127\.0\.0\.1:\d+\/api\/v1\/bank\/trans-in return failed: \{"dtm_result":"FAILURE","message":"transIn conflicts: .*…"\} FAILURE$/);
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
    expect(bank.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transIn', 'transInCompensate', 'transOutCompensate']);
  } finally {
    await bank.close();
  }
});

it("the same over gRPC for a @GrpcMethod saga action's own RpcException ABORTED of some 2000 characters: rolled back at once, its reason cut within 1024", async () => {
  const shop = await startShopApp('microservice', { serverUrl: fx.dtm.serverUrl, grpcServer: fx.dtm.grpcAddress, retryInterval: 60 });
  try {
    const gid = await shop.client.generateGid();
    const sku = `sku-"8" 😀 ${'one line over its limit; '.repeat(80)}`;
    const final = await shop.client.newSaga(gid).add('reserve', { sku, quantity: 1, script: 'rpc-abort' }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('out of stock: sku-"8" 😀 one line over its limit;');
    const reason = (await queryTrans(gid, fx.dtm.serverUrl)).transaction?.rollback_reason ?? '';
    expect(reason).toMatch(/^url:127\.0\.0\.1:\d+\/tests\.Shop\/Reserve return failed: out of stock: sku-"8" .*… FAILURE$/);
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
    expect(shop.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['reserve', 'reserveRevert']);
  } finally {
    await shop.close();
  }
});

it("a saga step whose payload is over what DTM's MySQL store keeps of a branch's payload (bin_data, a BLOB: 65535 bytes): DtmServerError naming that column's limit in bytes, not a varchar(1024) and 'shorten it to 1024 characters'; nothing stored or run", async () => {
  const gid = await fx.app.client.generateGid();
  const saga = () => fx.app.client.newSaga(gid).add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1, pad: 'x'.repeat(70_000) });
  for (const error of [await saga().submitAndWait({ timeout: 15 }).catch((e: unknown) => e), await saga().submit().catch((e: unknown) => e)]) {
    expect(error).toBeInstanceOf(DtmServerError);
    expect((error as Error).message).toMatch(/bin_data.* BLOB .*65535 bytes/);
    expect((error as Error).message).not.toMatch(/varchar\(1024\)|1024 characters/);
  }
  // a payload within it is taken
  const fits = await fx.app.client.generateGid();
  const final = await fx.app.client.newSaga(fits).add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1, pad: 'x'.repeat(60_000) }).submitAndWait({ timeout: 15 });
  expect(final.status).toBe('succeed');
  expect((await queryTrans(gid, fx.dtm.serverUrl)).transaction).toBeFalsy();
  expect(fx.recorder.callsFor(gid)).toEqual([]);
});

it("with branch_auth_keys, the dtm-auth tokens (one per step and op) fill DTM's options column: a saga of 13 steps is stored, one of 14 is refused (a message: 27 and 28) with a DtmServerError naming the tokens and what to do (before: only 'pass a long value (a bearer token) some other way than as a branch header', which a transaction forwarding no header cannot follow)", async () => {
  const signing = await startDtmApp({ config: { serverUrl: fx.dtm.serverUrl, protocol: 'http', branchAuthKeys: [randomBytes(33).toString('base64')] } });
  try {
    const saga = async (steps: number) => {
      const gid = await signing.client.generateGid();
      const s = signing.client.newSaga(gid);
      for (let i = 1; i <= steps; i += 1) s.add(fx.recorder.urlFor('/Step'), fx.recorder.urlFor('/StepRevert'), { i });
      return { gid, outcome: await s.submitAndWait({ timeout: 15 }).catch((e: unknown) => e) };
    };
    const fits = await saga(13);
    expect(fits.outcome).toMatchObject({ status: 'succeed' });
    expect(fx.recorder.callsFor(fits.gid)).toHaveLength(13);
    const over = await saga(14);
    expect(over.outcome).toBeInstanceOf(DtmServerError);
    expect((over.outcome as Error).message).toMatch(/options .*varchar\(1024\).*with lynx\.dtm\.branch_auth_keys the dtm-auth tokens of DTM's calls, about 35 characters per step and op: a saga of 14 steps or more, a message of 28 or more, cannot be stored.*split the work into transactions of fewer steps, or run DTM on its boltdb or Redis store/s);
    expect((await queryTrans(over.gid, fx.dtm.serverUrl)).transaction).toBeFalsy();
    expect(fx.recorder.callsFor(over.gid)).toEqual([]);
    // a message: one token per step
    const msg = async (steps: number) => {
      const gid = await signing.client.generateGid();
      const m = signing.client.newMsg(gid);
      for (let i = 1; i <= steps; i += 1) m.add(fx.recorder.urlFor('/Deliver'), { i });
      return m.submitAndWait({ timeout: 15 }).catch((e: unknown) => e);
    };
    expect(await msg(27)).toMatchObject({ status: 'succeed' });
    const refused = await msg(28);
    expect(refused).toBeInstanceOf(DtmServerError);
    expect((refused as Error).message).toContain('a message of 28 or more, cannot be stored');
  } finally {
    await signing.close();
  }
}, 120_000);

it("a wait whose /query answer is over max_answer_bytes (payloads of 2 x 25 kB under a 64 KiB limit): DTM's SQL store keeps no saga steps in its global row, so the status read alone (/all) is small, and the wait ends with DtmOutcomeUnknownError carrying the final status", async () => {
  const small = await startDtmApp({ config: { serverUrl: fx.dtm.serverUrl, protocol: 'http', maxAnswerBytes: 64 * 1024 } });
  try {
    const gid = await small.client.generateGid();
    const saga = small.client.newSaga(gid);
    for (const step of ['A', 'B']) saga.add(fx.recorder.urlFor(`/Large${step}`), fx.recorder.urlFor(`/Large${step}Revert`), { blob: step.repeat(25_000) });
    const error = await saga.submitAndWait({ timeout: 20 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'DtmOutcomeUnknownError', gid, lastStatus: 'succeed' });
    expect((error as Error).message).toContain(`DTM holds ${gid} "succeed", read alone: its record with its branches is more than 65536 bytes (lynx.dtm.max_answer_bytes;`);
    // the whole record, with the default limit
    expect((await fx.app.client.waitForFinal(gid, { timeout: 5 })).branches).toHaveLength(4);
  } finally {
    await small.close();
  }
});
