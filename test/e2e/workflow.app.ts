// A Nest app with a workflow, for workflow.spec.ts: in the test's process (startWorkflowApp), or as
// a process of its own that a test kills and starts again (run this file; environment: PORT,
// GRPC_PORT, DTM_URL, DTM_GRPC, PG_URL; PAUSE_AFTER=<step> makes an execution stop there forever,
// DIVERGE=1 renames step 2, as a code change under a running workflow would).
// A global guard refuses every route without a token, as an app's authentication would: the
// workflow resume route must not be behind it (DTM sends no credentials).
// The workflow transfer.v1: step 1 calls an HTTP branch, step 2 a gRPC branch (both the recorder's,
// named in the input), step 3 credits an account in PostgreSQL in a local step behind the barrier
// (FAILURE when there is no such account); steps 1 and 2 register their compensations first.
import 'reflect-metadata';
import { Body, Controller, Get, Inject, Injectable, Module, Post, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import pg from 'pg';
import {
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmWorkflow,
  isDtmBranchHandler,
  pgBarrierDatabase,
  type DtmProtocol,
  type WorkflowContext,
} from 'nestjs-dtm';
import { TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { pgXaAt } from '../support/pg-xa.js';

/** The input of transfer.v1. */
export interface TransferInput {
  debit: string;
  debitRevert: string;
  reserve: string;
  reserveRevert: string;
  account: number;
  amount: number;
  /** After step 2 the execution waits until the test opens the gate of this name in {@link GATES} (an app in the test's own process): a resume can arrive meanwhile. */
  hold?: string;
  /** After the steps, the workflow's code sends a message (gid `<gid>-n`) to this URL, passing on the request's headers. */
  notify?: string;
}

/** Gates a transfer.v1 execution waits at after step 2 (`TransferInput.hold`), opened by the test. */
export const GATES = new Map<string, Promise<void>>();

/** How often the workflow function started, per gid (an execution each). */
@Injectable()
export class Executions {
  counts = new Map<string, number>();
  add(gid: string): void {
    this.counts.set(gid, (this.counts.get(gid) ?? 0) + 1);
  }
}

@Injectable()
export class Transfers {
  constructor(
    private readonly executions: Executions,
    @Inject(DtmClient) private readonly dtm: DtmClient,
  ) {}

  @DtmWorkflow('transfer.v1')
  async transfer(wf: WorkflowContext<TransferInput>) {
    this.executions.add(wf.gid);
    const { amount, account } = wf.input;
    const at = await wf.now();
    const debited = await wf
      .step('debit')
      .onRollback((b) => b.http(wf.input.debitRevert, { amount }))
      .http<{ result: string }>(wf.input.debit, { amount });
    await wf
      .step(process.env.DIVERGE ? 'reserve-v2' : 'reserve')
      .onRollback((b) => b.grpc(wf.input.reserveRevert, Buffer.from(JSON.stringify({ amount }))))
      .grpc(wf.input.reserve, Buffer.from(JSON.stringify({ amount })));
    if (wf.input.hold) await GATES.get(wf.input.hold);
    if (process.env.PAUSE_AFTER === 'reserve') await new Promise(() => undefined); // "crashes" here: the test kills the process
    const credited = await wf.step('credit').run(
      async (tx: pg.PoolClient) => {
        const r = await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2 RETURNING balance', [amount, account]);
        if (r.rowCount === 0) throw new DtmFailureError(`no account ${account}`);
        return Number(r.rows[0].balance);
      },
      { barrier: 'pg' },
    );
    if (wf.input.notify) await this.dtm.newMsg(`${wf.gid}-n`).add(wf.input.notify, { amount }).submit();
    return { debited: debited.result, credited, at: at.toISOString() };
  }
}

/** xa-hold.v1: an XA step holds the amount in PostgreSQL (XA PREPARE); a later local step may refuse, rolling it back. */
@Injectable()
export class Holds {
  @DtmWorkflow('xa-hold.v1')
  async hold(wf: WorkflowContext<{ account: number; amount: number; refuse?: boolean }>) {
    const { account, amount } = wf.input;
    const left = await wf.step('hold').xa('pg', async (client: pg.Client) => {
      const r = await client.query('UPDATE account SET balance = balance - $1 WHERE id = $2 RETURNING balance', [amount, account]);
      return Number(r.rows[0].balance);
    });
    await wf.step('check').run(() => {
      if (wf.input.refuse) throw new DtmFailureError('refused after the hold');
    });
    return left;
  }
}

/** reserve-only.v1: one gRPC step first of all (nothing recorded before it), with its own branch timeout and headers as given. */
@Injectable()
export class Reserves {
  @DtmWorkflow('reserve-only.v1')
  async reserve(wf: WorkflowContext<{ reserve: string; amount: number }>) {
    await wf.step('reserve').grpc(wf.input.reserve, Buffer.from(JSON.stringify({ amount: wf.input.amount })));
    return 'reserved';
  }
}

/** Lets a test in another process start workflows and read the executions. */
@Controller('wf')
class WorkflowControl {
  constructor(
    private readonly dtm: DtmClient,
    private readonly executions: Executions,
  ) {}

  @Post('start')
  async start(@Body() body: { gid: string; input: TransferInput; protocol?: DtmProtocol }) {
    return this.dtm.executeWorkflow('transfer.v1', body.gid, body.input, { protocol: body.protocol }).then(
      (result) => ({ outcome: 'succeed', result }),
      (err: Error) => ({ outcome: err.name, message: err.message }),
    );
  }

  @Get('executions')
  counts() {
    return Object.fromEntries(this.executions.counts);
  }
}

/** The app's own authentication, as apps have one: every route but the test's control routes needs a token DTM does not have. */
@Injectable()
class AuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ url?: string; headers?: Record<string, string> }>();
    return context.getType() !== 'http' || Boolean(request.url?.startsWith('/wf/')) || request.headers?.authorization === 'Bearer token';
  }
}

