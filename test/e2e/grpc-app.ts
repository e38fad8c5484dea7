// A Nest app serving DTM branches over gRPC only (the service Shop of test/e2e/protos/tests.proto),
// for grpc-branches.spec.ts: as a hybrid app (HTTP + gRPC, the HTTP side serving nothing of DTM's)
// or as a pure gRPC microservice. Handlers answer as each call's Item.script says, and record what
// they received.
import 'reflect-metadata';
import { Controller, Inject, Injectable, NotFoundException, type CanActivate, type ExecutionContext, type INestApplicationContext, type Type } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { Ctx, GrpcMethod, Payload, RpcException, type MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { status, type Metadata } from '@grpc/grpc-js';
import { from, ignoreElements, type Observable } from 'rxjs';
import {
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOngoingError,
  isDtmBranchHandler,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  type BranchInfo,
  type DtmConfigInput,
} from 'nestjs-dtm';
import { TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { harness } from '../support/harness.js';
import { keepConnectionsForDtm } from '../support/dtm-keep-alive.js';
import { freePort } from '../support/services/process.js';
import { RecordingLogger } from '../support/recording-logger.js';

/** `tests.Item`. */
export interface Item {
  sku: string;
  quantity: number;
  /**
   * '' (succeed, returning nothing), 'refuse' (FAILURE), 'ongoing-once', 'crash-once' (a plain Error), 'reply' (return a Reply),
   * 'quiet' (return an Observable that completes without a value), 'rpc-abort' (an RpcException with code ABORTED),
   * 'rpc-ongoing-once' (an RpcException with code FAILED_PRECONDITION the first time), 'rpc-old-ongoing-once' / 'rpc-details-ongoing-once'
   * (ABORTED saying ONGOING, in its message / its details, the first time), 'rpc-details-abort' (ABORTED whose details say why, its message ONGOING),
   * 'rpc-details-unavailable' (UNAVAILABLE whose details, not its message, say why), 'no-prototype-once' (a value that is no Error and
   * that String() cannot convert, Object.create(null), the first time).
   */
  script: string;
}

/** One call a Shop handler received. */
export interface ShopCall {
  handler: string;
  item: Item;
  branch: BranchInfo;
  /** The call's metadata, without DTM's own keys. */
  metadata: Record<string, string>;
}

/** What the Shop handlers received, and the scripted answers of the back-check per gid. */
@Injectable()
export class ShopLedger {
  calls: ShopCall[] = [];
  /** Scripts already played once (`ongoing-once`, `crash-once`), per gid/branch. */
  played = new Set<string>();
  /** What `Check` answers for a gid: 'success' | 'failure' | 'ongoing', each in turn; the last repeats. */
  checks = new Map<string, string[]>();
  callsOf(gid: string): ShopCall[] {
    return this.calls.filter((c) => c.branch.gid === gid);
  }
}

@Controller()
export class ShopController {
  constructor(
    @Inject(ShopLedger) private readonly ledger: ShopLedger,
    @Inject(DtmClient) private readonly dtm: DtmClient,
  ) {}

  private record(handler: string, item: Item, branch: BranchInfo, metadata: Metadata): void {
    const plain: Record<string, string> = {};
    for (const [key, value] of Object.entries(metadata.getMap())) if (!key.startsWith('dtm-')) plain[key] = String(value);
    this.ledger.calls.push({ handler, item, branch, metadata: plain });
  }

  /** Plays `item.script`; returns nothing unless asked for a reply (or an Observable without a value). */
  private play(item: Item, branch: BranchInfo): { message: string } | Observable<never> | undefined {
    const key = `${branch.gid}/${branch.branchId}/${branch.op}`;
    const once = !this.ledger.played.has(key);
    this.ledger.played.add(key);
    if (item.script === 'refuse') throw new DtmFailureError(`out of stock: ${item.sku}`);
    if (item.script === 'refuse-state') throw new DtmFailureError(item.sku); // a reason that is a state of the business, e.g. ONGOING
    if (item.script === 'ongoing-once' && once) throw new DtmOngoingError('still reserving');
    if (item.script === 'crash-once' && once) throw new Error(`warehouse offline (${key})`);
    if (item.script === 'no-prototype-once' && once) throw Object.assign(Object.create(null) as object, { key });
    if (item.script === 'not-found') throw new NotFoundException(`no such sku: ${item.sku}`);
    if (item.script === 'rpc-abort') throw new RpcException({ code: status.ABORTED, message: `out of stock: ${item.sku}` });
    if (item.script === 'rpc-ongoing-once' && once) throw new RpcException({ code: status.FAILED_PRECONDITION, message: 'still reserving' });
    if (item.script === 'rpc-old-ongoing-once' && once) throw new RpcException({ code: status.ABORTED, message: 'ONGOING' }); // DTM's protocol before v1.10
    // grpc-js answers an error's details, when it has them, in place of its message
    if (item.script === 'rpc-details-ongoing-once' && once) throw new RpcException({ code: status.ABORTED, details: 'ONGOING' });
    if (item.script === 'rpc-details-unavailable') throw new RpcException({ code: status.UNAVAILABLE, details: `warehouse db down: ${item.sku}` });
    if (item.script === 'rpc-details-abort') throw new RpcException({ code: status.ABORTED, message: 'ONGOING', details: `out of stock: ${item.sku}` });
    if (item.script === 'quiet') return from(Promise.resolve('stock written')).pipe(ignoreElements());
    return item.script === 'reply' ? { message: `reserved ${item.quantity} ${item.sku}` } : undefined;
  }

  @GrpcMethod('Shop', 'Reserve')
  @SagaAction('reserve')
  reserve(@Payload() item: Item, @Ctx() metadata: Metadata, @BranchContext() branch: BranchInfo) {
    this.record('reserve', item, branch, metadata);
    return this.play(item, branch);
  }

  @GrpcMethod('Shop', 'ReserveRevert')
  @SagaCompensate('reserve')
  async reserveRevert(@Payload() item: Item, @Ctx() metadata: Metadata, @BranchContext() branch: BranchInfo) {
    this.record('reserveRevert', item, branch, metadata);
  }

  @GrpcMethod('Shop', 'Notify')
  @MsgBranch('notify')
  notify(@Payload() item: Item, @Ctx() metadata: Metadata, @BranchContext() branch: BranchInfo) {
    this.record('notify', item, branch, metadata);
  }

  /** The back-check, answered as the test scripted for the gid: success, FAILURE or ONGOING. */
  @GrpcMethod('Shop', 'Check')
  @MsgQueryPrepared('check')
  check(@Payload() item: Item, @Ctx() metadata: Metadata, @BranchContext() branch: BranchInfo) {
    this.record('check', item, branch, metadata);
    const script = this.ledger.checks.get(branch.gid) ?? ['success'];
    const answer = script.length > 1 ? script.shift()! : script[0];
    if (answer === 'failure') throw new DtmFailureError('the order was never saved');
    if (answer === 'ongoing') throw new DtmOngoingError('the order is being saved');
    return { message: 'saved' };
  }

  /** Not a branch: starts a saga while serving a gRPC call; its allow-listed metadata must reach the branches. */
  @GrpcMethod('Shop', 'Checkout')
  async checkout(@Payload() order: { gid: string; sku: string }) {
    await this.dtm.newSaga(order.gid, { protocol: 'grpc' }).add('reserve', { sku: order.sku, quantity: 1, script: '' }).submit();
    return { message: `started ${order.gid}` };
  }
}

/** A global guard as the module advises: DTM's handlers pass (isDtmBranchHandler), any other call needs `authorization` metadata. */
@Injectable()
export class SessionGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return isDtmBranchHandler(context.getHandler()) || context.switchToRpc().getContext<Metadata>().get('authorization').length > 0;
  }
}

