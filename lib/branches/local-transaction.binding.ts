import { createParamDecorator, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import { BranchBarrier } from '../barrier/branch-barrier.js';
import type { BarrierConnection, DtmConfig } from '../config/dtm-config.types.js';
import { branchInfoFromQuery } from '../context/dtm-context.js';
import { DTM_BRANCH_METADATA } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import type { XaDatabase } from '../xa/xa.types.js';
import { handlerName, type BranchInfo, type BranchMetadata } from './branch.types.js';

// Why handlers are wrapped here instead of by a Nest interceptor: any interceptor on a route makes
// Nest run the call through an RxJS pipeline (defer, mergeAll, an AsyncResource per call,
// lastValueFrom), which cost more CPU per branch call than the barrier's own work
// (bench/barrier-overhead). The wrapped handler is what Nest's router calls, after the guard, the
// pipes and the parameter decorators, so everything else about the route stays Nest's.

/** Nest's route-argument metadata key (the same in Nest 11 and 12). */
const ROUTE_ARGS_METADATA = '__routeArguments__';

/** What a branch handler's local transaction needs from the module serving the app (one per app). */
export interface DtmBranchRuntime {
  barrierConnections: Map<string, BarrierConnection>;
  xaDatabases: Map<string, XaDatabase>;
  config: DtmConfig;
  /** `DtmClient.xaLocalTransaction` of the module. */
  xaLocalTransaction<H, T>(branch: BranchInfo, db: XaDatabase<H>, business: (handle: H) => Promise<T>): Promise<T | undefined>;
}

/** Where the branch guard leaves the serving module's {@link DtmBranchRuntime} on the request. */
export const BRANCH_RUNTIME = Symbol('nestjs-dtm:branch-runtime');

/** Where a handler's local transaction comes from: a barrier connection, or an XA database. */
export type LocalTransactionSource = { barrier: string; queryPrepared: boolean } | { xa: string };

/** How a wrapped handler was made: what it runs in, what it wraps, where its arguments are. */
interface Binding {
  source: LocalTransactionSource;
  /** Made by a controller's `@UseBarrier()` (a subclass's may replace it), not by the method's own decorator. */
  byController: boolean;
  original: Handler;
  /** Index of the hidden request argument. */
  requestIndex: number;
  /** Indexes of the `@BarrierTx()` arguments. */
  txIndexes: number[];
}

/** On a wrapped handler: its {@link Binding}. */
const BINDING = Symbol('nestjs-dtm:local-transaction');

/** What `@BarrierTx()` resolves to until the wrapped handler puts the transaction's handle in its place. */
const TX_PLACEHOLDER = Object.freeze({ '@BarrierTx()': 'replaced by the local transaction when the handler runs' });

type Handler = ((...args: unknown[]) => unknown) & { [BINDING]?: Binding };
type BranchRequest = { query?: Record<string, unknown>; [BRANCH_RUNTIME]?: DtmBranchRuntime };

/** The factory of `@BarrierTx()`: a placeholder on wrapped handlers, a clear error elsewhere. */
export function barrierTxFactory(_data: unknown, context: ExecutionContext): unknown {
  if ((context.getHandler() as Handler)[BINDING]) return TX_PLACEHOLDER;
  throw new InternalServerErrorException(MESSAGES.noBarrierTx(handlerName(context)));
}

/** The hidden last argument of a wrapped handler: the request (the router passes nothing else a handler did not ask for). */
const RequestArgument = createParamDecorator((_data: unknown, context: ExecutionContext) => context.switchToHttp().getRequest<unknown>());

/** Whether `handler` was wrapped to run in a local transaction. */
export function localTransactionOf(handler: unknown): LocalTransactionSource | undefined {
  return typeof handler === 'function' ? (handler as Handler)[BINDING]?.source : undefined;
}

/**
 * Makes the handler of `descriptor` run inside a local transaction from `source`: a barrier-guarded
 * one on a barrier connection, or the local XA transaction on an XA database. Its `@BarrierTx()`
 * parameters receive the transaction's handle. Called by the branch decorators (once per method),
 * and by `@UseBarrier()`, whose binding a subclass's `@UseBarrier()` replaces (on the subclass only).
 */
export function bindLocalTransaction(target: object, key: string | symbol, descriptor: PropertyDescriptor, source: LocalTransactionSource, byController = false): void {
  const current = descriptor.value as Handler;
  if (typeof current !== 'function') return;
  const bound = current[BINDING];
  if (bound && !(byController && bound.byController)) return;
  const controller = target.constructor;
  let binding: Binding;
  if (bound) {
    binding = { ...bound, source };
  } else {
    const declared = Object.values((Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, key) ?? {}) as Record<string, { index: number; factory?: unknown }>);
    const requestIndex = Math.max(current.length, ...declared.map((arg) => arg.index + 1));
    RequestArgument()(target, key, requestIndex);
    binding = { source, byController, original: current, requestIndex, txIndexes: declared.filter((arg) => arg.factory === barrierTxFactory).map((arg) => arg.index) };
  }
  const { original, requestIndex, txIndexes } = binding;
  const where = `${controller.name}.${String(key)}`;
  const wrapped: Handler = function (this: unknown, ...args: unknown[]) {
    const request = args[requestIndex] as BranchRequest | undefined;
    args.length = requestIndex;
    return runInLocalTransaction(request, source, where, (handle) => {
      for (const index of txIndexes) args[index] = handle;
      return original.apply(this, args);
    });
  };
  for (const metadataKey of Reflect.getOwnMetadataKeys(current)) {
    Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, current), wrapped);
  }
  Object.defineProperty(wrapped, 'name', { value: original.name });
  wrapped[BINDING] = binding;
  descriptor.value = wrapped;
}

