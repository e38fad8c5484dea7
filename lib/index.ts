// The public API of nestjs-dtm, and nothing else.
export { DtmModule } from './dtm.module.js';
export { DTM_CONFIG } from './dtm.constants.js';
export type { DtmModuleExtras } from './dtm.module-definition.js';
export type { DtmModuleOptions } from './dtm.module-options.js';
export type { DtmConfig, DtmConfigInput, DtmConfigSource, DtmServiceConfig } from './config/dtm-config.types.js';
export type { GrpcProtos } from './transport/grpc/grpc-codecs.js';
export { resolveDtmConfig } from './config/resolve-dtm-config.js';

export { DtmClient } from './client/dtm.client.js';
export type {
  BranchAnswer,
  BranchRecord,
  BranchStatus,
  FinalResult,
  ListFilter,
  ListPage,
  Payload,
  PingResult,
  StoredTransactionOptions,
  TransactionOptions,
  TransactionRecord,
  TransactionStatus,
  TransactionType,
  WaitOptions,
  BranchInfo,
  BranchKind,
} from './transport/dtm.types.js';

export { Saga } from './transactions/saga.js';
export { Msg, type MsgLocalTransaction } from './transactions/msg.js';
export { Tcc } from './transactions/tcc.js';
export type { GlobalTransactionOutcome } from './transactions/global-transaction.js';
export { Xa } from './transactions/xa.js';
export {
  TransactionHelper,
  type ExecutionResult,
  type HelperOptions,
  type SagaBranch,
  type TccBranch,
} from './client/transaction.helper.js';

export {
  SagaAction,
  SagaCompensate,
  TccTry,
  TccConfirm,
  TccCancel,
  XaBranch, // also the type of TransactionHelper.executeXa's branches
  MsgBranch, // also the type of TransactionHelper.executeMsg's branches
  MsgQueryPrepared,
  UseBarrier,
} from './branches/branch.decorators.js';
export { BranchContext } from './branches/branch-context.decorator.js';
export {
  defineBranches,
  sagaBranch,
  tccBranch,
  msgBranch,
  xaBranch,
  type BranchContract,
  type BranchDeclaration,
  type DeclaredPayload,
  type BranchPayload,
  type RemoteBranch,
  type RemoteBranchKind,
  type StandardSchemaV1,
  type StandardSchemaResult,
} from './contracts/branch-contract.js';
export { MANIFEST_PATH, type BranchManifest, type ManifestBranch, type ManifestTargets } from './contracts/branch-manifest.js';
export { DTM_BRANCHES_PROTO } from './branches/branch-manifest.controller.js';
export type { BranchOptions, SagaActionOptions, ValidatedBranchOptions, XaBranchOptions } from './branches/branch.types.js';
export { DtmBranchRegistry, type BranchRoute } from './branches/branch.registry.js';
export { DtmBranchExceptionFilter } from './branches/branch-exception.filter.js';
export { DtmBranchBodyInterceptor } from './branches/http/branch-body.interceptor.js';
export { DtmBranchGuard } from './branches/branch.guard.js';

export { BranchBarrier, type BranchBarrierOptions } from './barrier/branch-barrier.js';
export type {
  BarrierConnection,
  BarrierDatabase,
  BarrierDialect,
  BarrierExecResult,
  BarrierOutcome,
  BarrierTransaction,
  LocalTransactionBounds,
  RedisBarrierConnection,
} from './barrier/barrier.types.js';
export { ensureBarrierSchema } from './barrier/ensure-barrier-schema.js';
export { barrierBinaryKeysSql, barrierSchemaSql, DEFAULT_BARRIER_TABLE } from './barrier/barrier.sql.js';
export { branchKeysProblem, MAX_BRANCH_KEY_LENGTH } from './transport/branch-keys.js';
export { pgBarrierDatabase, pgBarrierTransaction, type PgClientLike, type PgLentClientLike, type PgPoolLike } from './barrier/pg-barrier.store.js';
export { mysqlBarrierDatabase, mysqlBarrierTransaction, type MysqlConnectionLike, type MysqlPoolLike } from './barrier/mysql-barrier.store.js';
export {
  typeormBarrierDatabase,
  typeormBarrierTransaction,
  type TypeormDataSourceLike,
  type TypeormEntityManagerLike,
  type TypeormQueryRunnerLike,
} from './barrier/typeorm-barrier.store.js';
export type { RedisLike } from './barrier/redis-barrier.store.js';
export { redisBarrierConnection } from './barrier/redis-barrier.connection.js';
export { BarrierTx } from './branches/barrier-tx.decorator.js';

export type { XaConnection, XaDatabase } from './xa/xa.types.js';
export { mysqlXaDatabase, type MysqlXaConnectionLike } from './xa/mysql-xa.database.js';
export { pgXaDatabase, type PgXaClientLike, type PgXaPoolLike, type PgXaPooledClientLike } from './xa/pg-xa.database.js';

export { DtmWorkflow } from './workflow/workflow.decorator.js';
export type { LocalStepOptions, WorkflowCallback, WorkflowContext, WorkflowOptions, WorkflowPhase2, WorkflowResult, WorkflowStep } from './workflow/workflow.types.js';
export { DTM_WORKFLOW_PROTO, WORKFLOW_RESUME_PATH } from './branches/workflow-resume.js';

export { DtmInstrumentation } from './observability/dtm-instrumentation.js';
export { METRIC_NAMES } from './observability/otel.js';
export type {
  DtmAbortFailedEvent,
  DtmBarrierDecision,
  DtmBranchCallEvent,
  DtmBranchOutcome,
  DtmCallEvent,
  DtmEventListener,
  DtmEventName,
  DtmEvents,
  DtmHooks,
  DtmInstrumentationOptions,
  DtmTransactionEndEvent,
  DtmTransactionOutcome,
  DtmTransactionStartEvent,
} from './observability/dtm-events.js';

export { DtmError, type DtmErrorContext, type DtmProtocol } from './errors/dtm-error.js';
export { DtmWorkflowPendingError } from './errors/dtm-workflow-pending.error.js';
export { DtmWorkflowDivergedError } from './errors/dtm-workflow-diverged.error.js';
export { DtmUsageError } from './errors/dtm-usage.error.js';
export { DtmDuplicatedError } from './errors/dtm-duplicated.error.js';
export { DtmBranchRegistryError } from './errors/dtm-branch-registry.error.js';
export { DtmRemoteBranchError, type DtmRemoteBranchProblem } from './errors/dtm-remote-branch.error.js';
export { DtmUnavailableError } from './errors/dtm-unavailable.error.js';
export { DtmServerError } from './errors/dtm-server.error.js';
export { DtmFailureError } from './errors/dtm-failure.error.js';
export { DtmGidInUseError } from './errors/dtm-gid-in-use.error.js';
export { DtmOngoingError } from './errors/dtm-ongoing.error.js';
export { DtmOutcomeUnknownError } from './errors/dtm-outcome-unknown.error.js';
export { DtmConfigError, type DtmConfigProblem } from './errors/dtm-config.error.js';
export { DtmDisabledError } from './errors/dtm-disabled.error.js';
export { DtmUnauthenticatedError } from './errors/dtm-unauthenticated.error.js';
export { DtmXaPhase2Error } from './errors/dtm-xa-phase2.error.js';

export { DtmHealthIndicator, type DtmHealthDetails } from './health/dtm-health.indicator.js';
export type { UnfinishedBranch } from './diagnostics/unfinished.js';
export { readFailureReason, type FailureReason } from './diagnostics/failure-reason.js';
export { DtmAwareGuard, isDtmBranchHandler } from './diagnostics/startup-checks.js';
