import type { DtmConfig } from './dtm-config.types.js';

/** How a key's value is checked. */
export type DtmConfigKind = 'boolean' | 'count' | 'dtm-url' | 'http-url' | 'host-port' | 'protocol' | 'seconds' | 'whole-seconds' | 'bytes' | 'header-list' | 'sql-table' | 'secret-list' | 'services';

/** Headers passed on to branches whatever `pass_through_headers` says, unless `pass_trace_context` is false: W3C trace context. */
export const TRACE_CONTEXT_HEADERS: readonly string[] = ['traceparent', 'tracestate'];

/**
 * Header names no branch call may carry from a request or from `branchHeaders` (lower case): the
 * message framing and connection handling of the call itself (a forwarded `Content-Length` cuts
 * the body and desyncs the connection, a `Host` redirects virtual hosting), its content type and
 * encoding, and the keys of DTM's own gRPC metadata. Names ending in `-` are prefixes.
 */
export const FORBIDDEN_BRANCH_HEADERS: readonly string[] = [
  'host',
  'content-length',
  'content-type',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'proxy-',
  'dtm-',
  'grpc-',
];

/** Whether `name` (any case) is one of {@link FORBIDDEN_BRANCH_HEADERS}. */
export function isForbiddenBranchHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return FORBIDDEN_BRANCH_HEADERS.some((f) => (f.endsWith('-') ? lower.startsWith(f) : lower === f));
}

/**
 * Header names that usually carry a credential (a session, a token, a key): listed in
 * `pass_through_headers`, DTM would store them readable through its API, so start-up warns about them.
 */
const CREDENTIAL_HEADER = /auth|cookie|token|secret|passw|api-?key|session|credential|jwt|signature/i;

/** The host name of `url`, lower-cased (what Nest matches a controller's `host` against); undefined without one or for no URL. */
export function urlHostname(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).hostname.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether `host` (a URL's host name, lower-cased) is this host's loopback: `localhost`, `*.localhost`, `127.x.x.x`, `[::1]`. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
}

/** Whether header `name` (any case) looks like one that carries a credential ({@link CREDENTIAL_HEADER}). */
export function isCredentialHeader(name: string): boolean {
  return CREDENTIAL_HEADER.test(name);
}

/** Longest wait a Node timer honours (2^31-1 ms); a longer one fires after 1 ms. */
export const NODE_TIMER_MAX_MS = 2_147_483_647;
/**
 * Largest whole number of seconds the module sends DTM (2^31-1, about 68 years): DTM's SQL stores
 * keep the retry interval in a 32-bit `next_cron_interval` column, and DTM turns every such value
 * into a Go duration (which overflows past 292 years and makes a timeout fire at once).
 */
export const DTM_SECONDS_MAX = 2_147_483_647;
/** Longest branch timeout: DTM's limit, and the module waits for its own branch calls with a Node timer. */
export const BRANCH_TIMEOUT_MAX = Math.floor(NODE_TIMER_MAX_MS / 1000);

/** DTM's `TimeoutToFail` by default (seconds): what a message prepared with `timeout_to_fail` 0 waits before DTM back-checks it. */
export const DTM_DEFAULT_TIMEOUT_TO_FAIL = 35;
/** Why a range of seconds ends where it does: Node's timers (for waits of the module's own). */
export const NODE_TIMER = "Node's timers stop at 2147483647 ms";
/** Why a range of seconds ends where it does: what DTM can store (for values DTM waits on). */
export const DTM_INTEGER = "DTM's SQL stores keep its intervals in 32-bit integers";

/** One `lynx.dtm` key: its YAML name, its TypeScript name, how it is checked and its default. */
export interface DtmConfigKey<K extends keyof DtmConfig = keyof DtmConfig> {
  yaml: string;
  camel: K;
  kind: DtmConfigKind;
  /** Absent for optional keys without a default. */
  default?: DtmConfig[K];
  /** A valid value, shown in error messages. */
  example?: string;
  /** Numeric kinds: the smallest and largest value accepted, and why the range ends there. */
  range?: { min: number; max: number; why: string };
}

