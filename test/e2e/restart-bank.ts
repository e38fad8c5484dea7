// What dtm-restart.spec.ts (DTM on Redis) and dtm-restart-sql.spec.ts (DTM on PostgreSQL) both run in the barrier app
// whose DTM they kill: a transfer as a workflow, and XA branches on PostgreSQL and MariaDB.
import 'reflect-metadata';
import { Body, Controller, Injectable, Post, type Type } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { BarrierTx, DtmWorkflow, XaBranch, type DtmProtocol, type WorkflowContext } from 'nestjs-dtm';
import { queryTrans, triggerCron, type DtmQueryAnswer, type TransStatus } from '../support/harness.js';
import type { Recorder } from '../support/recorder.js';
import type { RunningDtm } from '../support/services/dtm.js';
import { waitUntil } from '../support/services/process.js';
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

/** `p`'s value or error, as a value. */
export const settle = (p: Promise<unknown>): Promise<{ value?: unknown; error?: unknown }> => p.then((value) => ({ value }), (error: unknown) => ({ error }));
/** An empty payload of a gate step (the recorder's gRPC side takes bytes). */
export const payloadOf = (protocol: DtmProtocol): object | Uint8Array => (protocol === 'grpc' ? new Uint8Array() : {});
/** DTM's branches of a transaction as `<branch id> <op> <status>` lines, sorted. */
export const branchLines = (answer: DtmQueryAnswer): string[] => answer.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`).sort();

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
