// What dtm-restart.spec.ts (DTM on Redis) and dtm-restart-sql.spec.ts (DTM on PostgreSQL) both run in the barrier app
// whose DTM they kill: a transfer as a workflow, and XA branches on PostgreSQL and MariaDB.
import 'reflect-metadata';
import { Body, Controller, Injectable, Post, type Type } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { BarrierTx, DtmWorkflow, XaBranch, type DtmProtocol, type WorkflowContext } from 'nestjs-dtm';
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