/** Every `lynx.dtm` key, in documentation order: the one table the loader, the validator and the README follow. */
export const DTM_CONFIG_KEYS: readonly DtmConfigKey[] = [
  { yaml: 'enabled', camel: 'enabled', kind: 'boolean', default: true },
  { yaml: 'server_url', camel: 'serverUrl', kind: 'dtm-url', default: 'http://localhost:36789/api/dtmsvr', example: 'http://localhost:36789/api/dtmsvr' },
  { yaml: 'grpc_server', camel: 'grpcServer', kind: 'host-port', default: 'localhost:36790' },
  { yaml: 'protocol', camel: 'protocol', kind: 'protocol', default: 'http' },
  { yaml: 'timeout', camel: 'timeout', kind: 'seconds', default: 10, range: { min: 0.001, max: NODE_TIMER_MAX_MS / 1000, why: NODE_TIMER } },
  { yaml: 'retry_interval', camel: 'retryInterval', kind: 'whole-seconds', range: { min: 1, max: DTM_SECONDS_MAX, why: DTM_INTEGER } },
  { yaml: 'transaction_timeout', camel: 'transactionTimeout', kind: 'whole-seconds', default: 60, range: { min: 0, max: DTM_SECONDS_MAX, why: DTM_INTEGER } },
  { yaml: 'saga_timeout', camel: 'sagaTimeout', kind: 'whole-seconds', default: 0, range: { min: 0, max: DTM_SECONDS_MAX, why: DTM_INTEGER } },
  { yaml: 'branch_timeout', camel: 'branchTimeout', kind: 'whole-seconds', default: 30, range: { min: 1, max: BRANCH_TIMEOUT_MAX, why: NODE_TIMER } },
  {
    yaml: 'max_answer_bytes',
    camel: 'maxAnswerBytes',
    kind: 'bytes',
    default: 8 * 1024 * 1024,
    range: { min: 64 * 1024, max: 1024 * 1024 * 1024, why: 'an answer is held in memory whole' },
  },
  { yaml: 'pass_through_headers', camel: 'passThroughHeaders', kind: 'header-list', default: [] },
  { yaml: 'pass_trace_context', camel: 'passTraceContext', kind: 'boolean', default: true },
  { yaml: 'app_url', camel: 'appUrl', kind: 'http-url', example: 'http://orders:3000' },
  { yaml: 'grpc_app_address', camel: 'grpcAppAddress', kind: 'host-port' },
  { yaml: 'barrier_table', camel: 'barrierTable', kind: 'sql-table', default: 'dtm_barrier.barrier', example: 'dtm_barrier.barrier' },
  { yaml: 'branch_auth_keys', camel: 'branchAuthKeys', kind: 'secret-list', example: '["${DTM_BRANCH_KEY}"]' },
  { yaml: 'branch_auth_check_actions', camel: 'branchAuthCheckActions', kind: 'boolean', default: false },
  { yaml: 'branch_auth_issue_window', camel: 'branchAuthIssueWindow', kind: 'whole-seconds', default: 900, range: { min: 1, max: DTM_SECONDS_MAX, why: DTM_INTEGER } },
  { yaml: 'publish_branches', camel: 'publishBranches', kind: 'boolean', default: false },
  { yaml: 'services', camel: 'services', kind: 'services', default: {} },
  { yaml: 'startup_ping', camel: 'startupPing', kind: 'boolean', default: false },
  { yaml: 'startup_ping_attempts', camel: 'startupPingAttempts', kind: 'count', default: 10, range: { min: 1, max: 1000, why: 'a start-up that waits longer should wait outside the app' } },
  { yaml: 'startup_ping_delay', camel: 'startupPingDelay', kind: 'seconds', default: 3, range: { min: 0.001, max: 600, why: 'a start-up that waits longer should wait outside the app' } },
  { yaml: 'create_barrier_table', camel: 'createBarrierTable', kind: 'boolean', default: false },
];

/** Seconds a fetched branch manifest of a service is used before it is fetched again (`services.<name>.refresh`), by default. */
export const DEFAULT_MANIFEST_REFRESH = 30;

/** The configuration with every key at its default. */
export function defaultDtmConfig(): DtmConfig {
  const config = {} as Record<keyof DtmConfig, unknown>;
  for (const key of DTM_CONFIG_KEYS) {
    if (key.default !== undefined) config[key.camel] = Array.isArray(key.default) ? [...key.default] : typeof key.default === 'object' ? { ...key.default } : key.default;
  }
  return config as DtmConfig;
}
