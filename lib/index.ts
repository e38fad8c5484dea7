// The public API of nestjs-dtm, and nothing else.
export { DtmModule } from './dtm.module.js';
export { DTM_CONFIG } from './dtm.constants.js';
export type { DtmModuleExtras } from './dtm.module-definition.js';
export type { DtmConfig, DtmConfigInput, DtmModuleOptions } from './config/dtm-config.types.js';
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
} from './client/dtm-client.types.js';

export { Saga } from './transactions/saga.js';
export { Msg, type MsgLocalTransaction } from './transactions/msg.js';
export { Tcc } from './transactions/tcc.js';
export { Xa } from './transactions/xa.js';
export { GlobalTransaction } from './transactions/global-transaction.js';
export { TransactionBuilder } from './transactions/transaction-base.js';
export {
  TransactionHelper,
  type ExecutionResult,
  type HelperOptions,
  type SagaBranch,
  type TccBranch,
} from './transactions/transaction.helper.js';

export {
  SagaAction,
  SagaCompensate,
  TccTry,
  TccConfirm,
  TccCancel,
  XaBranch, // also the type of TransactionHelper.executeXa's branches
  MsgBranch, // also the type of TransactionHelper.executeMsg's branches
  MsgQueryPrepared,
} from './branches/branch.decorators.js';
export { BranchContext } from './branches/branch-context.decorator.js';
export type { BranchInfo, BranchKind, SagaActionOptions } from './branches/branch.types.js';
export { DtmBranchRegistry, type BranchRoute } from './branches/branch.registry.js';
export { DtmBranchExceptionFilter } from './branches/branch-exception.filter.js';
export { DtmBranchInterceptor } from './branches/branch.interceptor.js';
export { DtmBranchGuard } from './branches/branch.guard.js';

export { DtmError, type DtmErrorContext } from './errors/dtm-error.js';
export { DtmBranchRegistryError } from './errors/dtm-branch-registry.error.js';
export { DtmUnavailableError } from './errors/dtm-unavailable.error.js';
export { DtmServerError } from './errors/dtm-server.error.js';
export { DtmFailureError } from './errors/dtm-failure.error.js';
export { DtmOngoingError } from './errors/dtm-ongoing.error.js';
export { DtmConfigError, type DtmConfigProblem } from './errors/dtm-config.error.js';
export { DtmDisabledError } from './errors/dtm-disabled.error.js';
