import type { BarrierConnection } from './barrier/barrier.types.js';
import type { DtmConfigSource } from './config/dtm-config.types.js';
import type { GrpcProtos } from './transport/grpc/grpc-codecs.js';
import type { XaDatabase } from './xa/xa.types.js';
import type { RemoteBranch } from './contracts/branch-contract.js';
import type { DtmInstrumentationOptions } from './observability/dtm-events.js';

/** Options of `DtmModule.forRoot()` (and what `forRootAsync()`'s factory returns). */
export interface DtmModuleOptions extends DtmConfigSource {
  /**
   * Databases the branch decorators' `barrier` option names: `{ pg: pgBarrierDatabase(pool) }`;
   * a Redis client (`redisBarrierConnection(redis)`) serves `@MsgQueryPrepared` back-checks.
   */
  barrierConnections?: Record<string, BarrierConnection>;
  /** Databases `@XaBranch(name, { db })` runs its local XA transactions on: `{ mysql: mysqlXaDatabase(() => ...) }`. */
  xaConnections?: Record<string, XaDatabase>;
  /**
   * The `.proto` files of the gRPC branches this app calls, so that their payloads can be given as
   * objects (encoded with each method's request type) and replies come back decoded. Without it,
   * gRPC payloads are bytes (`Uint8Array`).
   */
  grpcProtos?: GrpcProtos;
  /**
   * Contracts of the services whose branches this app adds by name (made with `defineBranches`):
   * each branch is checked against its service's manifest at start-up (`lynx.dtm.services`).
   */
  contracts?: readonly Record<string, RemoteBranch>[];
  /**
   * Hooks on the module's events (`hooks: { 'branch.call': (e) => ... }`), OpenTelemetry spans and
   * metrics (on when an SDK is registered; `openTelemetry: false` turns them off) and the debug log
   * of every DTM call and branch decision (`debugLogs: true`). See docs/observability.md.
   */
  instrumentation?: DtmInstrumentationOptions;
}