/** A running Shop app. */
export interface ShopApp {
  app: INestApplicationContext;
  client: DtmClient;
  ledger: ShopLedger;
  logger: RecordingLogger;
  /** `host:port` of its gRPC server. */
  grpcAddress: string;
  /** The gRPC target of a Shop method. */
  target(method: string): string;
  close(): Promise<void>;
}

/**
 * Starts the Shop app on a free port: `hybrid` (an HTTP app with the gRPC microservice connected,
 * `inheritAppConfig`) or `microservice` (a pure gRPC microservice), talking gRPC to DTM; the gRPC
 * server listens on `listenOn` when given. `grpcProtos: false`: no `grpcProtos` given to DtmModule
 * (object payloads then encoded with the protos its gRPC server loads). `guard`: a global guard (APP_GUARD).
 */
export async function startShopApp(
  kind: 'hybrid' | 'microservice',
  config: DtmConfigInput = {},
  listenOn?: string,
  options: { grpcProtos?: boolean; guard?: Type<CanActivate> } = {},
): Promise<ShopApp> {
  const grpcAddress = listenOn ?? `127.0.0.1:${await freePort()}`;
  const logger = new RecordingLogger();
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: {
          serverUrl: harness().dtm.serverUrl,
          grpcServer: harness().dtm.grpcAddress,
          grpcAppAddress: grpcAddress,
          protocol: 'grpc',
          passThroughHeaders: ['X-Request-ID'],
          ...config,
        },
        grpcProtos: options.grpcProtos === false ? undefined : TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [ShopController],
    providers: [ShopLedger, ...(options.guard ? [{ provide: APP_GUARD, useClass: options.guard }] : [])],
  }).compile();
  let app: INestApplicationContext;
  if (kind === 'hybrid') {
    const http = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
    http.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await http.startAllMicroservices();
    keepConnectionsForDtm(http);
    await http.listen(0, '127.0.0.1');
    app = http;
  } else {
    const microservice = moduleRef.createNestMicroservice<MicroserviceOptions>({ ...testsGrpcOptions(grpcAddress), logger });
    await microservice.listen();
    app = microservice;
  }
  return {
    app,
    client: app.get(DtmClient),
    ledger: app.get(ShopLedger),
    logger,
    grpcAddress,
    target: (method) => `${grpcAddress}/tests.Shop/${method}`,
    close: () => app.close(),
  };
}
