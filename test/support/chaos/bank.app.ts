// The participant of the chaos suite (test/support/chaos/chaos.ts), in a process of its own so that
// it can be killed with -9 and started again: two banks, one on PostgreSQL and one on MariaDB, each
// with saga, TCC and msg branches behind the barrier and XA branches, each an HTTP route and (with
// GRPC_PORT) a gRPC method of test/support/chaos/chaos.proto. Every business run writes a
// row in `runs` inside its own local transaction, so what committed can be counted afterwards
// ("no branch step ran twice"). Accounts hold `balance` and `frozen` (TCC's reserved amounts).
// It is also the caller app of the workflow transfers: it registers the workflow 'chaos.transfer'
// (steps on the saga routes, through the proxy; with `grpc` in its input a gRPC workflow whose steps
// are the @GrpcMethods, through the gRPC proxy, and which DTM resumes at workflow.Workflow/Execute
// through it) and starts one at POST /wf/transfer, so a kill -9 of this process kills workflows
// mid-way, which DTM resumes here once it is back.
//
// Environment: PORT, DTM_URL, APP_URL (the proxy in front of this app), PG_URL, MYSQL_URL, BRANCH_TIMEOUT;
// for gRPC: GRPC_PORT (its gRPC server), GRPC_APP_ADDRESS (the proxy in front of it), DTM_GRPC;
// authenticated branch calls: BRANCH_AUTH_KEY (branch_auth_keys), CHECK_ACTIONS=1 (branch_auth_check_actions).
import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Injectable, Module, Post, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  BarrierTx,
  BranchContext,
  DTM_WORKFLOW_PROTO,
  DtmClient,
  DtmFailureError,
  DtmGidInUseError,
  DtmModule,
  DtmOutcomeUnknownError,
  DtmUnavailableError,
  DtmWorkflow,
  DtmWorkflowPendingError,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  UseBarrier,
  XaBranch,
  mysqlBarrierDatabase,
  mysqlXaDatabase,
  pgBarrierDatabase,
  type BranchInfo,
  type WorkflowContext,
} from 'nestjs-dtm';
import { CHAOS_PROTO, TESTS_LOADER } from '../grpc.js';
import { pgXaAt } from '../pg-xa.js';

/** What every branch of the chaos suite gets. */
export interface ChaosMove {
  account: number;
  amount: number;
}

type Store = 'pg' | 'mysql';

/** Runs `sql` (`?` placeholders) on a pg client or a mysql2 connection; resolves with the rows changed. */
async function exec(store: Store, handle: unknown, sql: string, params: unknown[]): Promise<number> {
  if (store === 'pg') {
    let i = 0;
    return (await (handle as pg.ClientBase).query(sql.replace(/\?/g, () => `$${++i}`), params)).rowCount ?? 0;
  }
  const [result] = await (handle as mysql.Connection).execute(sql, params as (string | number)[]);
  return (result as mysql.ResultSetHeader).affectedRows;
}

