// What dtm-restart.spec.ts (DTM on Redis), dtm-restart-sql.spec.ts (DTM on PostgreSQL) and
// dtm-restart-mariadb.spec.ts (DTM on MariaDB) run in the barrier app whose DTM they kill: a transfer
// as a workflow, XA branches on PostgreSQL and MariaDB, the kill kit, and the cells the Redis and the
// MariaDB files both run (with what their callers and DTM end with).
import 'reflect-metadata';
import { expect } from '@jest/globals';
import { Body, Controller, Injectable, Post, type Type } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { BarrierTx, DtmOutcomeUnknownError, DtmUnavailableError, DtmWorkflow, DtmWorkflowPendingError, XaBranch, type DtmProtocol, type WorkflowContext } from 'nestjs-dtm';
import { queryTrans, triggerCron, type DtmQueryAnswer, type TransStatus } from '../support/harness.js';
import { settledWithin } from '../support/fixtures.js';
import type { Recorder } from '../support/recorder.js';
import type { RunningDtm } from '../support/services/dtm.js';
import { logTail, waitUntil } from '../support/services/process.js';
import { bankHelpers, type BarrierApp } from './barrier-app.js';

/** What a workflow transfer is given: the gate is a step of another service (the test's recorder). */
export interface RestartTransfer {
  protocol: DtmProtocol;
  account: number;
  amount: number;
  gate: string;
}

/**
 * A provider with the workflow `name`: a transfer out of PostgreSQL, through the gate, into MariaDB, each bank step
 * with its compensation, on the banks of `app()`.
 */
export function restartWorkflows(name: string, app: () => BarrierApp): Type<unknown> {
  @Injectable()
  class RestartWorkflows {
    @DtmWorkflow(name)
    async transfer(wf: WorkflowContext<RestartTransfer>) {
      const { protocol, account, amount, gate } = wf.input;
      const move = { account, amount };
      const bank = bankHelpers(app);
      const at = (store: 'pg' | 'mysql', path: string) => bank.target(store, protocol, path);
      const call = <T>(step: { http(t: string, p?: object): Promise<T>; grpc(t: string, p?: object | Uint8Array): Promise<T> }, target: string, payload: object | Uint8Array) =>
        protocol === 'grpc' ? step.grpc(target, payload) : step.http(target, payload as object);
      await call(wf.step('withdraw').onRollback((b) => call(b, at('pg', 'trans-out-compensate'), move)), at('pg', 'trans-out'), move);
      await call(wf.step('gate'), gate, protocol === 'grpc' ? new Uint8Array() : {});
      await call(wf.step('deposit').onRollback((b) => call(b, at('mysql', 'trans-in-compensate'), move)), at('mysql', 'trans-in'), move);
    }
  }
  return RestartWorkflows;
}

/** XA branches adding `amount` (negative: taking it) to `account`, on PostgreSQL (`xa.pg`, connection `pgxa`) and MariaDB (`xa.mysql`, `myxa`). */
@Controller('xa-bank')
export class RestartXaBank {
  @Post('pg')
  @GrpcMethod('XaBank', 'Pg')
  @XaBranch('xa.pg', { db: 'pgxa' })
  async pg(@Body() m: { account: number; amount: number }, @BarrierTx() client: pg.Client) {
    await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }

