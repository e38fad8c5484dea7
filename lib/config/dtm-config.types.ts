import type { BranchAuth } from '../auth/branch-auth.js';
import type { DtmProtocol } from '../errors/dtm-error.js';

/** The resolved `lynx.dtm` configuration (camelCase; durations in seconds). */
export interface DtmConfig {
  /** When false the app boots, and any use of the client throws `DtmDisabledError` (but `DtmClient.barrier()`, which needs no DTM). Default true. */
  enabled: boolean;
  /** DTM's HTTP API, e.g. `http://localhost:36789/api/dtmsvr`. */
  serverUrl: string;
  /** DTM's gRPC API as `host:port` (default `localhost:36790`), used when `protocol` is `grpc`. */
  grpcServer: string;
  /** How the module talks to DTM: `http` (default) or `grpc`. A transaction's own `protocol` option overrides it. */
  protocol: DtmProtocol;
  /**
   * Seconds a call to the DTM server may take in all (connecting, sending, the answer's headers and
   * body) before it fails with `DtmUnavailableError`; the same over gRPC (the call's deadline). Default 10.
   */
  timeout: number;
  /**
   * Seconds between DTM's retries of a failed branch (DTM `retry_interval`; doubles after each
   * error), sent with every transaction when set. Unset (default): none is sent, as DTM's Go SDK
   * does, and DTM's own applies: its server `RetryInterval` (10 s by default), except that a
   * transaction whose `timeoutToFail` is shorter is first looked at (a message back-checked, a TCC /
   * XA whose app died rolled back) after that timeout. With a retry interval set, DTM's first look
   * comes at that interval, so it is never earlier than the interval, whatever the timeout.
   */
  retryInterval?: number;
  /**
   * TCC, XA and msg: seconds after which DTM fails an unfinished TCC / XA transaction, or back-checks
   * a prepared message (DTM `timeout_to_fail`). `0`: DTM's server default (its `TimeoutToFail`, 35 s).
   * Not for sagas (see {@link sagaTimeout}). Default 60.
   */
  transactionTimeout: number;
  /**
   * Sagas: seconds after which DTM rolls back an unfinished saga (DTM `timeout_to_fail`), compensating
   * the steps that already ran. `0` (default): no timeout, DTM retries forward until the saga is done
   * (DTM's own default for sagas).
   */
  sagaTimeout: number;
  /** Seconds DTM waits for one branch call (DTM `request_timeout`); also the module's own direct branch calls. Default 30. */
  branchTimeout: number;
  /**
   * Largest answer, in bytes, the module reads from DTM (a `/query` of a transaction with many large
   * payloads is the biggest) and from the branches it calls itself; a larger one fails with
   * `DtmServerError` without being read further. Default 8 MiB (8388608).
   */
  maxAnswerBytes: number;
  /**
   * Inbound request headers passed on to every branch (case-insensitive). DTM stores them with each
   * transaction and returns them through its API. Framing and connection headers (`Host`,
   * `Content-Length`, `Transfer-Encoding`, `Connection`, ...) are refused. Default none.
   */
  passThroughHeaders: string[];
  /** Pass the inbound W3C trace context (`traceparent`, `tracestate`) on to every branch, when well-formed. Default true. */
  passTraceContext: boolean;
  /**
   * Base URL at which DTM reaches this app's decorated branches, e.g. `http://orders:3000`. When
   * unset, the address the app listens on (only reachable by a DTM server on the same host).
   */
  appUrl?: string;
  /**
   * `host:port` at which DTM reaches this app's gRPC branches (`@GrpcMethod` handlers), e.g.
   * `orders:50051`. When unset, the address the app's gRPC server listens on (only reachable by a
   * DTM server on the same host).
   */
  grpcAppAddress?: string;
  /** Table of the sub-transaction barrier (`name` or `schema.name`). Default `dtm_barrier.barrier`. */
  barrierTable: string;
  /**
   * Authenticated branch calls (`branch_auth_keys`, keys of at least 32 characters, e.g. from
   * `${DTM_BRANCH_KEY}`): every branch call this app makes or DTM makes for its transactions is
   * signed with the first key, and a decorated branch runs only for a call signed with one of them.
   * Unset: branch calls are not authenticated (DTM's Go SDK cannot sign).
   */
  branchAuthKeys?: BranchAuth;
  /**
   * With `branchAuthKeys`: a saga action or a message branch called by DTM also needs DTM's record
   * to say it is due (the transaction `submitted`; in a saga, every step it waits for done: all
   * earlier ones, or with concurrency those its branch orders name), one query to DTM per such call, so that a token read back from DTM cannot run a
   * step DTM has not called; a TCC Try, an XA action and a workflow's call of a remote branch, which
   * the app makes itself, need the transaction prepared, so that one taken off the wire and replayed
   * after the transaction ended runs nothing. Default false.
   */
  branchAuthCheckActions: boolean;
  /**
   * With `branchAuthKeys`: how far apart (seconds, either way) DTM's record of a transaction may say
   * it was created and its tokens say they were issued, where a branch call's check reads the record
   * (compensations, cancels, confirms, back-checks, checked actions, workflow resumes). Farther
   * apart, the call is refused: the transaction was forgotten by DTM and re-created under its gid
   * with its old tokens (or the clocks of the app and DTM differ that much). Keep DTM's
   * `FinishedDataExpire` above it. Default 900.
   */
  branchAuthIssueWindow: number;
  /**
   * Serve this app's branch manifest (`GET /dtm/branches`, and `nestjs_dtm.Branches/Manifest` on
   * gRPC servers that load `DTM_BRANCHES_PROTO`): each decorated branch's name, kind, ops and
   * targets, for callers that add its branches by name. Default false.
   */
  publishBranches: boolean;
  /** The services whose branches this app adds by name (`saga.add(Bank.withdraw, ...)`), by name. Default none. */
  services: Record<string, DtmServiceConfig>;
  /**
   * Ping DTM at start-up (the call of `DtmClient.ping`, which creates nothing) and fail start-up with
   * `DtmUnavailableError` when it does not answer after `startupPingAttempts` tries. Default false.
   */
  startupPing: boolean;
  /** How many times the start-up ping tries (like TypeORM's `retryAttempts`). Default 10. */
  startupPingAttempts: number;
  /** Seconds between two tries of the start-up ping (like TypeORM's `retryDelay`). Default 3. */
  startupPingDelay: number;
  /**
   * At start-up, create the barrier table (`ensureBarrierSchema`) on every barrier connection a
   * branch uses, instead of only checking that it exists. Default false.
   */
  createBarrierTable: boolean;
}

