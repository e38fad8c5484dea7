/** Injection token of the resolved `lynx.dtm` configuration (`DtmConfig`). */
export const DTM_CONFIG = Symbol('DTM_CONFIG');

/** Metadata key under which branch decorators record a `BranchMetadata`. */
export const DTM_BRANCH_METADATA = 'nestjs-dtm:branch';

/** Metadata key marking a handler of the module's own called without credentials (the gRPC workflow resume, the gRPC branch manifest): `isDtmBranchHandler` is true for it. */
export const DTM_ENDPOINT_METADATA = 'nestjs-dtm:endpoint';

/** Injection token of the module's barrier connections (`Map<string, BarrierConnection>`). */
export const DTM_BARRIER_CONNECTIONS = Symbol('DTM_BARRIER_CONNECTIONS');

/** Injection token of the module's XA databases (`Map<string, XaDatabase>`). */
export const DTM_XA_CONNECTIONS = Symbol('DTM_XA_CONNECTIONS');

/** Injection token of what handlers wrapped in a local transaction need from the module (`DtmBranchRuntime`). */
export const DTM_BRANCH_RUNTIME = Symbol('DTM_BRANCH_RUNTIME');

/** Injection token of the branch names' resolver (`BranchResolver`: the module's `DtmBranchRegistry`). */
export const DTM_BRANCH_RESOLVER = Symbol('DTM_BRANCH_RESOLVER');

/** Injection token of the codecs of the app's gRPC protos (`GrpcCodecs`, from the module option `grpcProtos`). */
export const DTM_GRPC_CODECS = Symbol('DTM_GRPC_CODECS');

/** Metadata key under which `@DtmWorkflow` records its name and options. */
export const DTM_WORKFLOW_METADATA = 'nestjs-dtm:workflow';

/** Injection token of what workflow executions need from the module (`WorkflowEnvironment`). */
export const DTM_WORKFLOW_ENVIRONMENT = Symbol('DTM_WORKFLOW_ENVIRONMENT');

/** Injection token of the branches of other services the app uses by name (`RemoteBranch[]`, from the module option `contracts`), checked at start-up. */
export const DTM_CONTRACTS = Symbol('DTM_CONTRACTS');