  @Post('mysql')
  @GrpcMethod('XaBank', 'Mysql')
  @XaBranch('xa.mysql', { db: 'myxa' })
  async mysql(@Body() m: { account: number; amount: number }, @BarrierTx() conn: mysql.Connection) {
    await conn.query('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
  }
}

/** One transaction in flight at the kill: `inFlight` resolves when it reached the moment the kill must catch; `outcome` is what its caller's await gave (value or error). */
export interface KillCell {
  gid: string;
  account: number;
  inFlight: Promise<unknown>;
  outcome: Promise<{ value?: unknown; error?: unknown }>;
}

/** What a cell moves: `amount` out of `account` at PostgreSQL, into it at MariaDB. */
export interface Move {
  account: number;
  amount: number;
}
/** The amount every cell of {@link killKit}'s `add` moves. */
export const RESTART_AMOUNT = 10;
/** Starts a cell's transaction on `gid`: `inFlight` resolves once it reached the moment the kill must catch, `outcome` is its caller's await. */
export type CellStart = (gid: string, m: Move) => { inFlight: Promise<unknown>; outcome: Promise<unknown> };

/** A promise (`reached`) and the function that resolves it (`set`). */
export function flag(): { set: () => void; reached: Promise<void> } {
  let set!: () => void;
  const reached = new Promise<void>((resolve) => (set = resolve));
  return { set, reached };
}

/** `p`'s value or error, as a value. */
const settle = (p: Promise<unknown>): Promise<{ value?: unknown; error?: unknown }> => p.then((value) => ({ value }), (error: unknown) => ({ error }));
/** An empty payload of a gate step (the recorder's gRPC side takes bytes). */
export const payloadOf = (protocol: DtmProtocol): object | Uint8Array => (protocol === 'grpc' ? new Uint8Array() : {});
/** DTM's branches of a transaction as `<branch id> <op> <status>` lines, sorted. */
export const branchLines = (answer: DtmQueryAnswer): string[] => answer.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`).sort();
/** No forward step (action, commit, confirm) left prepared: what a succeeded transaction's lines show once a SQL store's asynchronous branch writes landed. */
export const forwardDone = (lines: string[]): boolean => lines.every((l) => !/ (action|commit|confirm) prepared$/.test(l));

/**
 * What both files that kill their own DTM (`dtm()`) share: the cells in flight at the kill, the
 * recorder's (`recorder()`) gates that hold calls until it, DTM's record read from that DTM, and what
 * a cell moved in the banks of `app()`.
 */
export function killKit(dtm: () => RunningDtm, recorder: () => Recorder, app: () => BarrierApp) {
  let kill!: () => void;
  const killed = new Promise<void>((resolve) => (kill = resolve));
  /** `<path> <gid>` of the gate calls held until the kill. */
  const reached = new Set<string>();
  const cells = new Map<string, KillCell>();
  const bank = bankHelpers(app);
  let account = 0;
  const kit = {
    /** Set once DTM is up again: the gates let their calls through. */
    restarted: false,
    /** Resolves once DTM was killed. */
    killed,
    /** Says DTM was killed: the held calls go on. */
    kill,
    /** The cells, by `<name> <protocol>`. */
    cells,
    cell: (name: string, protocol: DtmProtocol): KillCell => cells.get(`${name} ${protocol}`)!,
    /** Adds the cell `<name> <protocol>`: `start` on a fresh gid, moving {@link RESTART_AMOUNT} on the next account (1, 2, ...). */
    async add(name: string, protocol: DtmProtocol, start: CellStart): Promise<void> {
      const gid = await app().client.generateGid();
      const m = { account: ++account, amount: RESTART_AMOUNT };
      const { inFlight, outcome } = start(gid, m);
      cells.set(`${name} ${protocol}`, { gid, account: m.account, inFlight, outcome: settle(outcome) });
    },
    /**
     * Resolves once every cell added so far reached the moment the kill must catch. After `timeoutMs`,
     * fails naming the cells that did not, with the end of DTM's log (a cell waiting for something that
     * never comes has no timeout of its own: the file's hook would time out saying nothing).
     */
    async untilInFlight(timeoutMs = 40_000): Promise<void> {
      const pending = new Set(cells.keys());
      const all = Promise.all([...cells].map(([key, c]) => c.inFlight.then(() => pending.delete(key))));
      const settled = await settledWithin(all, timeoutMs, 'in flight');
      if (settled === 'in flight') return;
      if (settled !== 'still waiting') throw settled;
      throw new Error(`not in flight after ${timeoutMs / 1000} s: ${[...pending].join(', ')}\n${logTail(dtm().info.logFile, 40)}`);
    },
    /** What the file's DTM holds for `gid` (its HTTP API, not through the module). */
    stored: (gid: string): Promise<DtmQueryAnswer> => queryTrans(gid, dtm().info.serverUrl),
    /** Waits until the file's DTM records `gid` with `status` and every branch line `done` says (a SQL store's asynchronous branch writes flushed), having its cron take pending transactions meanwhile. */
    async untilDtmRecords(gid: string, status: TransStatus, done: (lines: string[]) => boolean = () => true): Promise<DtmQueryAnswer> {
      let last: DtmQueryAnswer | undefined;
      await waitUntil(`DTM recording ${gid} ${status}`, async () => {
        last = await kit.stored(gid);
        if (last.transaction?.status === status && done(branchLines(last))) return true;
        await triggerCron(dtm().info.serverUrl);
        return false;
      }, { timeoutMs: 40_000, intervalMs: 500 });
      return last!;
    },
    /** The recorder's `path` holds each call until DTM was killed (answering 200 then, and at once after the restart). */
    holdUntilKilled: (path: string): void =>
      recorder().handle(path, async (call) => {
        if (!kit.restarted) {
          reached.add(`${path} ${call.query.gid}`);
          await killed;
        }
        return 200;
      }),
    /** Resolves once a call of `gid` is held at `path`. */
    untilHeld: (path: string, gid: string): Promise<void> => waitUntil(`a call of ${gid} held at ${path}`, async () => reached.has(`${path} ${gid}`), { timeoutMs: 20_000, intervalMs: 50 }),
    /** The recorder's `path` as a gate step's target over `protocol`. */
    gateTarget: (protocol: DtmProtocol, path: string): string => (protocol === 'grpc' ? recorder().grpcTargetFor(path) : recorder().urlFor(path)),
    /** The balances of the cell's account in both banks. */
    balancesOf: async (c: KillCell) => ({ pg: (await bank.balances('pg', [c.account]))[c.account], mysql: (await bank.balances('mysql', [c.account]))[c.account] }),
  };
  return kit;
}

/** The kit {@link killKit} gives. */
export type KillKit = ReturnType<typeof killKit>;

/** A transaction of {@link restartCells}: what its test is named, how it starts, and what its caller and DTM end with, asserted. */
export interface RestartCell {
  /** Its test's name. */
  title: string;
  /** Its transaction over `protocol`, for {@link killKit}'s `add`. */
  start: (protocol: DtmProtocol) => CellStart;
  /** Asserts what the caller's await gave, DTM's record after the restart and the balances. */
  check: (protocol: DtmProtocol) => Promise<void>;
}

/**
 * The cells of the files that kill their DTM while every kind of transaction is in flight
 * (dtm-restart.spec.ts on Redis, dtm-restart-mariadb.spec.ts on MariaDB), by name, in their tests'
 * order: each added to `kit` as `<name> <protocol>`, in the barrier app of `app()` (with
 * {@link RestartXaBank} and the workflow `workflow` of {@link restartWorkflows}), its gates at `recorder()`.
 */
export function restartCells(kit: KillKit, recorder: () => Recorder, app: () => BarrierApp, workflow: string) {
  const bank = bankHelpers(app);
  const { cell, untilDtmRecords, holdUntilKilled, untilHeld, gateTarget, balancesOf } = kit;
  const client = () => app().client;
  const moved = { pg: 100 - RESTART_AMOUNT, mysql: 100 + RESTART_AMOUNT };
  /** A saga moving `m` through the gate `path` (submitted with waitResult when `waitResult`). */
  const saga = (protocol: DtmProtocol, gid: string, m: Move, path: string, waitResult?: boolean) =>
    client().newSaga(gid, { protocol, retryInterval: 1, waitResult }).add('pg.transOut', m).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.transIn', m);
  const cells = {
    'saga running': {
      title: 'a saga whose branches run (one answering ONGOING): submitAndWait rides the restart out and resolves succeed; the money moved once, PostgreSQL to MariaDB',
      // a saga whose gate answers ONGOING until DTM is back: submitted, DTM's rounds under way at the kill
      start: (protocol) => (gid, m) => {
        const path = `/SagaGate${protocol}`;
        recorder().handle(path, () => (kit.restarted ? 200 : 425));
        return { inFlight: recorder().waitForCalls(path, 1, { gid, timeoutMs: 20_000 }), outcome: saga(protocol, gid, m, path).submitAndWait({ timeout: 60 }) };
      },
      async check(protocol) {
        const c = cell('saga running', protocol);
        expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate prepared', '02 action succeed', '02 compensate prepared', '03 action succeed', '03 compensate prepared']);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
    'saga submit': {
      title: 'a saga whose submit (waitResult) is under way in DTM\'s first round: submitAndWait rides the restart out and resolves succeed; the money moved once',
      // a saga with waitResult whose gate holds DTM's first round until the kill: the submit is under way
      start: (protocol) => (gid, m) => {
        const path = `/SubmitGate${protocol}`;
        holdUntilKilled(path);
        return { inFlight: untilHeld(path, gid), outcome: saga(protocol, gid, m, path, true).submitAndWait({ timeout: 60 }) };
      },
      async check(protocol) {
        const c = cell('saga submit', protocol);
        expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
        await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
    'tcc bare submit': {
      title: 'tccGlobalTransaction with waitResult, DTM killed in its first round (a Confirm under way): DtmOutcomeUnknownError "unknown" (DTM could not be asked; it held the submit), not "prepared"; DTM, back, confirms',
      // tccGlobalTransaction with waitResult, its Confirm (another service) held by DTM's first round until the kill: the submit is under way
      start: (protocol) => (gid, m) => {
        const path = `/ConfirmGate${protocol}`;
        holdUntilKilled(path);
        return {
          inFlight: untilHeld(path, gid),
          outcome: client().tccGlobalTransaction(
            gid,
            async (tcc) => {
              await tcc.callBranch(m, 'pg.tccOut');
              await tcc.callBranch(payloadOf(protocol), gateTarget(protocol, `/TryOk${protocol}`), gateTarget(protocol, path), gateTarget(protocol, `/CancelOk${protocol}`));
              return 'tried';
            },
            { protocol, timeoutToFail: 60, retryInterval: 1, waitResult: true },
          ),
        };
      },
      async check(protocol) {
        const c = cell('tcc bare submit', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'unknown' });
        expect(outcome.error?.message).toMatch(/may or may not have reached DTM .*DTM could not be asked what it holds then .*either prepared .*or submitted \(it confirms the branches\).*never start it again under a new gid/);
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 cancel prepared', '01 confirm succeed', '02 cancel prepared', '02 confirm succeed']);
        expect(recorder().callsTo(`/CancelOk${protocol}`, c.gid)).toHaveLength(0);
        expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 });
      },
    },
    'saga bare submit': {
      title: 'a saga\'s bare submit() with waitResult, DTM killed in its first round: DtmUnavailableError saying the submit may have reached DTM (as documented for a bare submit); DTM, back, runs the saga, the money moved once',
      // a saga's bare submit() with waitResult, its gate held by DTM's first round until the kill
      start: (protocol) => (gid, m) => {
        const path = `/BareGate${protocol}`;
        holdUntilKilled(path);
        return { inFlight: untilHeld(path, gid), outcome: saga(protocol, gid, m, path, true).submit() };
      },
      async check(protocol) {
        const c = cell('saga bare submit', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmUnavailableError);
        expect(outcome.error?.message).toContain('the request may or may not have reached the DTM server');
        await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
    'msg bare submit': {
      title: 'a message\'s submit() with waitResult after its prepare(), DTM killed in its first round: DtmOutcomeUnknownError "unknown" (DTM could not be asked; it held the submit), not "prepared", as for TCC; DTM, back, delivers every branch once',
      // a message prepared, then its submit() with waitResult, its first branch (another service) held by DTM's first round until the kill
      start: (protocol) => (gid, m) => {
        const path = `/MsgGate${protocol}`;
        holdUntilKilled(path);
        const msg = client().newMsg(gid, { protocol, timeoutToFail: 60, retryInterval: 1, waitResult: true }).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.deliver', m);
        return { inFlight: untilHeld(path, gid), outcome: msg.prepare(bank.target('pg', protocol, 'query-prepared')).then(() => msg.submit()) };
      },
      async check(protocol) {
        const c = cell('msg bare submit', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'unknown' });
        expect(outcome.error?.message).toMatch(/^the submit of msg \S+ may or may not have reached DTM .*DTM could not be asked what it holds then .*either prepared \(no submit got through: it back-checks .*\) or submitted \(it delivers it\).*never send it again under a new gid/);
        await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 + RESTART_AMOUNT });
      },
    },
    'tcc submit': {
      title: 'a TCC body that ends while DTM is down: tccGlobalTransactionAndWait sends the submit again once DTM is back and resolves succeed; confirmed, not cancelled',
      // a TCC body whose Try ran, ending once DTM is down: its submit meets no DTM
      start: (protocol) => (gid, m) => {
        const { set: tried, reached: inFlight } = flag();
        return {
          inFlight,
          outcome: client().tccGlobalTransactionAndWait(
            gid,
            async (tcc) => {
              await tcc.callBranch(m, 'pg.tccOut');
              tried();
              await kit.killed;
              return 'tried';
            },
            { protocol, timeoutToFail: 60, retryInterval: 1 },
            { timeout: 60 },
          ),
        };
      },
      async check(protocol) {
        const c = cell('tcc submit', protocol);
        expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed', result: 'tried' }) });
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 cancel prepared', '01 confirm succeed']);
        expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 });
      },
    },
    'tcc register': {
      title: 'a TCC body registering its second branch while DTM is down: the body\'s DtmUnavailableError (its registration); DTM, back, cancels the first branch at timeoutToFail; the second Try never ran',
      // a TCC body whose first Try ran, registering its second branch once DTM is down
      start: (protocol) => (gid, m) => {
        const { set: tried, reached: inFlight } = flag();
        return {
          inFlight,
          outcome: client().tccGlobalTransactionAndWait(
            gid,
            async (tcc) => {
              await tcc.callBranch(m, 'pg.tccOut');
              tried();
              await kit.killed;
              await tcc.callBranch(m, 'mysql.tccOut');
              return 'tried both';
            },
            { protocol, timeoutToFail: 4, retryInterval: 1 },
            { timeout: 60 },
          ),
        };
      },
      async check(protocol) {
        const c = cell('tcc register', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmUnavailableError);
        expect(outcome.error).toMatchObject({ gid: c.gid, branchId: '02', protocol });
        // refused (nothing sent), or the reset of a connection kept alive from before the kill (it may have reached DTM): as timing has it
        expect(outcome.error?.message).toMatch(/^could not reach \S+(\/registerBranch|\/RegisterBranch) \(.*(ECONNREFUSED|the request may or may not have reached the DTM server)/);
        const record = await untilDtmRecords(c.gid, 'failed', (lines) => lines.includes('01 cancel succeed'));
        expect(record.transaction?.rollback_reason).toMatch(/Timeout after 4 seconds/);
        expect(branchLines(record)).toEqual(['01 cancel succeed', '01 confirm prepared']);
        expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 });
      },
    },
    'xa submit': {
      title: 'an XA body whose branches are prepared, ending while DTM is down: xaGlobalTransactionAndWait sends the submit again once DTM is back and resolves succeed; both branches committed once',
      // an XA body whose branches are prepared (PostgreSQL and MariaDB), ending once DTM is down: its submit meets no DTM
      start: (protocol) => (gid, m) => {
        const { set: prepared, reached: inFlight } = flag();
        return {
          inFlight,
          outcome: client().xaGlobalTransactionAndWait(
            gid,
            async (xa) => {
              await xa.callBranch({ account: m.account, amount: -m.amount }, 'xa.pg');
              await xa.callBranch(m, 'xa.mysql');
              prepared();
              await kit.killed;
              return 'prepared';
            },
            { protocol, timeoutToFail: 60, retryInterval: 1 },
            { timeout: 60 },
          ),
        };
      },
      async check(protocol) {
        const c = cell('xa submit', protocol);
        expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed', result: 'prepared' }) });
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 commit succeed', '01 rollback prepared', '02 commit succeed', '02 rollback prepared']);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
    msg: {
      title: 'a message whose local transaction committed while DTM is down: DtmOutcomeUnknownError (prepared: the submit never reached DTM, which answered no query either, or held it prepared when asked after its restart); DTM back-checks it after the restart and delivers once',
      // a message whose local transaction (the outbox on PostgreSQL) commits once DTM is down: its submit meets no DTM
      start: (protocol) => (gid, m) => {
        const { set: saving, reached: inFlight } = flag();
        return {
          inFlight,
          outcome: client()
            .newMsg(gid, { protocol, timeoutToFail: 8, retryInterval: 1 })
            .add('mysql.deliver', m)
            .doAndSubmitDb('pg.outbox', app().databases.pg, async (tx: unknown) => {
              await (tx as { query(s: string, p: unknown[]): Promise<unknown> }).query('UPDATE account SET balance = balance - $1 WHERE id = $2', [m.amount, m.account]);
              saving();
              await kit.killed;
              return 'saved';
            }),
        };
      },
      async check(protocol) {
        const c = cell('msg', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
        expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'prepared' });
        // DTM is started again 1 s after the kill: a loaded machine can get to the query after the failed submit once it is back
        expect(outcome.error?.message).toMatch(/^the local transaction of msg \S+ committed, but its submit did not get through \(.*\): (it did not reach DTM, which answered no query either: DTM holds the message prepared\.|DTM, asked after it, holds the message prepared \(a submit still on its way to DTM may yet take it\)\.) DTM back-checks its query-prepared target once its timeout_to_fail \(8 s\) passed .*Do not run the local transaction again/);
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 action succeed']);
        expect(await bank.barrierRows('mysql', c.gid)).toEqual(['01/action/01=action']);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
    workflow: {
      title: 'a workflow whose step answers while DTM is down: DtmWorkflowPendingError; DTM resumes it after the restart, it succeeds, each step moved once',
      // a workflow whose gate step (another service) answers only once DTM is down
      start: (protocol) => (gid, m) => {
        const path = `/WorkflowGate${protocol}`;
        holdUntilKilled(path);
        return {
          inFlight: untilHeld(path, gid),
          outcome: client().executeWorkflow(workflow, gid, { protocol, ...m, gate: gateTarget(protocol, path) } satisfies RestartTransfer, { protocol, retryInterval: 1 }),
        };
      },
      async check(protocol) {
        const c = cell('workflow', protocol);
        const outcome = (await c.outcome) as { error?: Error };
        expect(outcome.error).toBeInstanceOf(DtmWorkflowPendingError);
        expect(outcome.error).toMatchObject({ gid: c.gid });
        const record = await untilDtmRecords(c.gid, 'succeed', forwardDone);
        expect(branchLines(record)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed']);
        expect(await bank.barrierRows('pg', c.gid)).toEqual(['01/action/01=action']);
        expect(await bank.barrierRows('mysql', c.gid)).toEqual(['03/action/01=action']);
        expect(await balancesOf(c)).toEqual(moved);
      },
    },
  } satisfies Record<string, RestartCell>;
  return cells;
}