/** Where a service that publishes its branches (`publish_branches`) is reached: `lynx.dtm.services.<name>`. */
export interface DtmServiceConfig {
  /** Its base URL (`app_url`), e.g. `http://bank:3000`: the manifest is `GET <url>/dtm/branches`. */
  url?: string;
  /** Its gRPC address, e.g. `stock:50051`, when it has no HTTP server: the manifest is `nestjs_dtm.Branches/Manifest`. */
  grpc?: string;
  /** Seconds a fetched manifest is used before it is fetched again at the next use (default 30); a failed fetch keeps it. */
  refresh: number;
}

/** `lynx.dtm` settings given inline (camelCase); each overrides the same key of the YAML file. */
export type DtmConfigInput = Partial<Omit<DtmConfig, 'branchAuthKeys' | 'services'>> & {
  /** The services whose branches this app adds by name (see {@link DtmConfig.services}); `refresh` is optional. */
  services?: Record<string, Omit<DtmServiceConfig, 'refresh'> & { refresh?: number }>;
  /** Keys of authenticated branch calls (see {@link DtmConfig.branchAuthKeys}): the first signs, all verify. */
  branchAuthKeys?: string[];
};

/** Where the `lynx.dtm` settings come from: a YAML file, the section as loaded, inline settings, or several (applied in that order). */
export interface DtmConfigSource {
  /** YAML file whose `lynx.dtm` section configures the module (relative paths: from the working directory). */
  configFile?: string;
  /**
   * The `lynx.dtm` section as your configuration loader returns it, with the YAML's snake_case keys
   * (`section: config.get('lynx.dtm')` in `forRootAsync`). `${VAR}` placeholders are replaced as in
   * `configFile`. Given as `undefined` or `null` (the key is missing), it is a `DtmConfigError`.
   */
  section?: Record<string, unknown> | null;
  /** Inline settings; they override the file's. */
  config?: DtmConfigInput;
}