/** The bank of `store`: every branch records its run, then moves money. */
function bank(store: Store): Type & { xa: Type } {
  const add = 'UPDATE account SET balance = balance + ? WHERE id = ?';
  const take = 'UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?';
  const run = (h: unknown, b: BranchInfo) => exec(store, h, 'INSERT INTO runs (gid, branch_id, op) VALUES (?, ?, ?)', [b.gid, b.branchId, b.op]);
  // the same handler over gRPC: chaos.PgBank / chaos.MysqlBank
  const Grpc = (method: string) => GrpcMethod(store === 'pg' ? 'PgBank' : 'MysqlBank', method);

  @Controller(store)
  @UseBarrier(store)
  class Bank {
    @Post('out')
    @Grpc('Out')
    @SagaAction(`${store}.out`)
    async out(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      if ((await exec(store, h, take, [m.amount, m.account, m.amount])) === 0) throw new DtmFailureError(`${store} account ${m.account}: insufficient balance`);
    }

    @Post('out-revert')
    @Grpc('OutRevert')
    @SagaCompensate(`${store}.out`)
    async outRevert(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, add, [m.amount, m.account]);
    }

    @Post('in')
    @Grpc('In')
    @SagaAction(`${store}.in`)
    @MsgBranch(`${store}.deposit`)
    async in(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, add, [m.amount, m.account]);
    }

    @Post('in-revert')
    @Grpc('InRevert')
    @SagaCompensate(`${store}.in`)
    async inRevert(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, 'UPDATE account SET balance = balance - ? WHERE id = ?', [m.amount, m.account]);
    }

    @Post('tcc-out-try')
    @Grpc('TccOutTry')
    @TccTry(`${store}.tccOut`)
    async tccOutTry(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      const frozen = 'UPDATE account SET balance = balance - ?, frozen = frozen + ? WHERE id = ? AND balance >= ?';
      if ((await exec(store, h, frozen, [m.amount, m.amount, m.account, m.amount])) === 0) throw new DtmFailureError(`${store} account ${m.account}: insufficient balance`);
    }

    @Post('tcc-out-confirm')
    @Grpc('TccOutConfirm')
    @TccConfirm(`${store}.tccOut`)
    async tccOutConfirm(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, 'UPDATE account SET frozen = frozen - ? WHERE id = ?', [m.amount, m.account]);
    }

    @Post('tcc-out-cancel')
    @Grpc('TccOutCancel')
    @TccCancel(`${store}.tccOut`)
    async tccOutCancel(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, 'UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE id = ?', [m.amount, m.amount, m.account]);
    }

    @Post('tcc-in-try')
    @Grpc('TccInTry')
    @TccTry(`${store}.tccIn`)
    async tccInTry(@BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
    }

    @Post('tcc-in-confirm')
    @Grpc('TccInConfirm')
    @TccConfirm(`${store}.tccIn`)
    async tccInConfirm(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, add, [m.amount, m.account]);
    }

    @Post('tcc-in-cancel')
    @Grpc('TccInCancel')
    @TccCancel(`${store}.tccIn`)
    async tccInCancel(@BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
    }

    @Get('query-prepared')
    @Grpc('QueryPrepared')
    @MsgQueryPrepared(`${store}.outbox`)
    queryPrepared() {
      throw new Error('not called: the barrier answers');
    }
  }

  @Controller(`${store}-xa`)
  class XaBank {
    @Post('out')
    @Grpc('XaOut')
    @XaBranch(`${store}.xaOut`, { db: store })
    async out(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      if ((await exec(store, h, take, [m.amount, m.account, m.amount])) === 0) throw new DtmFailureError(`${store} account ${m.account}: insufficient balance`);
    }

    @Post('in')
    @Grpc('XaIn')
    @XaBranch(`${store}.xaIn`, { db: store })
    async in(@Body() m: ChaosMove, @BarrierTx() h: unknown, @BranchContext() b: BranchInfo) {
      await run(h, b);
      await exec(store, h, add, [m.amount, m.account]);
    }
  }
  return Object.assign(Bank, { xa: XaBank as Type });
}

const env = process.env;

/** A workflow transfer's input: the deposit first, then the withdrawal, so that a refused withdrawal rolls the deposit back. */
export interface ChaosWorkflowTransfer {
  from: { store: Store; account: number };
  to: { store: Store; account: number };
  amount: number;
  /** The steps are the banks' @GrpcMethods (through the gRPC proxy, GRPC_APP_ADDRESS), the workflow a gRPC one. */
  grpc?: boolean;
}

/** What the chaos run's caller is told of a workflow transfer it asked this app to execute. */
export interface ChaosWorkflowAnswer {
  view: 'succeed' | 'failed' | 'unknown' | 'never-got-it' | 'error';
  error?: string;
}

/**
 * The workflow of the chaos suite: its steps call the banks' saga routes through the faulty proxy
 * (APP_URL), each with its compensation. This process is the workflow's caller app too: DTM resumes
 * it here (APP_URL + the module's resume route, through the proxy), also after a kill -9.
 */
@Injectable()
class ChaosWorkflows {
  @DtmWorkflow('chaos.transfer')
  async transfer(wf: WorkflowContext<ChaosWorkflowTransfer>) {
    const { from, to, amount, grpc } = wf.input;
    const into = { account: to.account, amount };
    const out = { account: from.account, amount };
    if (grpc) {
      const at = (store: Store, method: string) => `${env.GRPC_APP_ADDRESS}/chaos.${store === 'pg' ? 'PgBank' : 'MysqlBank'}/${method}`;
      await wf.step('deposit').onRollback((b) => b.grpc(at(to.store, 'InRevert'), into)).grpc(at(to.store, 'In'), into);
      await wf.step('withdraw').onRollback((b) => b.grpc(at(from.store, 'OutRevert'), out)).grpc(at(from.store, 'Out'), out);
      return;
    }
    const at = (store: Store, path: string) => `${env.APP_URL}/${store}/${path}`;
    await wf.step('deposit').onRollback((b) => b.http(at(to.store, 'in-revert'), into)).http(at(to.store, 'in'), into);
    await wf.step('withdraw').onRollback((b) => b.http(at(from.store, 'out-revert'), out)).http(at(from.store, 'out'), out);
  }
}