/**
 * A global guard written as the module's start-up warning advises: DTM's handlers pass
 * (isDtmBranchHandler), and so do the test's control routes; every other call, HTTP or gRPC, needs
 * a token. Records the handlers it refused.
 */
@Injectable()
export class AdvisedGuard implements CanActivate {
  static refused: string[] = [];
  canActivate(context: ExecutionContext): boolean {
    if (isDtmBranchHandler(context.getHandler())) return true;
    if (context.getType() === 'http') {
      const request = context.switchToHttp().getRequest<{ url?: string; headers?: Record<string, string> }>();
      if (request.url?.startsWith('/wf/') || request.headers?.authorization === 'Bearer token') return true;
    }
    AdvisedGuard.refused.push(`${context.getClass().name}.${context.getHandler().name}`);
    return false;
  }
}

/** The workflow app's settings. */
export interface WorkflowAppOptions {
  port: number;
  grpcPort: number;
  dtmUrl: string;
  dtmGrpc: string;
  pgUrl: string;
  /** Authenticated branch calls (lynx.dtm.branch_auth_keys). */
  branchAuthKeys?: string[];
  /** The gRPC server without the workflow proto (as an app that forgot it); `'package'`: with the proto, but not the package `workflow`. */
  withoutWorkflowProto?: boolean | 'package';
  /** lynx.dtm.pass_through_headers. */
  passThroughHeaders?: string[];
  /** The global guard is AdvisedGuard (gRPC calls need a token too) instead of AuthGuard (which lets every gRPC call through). */
  advisedGuard?: boolean;
}

/** Starts the workflow app (HTTP on `port`, gRPC with the workflow resume proto on `grpcPort`). */
export async function startWorkflowApp(options: WorkflowAppOptions): Promise<{ app: INestApplication; pool: pg.Pool; close(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: options.pgUrl, max: 5 });
  @Module({
    imports: [
      DtmModule.forRoot({
        config: {
          serverUrl: options.dtmUrl,
          grpcServer: options.dtmGrpc,
          appUrl: `http://127.0.0.1:${options.port}`,
          grpcAppAddress: `127.0.0.1:${options.grpcPort}`,
          barrierTable: 'dtm_barrier',
          retryInterval: 1,
          branchAuthKeys: options.branchAuthKeys,
          passThroughHeaders: options.passThroughHeaders,
        },
        barrierConnections: { pg: pgBarrierDatabase(pool) },
        xaConnections: {
          pg: pgXaAt(options.pgUrl),
        },
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [WorkflowControl],
    providers: [Executions, Transfers, Holds, Reserves, { provide: APP_GUARD, useClass: options.advisedGuard ? AdvisedGuard : AuthGuard }],
  })
  class WorkflowAppModule {}
  const app = await NestFactory.create(WorkflowAppModule, { logger: ['error', 'warn'] });
  app.connectMicroservice(testsGrpcOptions(`127.0.0.1:${options.grpcPort}`, { workflowResume: options.withoutWorkflowProto === 'package' ? 'proto only' : !options.withoutWorkflowProto }), { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.listen(options.port, '127.0.0.1');
  return {
    app,
    pool,
    async close() {
      await app.close();
      await pool.end();
    },
  };
}

if (process.argv[1]?.endsWith('workflow.app.js')) {
  const env = process.env;
  await startWorkflowApp({ port: Number(env.PORT), grpcPort: Number(env.GRPC_PORT), dtmUrl: env.DTM_URL!, dtmGrpc: env.DTM_GRPC!, pgUrl: env.PG_URL! });
  process.stdout.write('ready\n');
}