/**
 * `@UseBarrier(connection)`: wraps every branch handler of `controller` (inherited ones included)
 * that has no barrier of its own, does not opt out with `{ barrier: false }` and is not an XA
 * branch (which runs its own local XA transaction). An inherited handler a base class's
 * `@UseBarrier()` wrapped is wrapped again for this class, on this connection.
 */
export function bindControllerBarrier(controller: { prototype: object }, connection: string): void {
  const seen = new Set<string | symbol>();
  for (let owner = controller.prototype; owner && owner !== Object.prototype; owner = Object.getPrototypeOf(owner) as object) {
    for (const key of Reflect.ownKeys(owner)) {
      if (key === 'constructor' || seen.has(key)) continue;
      seen.add(key);
      const descriptor = Object.getOwnPropertyDescriptor(owner, key);
      const handler = descriptor?.value as Handler | undefined;
      const branch = typeof handler === 'function' ? (Reflect.getMetadata(DTM_BRANCH_METADATA, handler) as BranchMetadata | undefined) : undefined;
      if (!branch || branch.kind === 'xa' || branch.options.barrier !== undefined) continue;
      const own = { ...descriptor! };
      bindLocalTransaction(controller.prototype, key, own, { barrier: connection, queryPrepared: branch.kind === 'msg-query-prepared' }, true);
      if (own.value !== handler) Object.defineProperty(controller.prototype, key, own);
    }
  }
}

/** Whether a barrier connection is a Redis client rather than a SQL database. */
export function isRedisConnection(connection: BarrierConnection): connection is Extract<BarrierConnection, { redis: unknown }> {
  return 'redis' in connection;
}

async function runInLocalTransaction(
  request: BranchRequest | undefined,
  source: LocalTransactionSource,
  where: string,
  business: (handle: unknown) => unknown,
): Promise<unknown> {
  const runtime = request?.[BRANCH_RUNTIME];
  const info = branchInfoFromQuery(request?.query, {}); // the guard has answered 400 if it is incomplete
  if (!runtime || !info) throw new InternalServerErrorException(MESSAGES.noBranchRuntime(where));
  if ('xa' in source) {
    const db = runtime.xaDatabases.get(source.xa);
    if (!db) throw new InternalServerErrorException(MESSAGES.unknownXaDb(where, source.xa, [...runtime.xaDatabases.keys()]));
    return runtime.xaLocalTransaction(info, db, async (handle) => business(handle));
  }
  const connection = runtime.barrierConnections.get(source.barrier);
  if (!connection) throw new InternalServerErrorException(MESSAGES.unknownBarrier(where, source.barrier, [...runtime.barrierConnections.keys()]));
  const barrier = BranchBarrier.from(info, { table: runtime.config.barrierTable });
  if (source.queryPrepared) {
    // the back-check is answered from the barrier table; the handler does not run
    await (isRedisConnection(connection) ? barrier.redisQueryPrepared(connection.redis) : barrier.queryPrepared(connection));
    return undefined;
  }
  if (isRedisConnection(connection)) throw new InternalServerErrorException(MESSAGES.redisBarrierOnHandler(where, source.barrier));
  const outcome = await barrier.callWithDb(connection, async (handle) => business(handle));
  return outcome.executed ? outcome.result : undefined;
}