/** Where the chaos run starts a workflow transfer (called directly, not through the proxy). */
@Controller('wf')
class ChaosWorkflowCaller {
  constructor(private readonly dtm: DtmClient) {}

  @Post('transfer')
  @HttpCode(200)
  async transfer(@Body() input: ChaosWorkflowTransfer & { gid: string }): Promise<ChaosWorkflowAnswer> {
    const { gid, ...transfer } = input;
    try {
      const outcome = await this.dtm.executeWorkflow('chaos.transfer', gid, transfer, transfer.grpc ? { protocol: 'grpc' } : {});
      return { view: outcome.status === 'succeed' ? 'succeed' : 'error', error: `status ${outcome.status}` };
    } catch (err) {
      const error = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 300);
      if (err instanceof DtmFailureError && !(err instanceof DtmGidInUseError)) return { view: 'failed', error };
      // DTM's "could not reach" at the prepare: nothing was sent, DTM holds nothing of it (docs/workflow.md; the run
      // checks DTM holds it absent). Not over gRPC: there a query follows the prepare, whose "could not reach" (DTM
      // killed in between) comes out as it is while DTM holds the workflow prepared (lib/workflow/workflow.engine.ts)
      if (err instanceof DtmUnavailableError && !transfer.grpc && err.message.startsWith('could not reach ')) return { view: 'never-got-it', error };
      // pending (DTM resumes it), or DTM's answer not known: the workflow may be held and run by DTM
      if (err instanceof DtmWorkflowPendingError || err instanceof DtmOutcomeUnknownError || err instanceof DtmUnavailableError) return { view: 'unknown', error };
      return { view: 'error', error };
    }
  }
}
const pgPool = new pg.Pool({ connectionString: env.PG_URL, max: 20 });
const myPool = mysql.createPool({ uri: env.MYSQL_URL, connectionLimit: 20 });
const banks = (['pg', 'mysql'] as const).map((store) => bank(store));

@Module({
  imports: [
    DtmModule.forRoot({
      config: {
        serverUrl: env.DTM_URL!,
        appUrl: env.APP_URL!,
        ...(env.GRPC_PORT ? { grpcServer: env.DTM_GRPC!, grpcAppAddress: env.GRPC_APP_ADDRESS! } : {}),
        barrierTable: 'dtm_barrier',
        branchTimeout: Number(env.BRANCH_TIMEOUT ?? 3),
        timeout: 3,
        // authenticated branch calls: the caller holds the same key
        ...(env.BRANCH_AUTH_KEY ? { branchAuthKeys: [env.BRANCH_AUTH_KEY], branchAuthCheckActions: env.CHECK_ACTIONS === '1' } : {}),
      },
      barrierConnections: { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool) },
      // the gRPC workflows' step payloads are objects, encoded with the banks' proto
      ...(env.GRPC_PORT ? { grpcProtos: { protoPath: CHAOS_PROTO, loader: TESTS_LOADER } } : {}),
      xaConnections: {
        mysql: mysqlXaDatabase(() => mysql.createConnection({ uri: env.MYSQL_URL })),
        pg: pgXaAt(env.PG_URL),
      },
    }),
  ],
  controllers: [...banks.flatMap((b) => [b, b.xa]), ChaosWorkflowCaller],
  providers: [ChaosWorkflows],
})
class ChaosBankModule {}

// with the keys, the warnings too: each refused branch call is one (the run counts them)
const app = await NestFactory.create(ChaosBankModule, { logger: env.BRANCH_AUTH_KEY ? ['error', 'warn'] : ['error'] });
if (env.GRPC_PORT) {
  app.connectMicroservice<MicroserviceOptions>(
    // and DTM's workflow resume (workflow.Workflow/Execute), which DTM calls at GRPC_APP_ADDRESS
    { transport: Transport.GRPC, options: { package: ['chaos', 'workflow'], protoPath: [CHAOS_PROTO, DTM_WORKFLOW_PROTO], url: `127.0.0.1:${env.GRPC_PORT}`, loader: TESTS_LOADER } },
    { inheritAppConfig: true },
  );
  await app.startAllMicroservices();
}
await app.listen(Number(env.PORT), '127.0.0.1');
process.stdout.write('ready\n');
