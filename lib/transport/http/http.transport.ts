import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosError, type AxiosInstance, type AxiosRequestConfig } from 'axios';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { MESSAGES, UNANSWERED, type UnansweredMessages } from '../../dtm.messages.js';
import type { DtmErrorContext } from '../../errors/dtm-error.js';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { answerMessage } from '../../diagnostics/failure-reason.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import { DtmServerError } from '../../errors/dtm-server.error.js';
import { DtmUnavailableError } from '../../errors/dtm-unavailable.error.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import type { BranchTarget } from '../branch-target.js';
import type { BranchAnswer, ListFilter, ListPage, Payload, PingResult, TransactionRecord } from '../dtm.types.js';
import { isDtmGid, type BranchRegistration, type ResolvedOptions, type DirectBranchCall, type DtmTransport, type EncodedPayload, type TransactionRequest, type WorkflowProgress } from '../dtm-transport.js';
import { NOT_SENT, markResent, wasResent } from '../dtm-transient.js';
import { definiteServerRefusal, refusedForStatus } from '../dtm-refusal.js';
import { parseAnswer, payloadText } from '../payload.js';
import { HTTP_BRANCH_HEADERS_MAX, httpHeaderBytes } from '../dtm-limits.js';
import { AUTH_HEADER } from '../../auth/branch-auth.js';
import { redactText, redactUrl, safeCause, shorten, withoutCredentials } from '../../redact.js';
import { fromWireProgress, fromWireTransaction, readBranchAnswer, readWorkflowAnswer, toWireListQuery, toWireRegistration, toWireRequest } from './http-wire.js';
import type { WireListAnswer, WireQueryAnswer, WireWorkflowAnswer } from './http-wire.types.js';
import { messageOf as thrownMessage } from '../../errors/text-of.js';

/** What one request carries besides its URL: the body (text), and for a branch its headers and timeout. */
interface Send {
  method: 'GET' | 'POST';
  url: string;
  body?: string;
  headers?: Record<string, string>;
  timeoutSeconds?: number;
  /** false: never sent again after a reset of its pooled connection (an operation DTM does not take twice, see {@link RESENT_OPERATIONS}). */
  resend?: boolean;
}

/**
 * The operations on a transaction that {@link HttpTransport.send} may send once more after the
 * keep-alive race, because DTM takes them twice or the module reads DTM's refusal of a resent one:
 * `prepare` and `prepareWorkflow` (DTM answers a second one for a transaction still prepared with
 * success), `submit` (a second one for a transaction DTM went on with is refused with its status:
 * `Transaction.submitRequest` reads that refusal of its own resent submit as what it is, see
 * {@link wasResent}) and `abort` (its refusal for a transaction already aborting or failed is read
 * as done, {@link HttpTransport.abort}). Not `registerBranch` (DTM stores the branches again: a
 * unique-key conflict on a SQL store) nor `forceStop` (refused once done, which would read
 * "finished before"): a reset of those is reported as such, "may have reached DTM".
 */
const RESENT_OPERATIONS: ReadonlySet<string> = new Set(['prepare', 'prepareWorkflow', 'submit', 'abort']);

/**
 * How long a keep-alive connection may stay idle in the agents' pools before it is closed (Node's
 * own default agent's figure). DTM's HTTP server closes no idle connection: without it, every
 * connection a burst of calls opened (one per call at once) stayed open for the life of the app.
 * The agent destroys only a free socket on it; a call under way is bounded by its own deadline.
 */
const IDLE_CONNECTION_MS = 5_000;

/**
 * The TCP keep-alive delay of the pooled connections: axios sets 60 s on the connection of every
 * request it sends, and Node's agent sets its own `keepAliveMsecs` (1 s by default) back on it when
 * the answer frees it; the two differing, each request cost eight `setsockopt` system calls (four
 * per change), 1.24 µs of CPU per request on a connected socket (measured). With the same figure,
 * neither changes anything. What differs: a connection idle in the pool no longer sends a probe
 * after 1 s (the pool closes it after {@link IDLE_CONNECTION_MS}, before a 60 s probe); a peer that
 * dropped it without a word (its host restarted; a process that exits closes its connections) is
 * found by the next request on it, the keep-alive race {@link HttpTransport.send} sends once more.
 */
const KEEP_ALIVE_DELAY_MS = 60_000;

/**
 * DTM's HTTP API and HTTP branches, through one axios instance with keep-alive agents. Bodies go
 * out and come back as text, so payloads pass verbatim. Also the HTTP half of the gRPC transport:
 * DTM's query, list and forceStop exist only over HTTP, and HTTP branches are called over HTTP in a
 * gRPC transaction too.
 *
 * Every call is bounded: `timeout` (the branch timeout for a branch) is a deadline for the whole
 * call, answer body included (one timer per call that aborts it; axios's own `timeout` stops at the
 * answer's headers, then only bounds the silence between two chunks, which a peer dripping its
 * body never lets pass); an answer over `max_answer_bytes` is refused while it streams in; and calls
 * go straight to their URL, whatever `HTTP_PROXY` / `HTTPS_PROXY` say (`proxy: false` on a call made
 * while one is set, agents made without `proxyEnv`): a proxy would see the branch headers, tokens included.
 */
export class HttpTransport implements DtmTransport {
  readonly protocol = 'http' as const;
  private readonly httpAgent = new http.Agent({ keepAlive: true, keepAliveMsecs: KEEP_ALIVE_DELAY_MS, timeout: IDLE_CONNECTION_MS });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, keepAliveMsecs: KEEP_ALIVE_DELAY_MS, timeout: IDLE_CONNECTION_MS });
  /** Agents for the one retry of a call whose pooled connection the peer had closed: a new connection, closed after the answer. */
  private readonly freshHttpAgent = new http.Agent({ keepAlive: false });
  private readonly freshHttpsAgent = new https.Agent({ keepAlive: false });
  private readonly client: AxiosInstance;
  /** `timeout` in whole milliseconds (at least 1: the configuration refuses less than 0.001 s). */
  private readonly timeoutMs: number;
  /** `server_url` as branches get it (the `dtm` query parameter): without its credentials. */
  private readonly dtmForBranches: string;

  constructor(private readonly config: DtmConfig) {
    this.timeoutMs = Math.ceil(config.timeout * 1000);
    this.dtmForBranches = withoutCredentials(config.serverUrl);
    this.client = axios.create({
      adapter: 'http',
      // no axios timeout: send() sets the one deadline of each call
      maxContentLength: config.maxAnswerBytes,
      // no `proxy: false` here: it costs axios ~100 µs of CPU per saga even when no proxy variable is
      // set (measured); send() sets it only when one is (see proxyFromEnvironment)
      headers: { 'content-type': 'application/json' },
      httpAgent: this.httpAgent,
      httpsAgent: this.httpsAgent,
      responseType: 'text',
      transformRequest: [(data: unknown) => data],
      transformResponse: [(data: unknown) => data],
      validateStatus: () => true,
      maxRedirects: 0,
    });
  }

  encode(payload: Payload, _target: BranchTarget): EncodedPayload {
    return payloadText(payload);
  }

  checkTarget(target: BranchTarget, gid: string): void {
    if (target.kind === 'grpc') throw new DtmUsageError(MESSAGES.grpcTargetOverHttp(target.value), { gid });
  }

  /**
   * DTM passes any gid to HTTP branches; a branch header it could never send (a name that is not an
   * HTTP token, a line break in a value), and branch headers over {@link HTTP_BRANCH_HEADERS_MAX}
   * together (a Node.js branch would refuse every call, 431), are refused.
   */
  checkTransaction(gid: string, options: ResolvedOptions): void {
    for (const name in options.branchHeaders) {
      if (!HTTP_TOKEN.test(name)) throw new DtmUsageError(MESSAGES.httpHeaderName(name), { gid });
      if (HTTP_VALUE_CONTROL.test(options.branchHeaders[name])) throw new DtmUsageError(MESSAGES.httpHeaderValue(name), { gid });
    }
    const bytes = httpHeaderBytes(options.branchHeaders);
    if (bytes > HTTP_BRANCH_HEADERS_MAX) {
      const tokens = options.branchHeaders[AUTH_HEADER];
      throw new DtmUsageError(MESSAGES.branchHeadersTooLarge(bytes, HTTP_BRANCH_HEADERS_MAX, tokens === undefined ? undefined : httpHeaderBytes({ [AUTH_HEADER]: tokens })), { gid });
    }
  }

  /** A gid from DTM, checked: a server that answers anything but `{"gid": "<1 to 128 safe characters>"}` gives `DtmServerError`. */
  async newGid(): Promise<string> {
    const answer = await this.serverJson<{ gid?: unknown }>('GET', 'newGid', 'newGid');
    if (!isDtmGid(answer.gid)) {
      const endpoint = this.endpointOf('newGid');
      const got = answer.gid === undefined ? 'no gid' : shorten(redactText(JSON.stringify(answer.gid)));
      throw new DtmServerError(MESSAGES.badGidFromDtm(endpoint, got), JSON.stringify(answer), { endpoint, protocol: 'http', status: 200 });
    }
    return answer.gid;
  }

  prepare(request: TransactionRequest): Promise<void> {
    return this.operation('prepare', toWireRequest(request), request.gid);
  }

  submit(request: TransactionRequest): Promise<void> {
    return this.operation('submit', toWireRequest(request), request.gid);
  }

  /**
   * Aborts; an abort sent again after the keep-alive race that DTM refuses because the transaction
   * is already aborting or failed is done (the first one reached DTM), not an abort that failed.
   */
  async abort(request: TransactionRequest): Promise<void> {
    try {
      await this.operation('abort', toWireRequest(request), request.gid);
    } catch (err) {
      const status = wasResent(err) ? refusedForStatus(err)?.status : undefined;
      if (status !== 'aborting' && status !== 'failed') throw err;
    }
  }

  async prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress> {
    const answer = await this.serverJson<WireWorkflowAnswer>('POST', 'prepareWorkflow', 'prepareWorkflow', JSON.stringify(toWireRequest(request)), request.gid, isWorkflowAnswer);
    return fromWireProgress(answer);
  }

  registerBranch(registration: BranchRegistration): Promise<void> {
    return this.operation('registerBranch', toWireRegistration(registration), registration.gid, registration.branchId);
  }

  async query(gid: string, timeoutSeconds?: number): Promise<TransactionRecord | null> {
    const answer = await this.serverJson<WireQueryAnswer>('GET', `query?gid=${encodeURIComponent(gid)}`, 'query', undefined, gid, isQueryAnswer, timeoutSeconds);
    return answer.transaction ? fromWireTransaction(answer.transaction, answer.branches ?? []) : null;
  }

  async list(filter: ListFilter, timeoutSeconds?: number): Promise<ListPage> {
    const query = toWireListQuery(filter);
    const answer = await this.serverJson<WireListAnswer>('GET', `all${query ? `?${query}` : ''}`, 'list', undefined, undefined, isListAnswer, timeoutSeconds);
    return {
      transactions: (answer.transactions ?? []).map((t) => {
        const { branches: _branches, ...record } = fromWireTransaction(t, []);
        return record;
      }),
      nextPosition: answer.next_position || undefined,
    };
  }

  forceStop(gid: string): Promise<void> {
    return this.operation('forceStop', { gid }, gid);
  }

  /**
   * `GET /ping`, `/version` and a read of DTM's store ({@link readStore}) at the same time: each is
   * bounded by `timeout`, so the ping is too (one after the other they took up to twice that).
   */
  async ping(): Promise<PingResult> {
    const started = Date.now();
    const pinged = this.server('GET', new URL('../ping', `${this.config.serverUrl}/`).toString(), undefined, 'ping').then(() => Date.now() - started);
    const [latencyMs, version] = await answersAndStore(Promise.all([pinged, this.version()]), this.readStore());
    return { version, protocol: 'http', latencyMs };
  }

  /**
   * A read of DTM's store that keeps nothing: `/query` of a gid no transaction has. DTM answers
   * `/ping` and `/version` without its store, so a DTM whose database or Redis is down answers
   * them while it can neither keep nor report a transaction.
   */
  async readStore(): Promise<void> {
    try {
      await this.serverJson('GET', `query?gid=${PING_GID}`, 'query', undefined, undefined, isQueryAnswer);
    } catch (err) {
      throw new DtmUnavailableError(MESSAGES.pingStoreFailed(redactUrl(this.config.serverUrl), thrownMessage(err)), {
        endpoint: this.endpointOf('query'),
        protocol: 'http',
        cause: err,
      });
    }
  }

  /** What the server's `/version` answers. */
  async version(): Promise<string> {
    return (await this.serverJson<{ version: string }>('GET', 'version', 'version', undefined, undefined, isVersionAnswer)).version;
  }

  /**
   * Calls an HTTP branch the way DTM's SDKs do: POST (GET without a payload) with `dtm, gid,
   * trans_type, branch_id, op` (and `phase2_url`) in the query (`dtm`: `server_url` without its
   * credentials), and reads its answer with DTM's own
   * rules: 425 or a body containing ONGOING → {@link DtmOngoingError}; 409 or a body containing
   * FAILURE → {@link DtmFailureError} (the body is the reason); any other status but 200 → {@link DtmServerError}.
   */
  async callBranch(call: DirectBranchCall): Promise<BranchAnswer> {
    const url = new URL(call.target.value);
    const query = url.searchParams;
    // the server's address without its credentials (server_url of a DTM behind basic auth): the branch is not DTM's proxy
    query.set('dtm', this.dtmForBranches);
    query.set('gid', call.gid);
    query.set('branch_id', call.branchId);
    query.set('trans_type', call.transType);
    query.set('op', call.op);
    if (call.phase2Target !== undefined) query.set('phase2_url', call.phase2Target);
    const endpoint = redactUrl(call.target.value);
    const body = call.payload === undefined ? undefined : (call.payload as string);
    let answer: { status: number; text: string };
    try {
      answer = await this.send({ method: body === undefined ? 'GET' : 'POST', url: url.toString(), body, headers: call.headers, timeoutSeconds: call.timeoutSeconds });
    } catch (err) {
      // a 409 is FAILURE, a 425 ONGOING, whatever the body (DTM reads them so): one too large to read is still that, its text unread
      const status = isTooLarge(err) ? (err as { answerStatus?: number }).answerStatus : undefined;
      if (status === 409) {
        const reason = MESSAGES.branchFailureTooLarge(endpoint, this.config.maxAnswerBytes);
        throw new DtmFailureError(reason, { gid: call.gid, branchId: call.branchId, endpoint, protocol: 'http', status });
      }
      if (status === 425) throw new DtmOngoingError(MESSAGES.branchOngoingTooLarge(endpoint, this.config.maxAnswerBytes), { gid: call.gid, branchId: call.branchId, endpoint, protocol: 'http', status });
      throw requestError(err, UNANSWERED.branch, endpoint, call.timeoutSeconds, this.config.maxAnswerBytes, { gid: call.gid, branchId: call.branchId });
    }
    const context: DtmErrorContext = { gid: call.gid, branchId: call.branchId, endpoint, protocol: 'http', status: answer.status };
    // a workflow's own calls (its steps, their phase 2) are read as DTM's Go workflow SDK reads them: by the status alone
    switch (call.transType === 'workflow' ? readWorkflowAnswer(answer.status) : readBranchAnswer(answer.status, answer.text)) {
      case 'ONGOING':
        throw new DtmOngoingError(MESSAGES.branchOngoing(endpoint, `HTTP ${answer.status}`, answerMessage(answer.text)), context);
      case 'FAILURE':
        throw new DtmFailureError(answer.text ? answerMessage(answer.text) : 'FAILURE', { ...context, raw: answer.text || 'FAILURE' });
      case 'ERROR':
        throw new DtmServerError(MESSAGES.branchStatus(endpoint, answer.status, redactText(answer.text)), answer.text, context);
    }
    return { body: parseAnswer(answer.text), raw: Buffer.from(answer.text, 'utf8') };
  }

  /**
   * Closes the idle keep-alive connections, and every other one as soon as its call is answered:
   * a call under way is not cut (Nest closes the module before its HTTP server, whose requests may
   * still be running transactions), and a call made after close keeps no connection open.
   */
  close(): void {
    for (const agent of [this.httpAgent, this.httpsAgent, this.freshHttpAgent, this.freshHttpsAgent]) {
      // Node's agent destroys a socket freed while its pool allows no free one
      agent.maxFreeSockets = 0;
      for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
    }
  }

  /**
   * An operation on a transaction (prepare, submit, abort, registerBranch, ...): a 200 whose body
   * says FAILURE is a failure too (DTM's SDKs read operation answers that way).
   */
  private async operation(path: string, body: object, gid: string, branchId?: string): Promise<void> {
    await this.server('POST', path, JSON.stringify(body), path, gid, branchId, true);
  }

  /**
   * Calls `<server_url>/<path>` (or `path` itself when it is an absolute URL) and returns the body
   * text. 200 → the body; 409 → {@link DtmFailureError}; 425 → {@link DtmOngoingError}; other
   * statuses → {@link DtmServerError} (DTM's definite 500 refusals, see `definiteServerRefusal`, with
   * their cause and fix); no answer within `timeoutSeconds` (else `timeout`) → {@link DtmUnavailableError}.
   */
  private async server(method: 'GET' | 'POST', path: string, body: string | undefined, operation: string, gid?: string, branchId?: string, scanFailure = false, timeoutSeconds?: number): Promise<string> {
    const url = this.urlOf(path);
    let answer: { status: number; text: string; resent?: boolean };
    try {
      answer = await this.send({ method, url, body, resend: method === 'GET' || RESENT_OPERATIONS.has(operation), timeoutSeconds });
    } catch (err) {
      const endpoint = redactUrl(url);
      throw requestError(err, UNANSWERED.dtm, endpoint, timeoutSeconds ?? this.config.timeout, this.config.maxAnswerBytes, { gid, branchId });
    }
    if (answer.status === 200 && !(scanFailure && answer.text.includes('FAILURE'))) return answer.text;
    // what follows runs only when DTM refused: the endpoint's redacted name is made only then
    const endpoint = redactUrl(url);
    const context: DtmErrorContext = { gid, branchId, endpoint, protocol: 'http', status: answer.status };
    if (answer.status === 200 || answer.status === 409) {
      const failure = new DtmFailureError(MESSAGES.failureFromDtm(operation, gid ?? '?', messageOf(answer.text)), context);
      if (answer.resent) markResent(failure);
      throw failure;
    }
    if (answer.status === 425) throw new DtmOngoingError(messageOf(answer.text), context);
    const refused = answer.status === 500 ? definiteServerRefusal(answer.text) : undefined;
    if (refused) throw new DtmServerError(MESSAGES.dtmRefusedDefinitely(operation, gid ?? '?', refused.cause, refused.fix, redactText(answer.text)), answer.text, context);
    throw new DtmServerError(MESSAGES.serverStatus(endpoint, answer.status, redactText(answer.text)), answer.text, context);
  }

  /**
   * {@link server} for a JSON answer: a 200 whose body is not a JSON object (or fails `valid`, a
   * check of its shape) gives `DtmServerError` instead of a `SyntaxError` or a `TypeError` later.
   */
  private async serverJson<T extends object>(
    method: 'GET' | 'POST',
    path: string,
    operation: string,
    body?: string,
    gid?: string,
    valid: (answer: Record<string, unknown>) => boolean = isRecord,
    timeoutSeconds?: number,
  ): Promise<T> {
    const text = await this.server(method, path, body, operation, gid, undefined, false, timeoutSeconds);
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = undefined;
    }
    if (isRecord(answer) && valid(answer)) return answer as T;
    const endpoint = this.endpointOf(path);
    throw new DtmServerError(MESSAGES.answerNotDtm(endpoint, operation, describeAnswer(text)), text, { gid, endpoint, protocol: 'http', status: 200 });
  }

  /** `<server_url>/<path>`, or `path` itself when it is an absolute URL. */
  private urlOf(path: string): string {
    return /^https?:\/\//.test(path) ? path : `${this.config.serverUrl}/${path}`;
  }

  /** The URL of `path` as errors show it: credentials redacted. */
  private endpointOf(path: string): string {
    return redactUrl(this.urlOf(path));
  }

  /**
   * One request within its deadline (`timeout`, or the branch's `timeoutSeconds`) for the whole
   * call: past it the call is aborted and rejects with code `ETIMEDOUT` (and `connected`: whether
   * the peer had accepted the connection); otherwise it rejects as
   * axios does when there is no full answer (the caller makes either a {@link requestError}). The
   * instance sends JSON, so most calls pass only method, URL and body.
   *
   * A call sent on a pooled keep-alive connection that the peer closed just then (Node's
   * keep-alive race: the peer's idle timeout passes as the request goes out) fails with
   * ECONNRESET / EPIPE before any byte of an answer. Such a call is sent once more, on a new
   * connection, within what is left of the deadline. Usually the peer had not read it, but a reset
   * before the answer can also come after the peer acted on it (a proxy or a DTM instance dying
   * after its commit): so only calls that may be taken twice are sent again (`send.resend`): branch
   * calls (a branch must take a repeated call, DTM retries them itself), DTM's queries, and the
   * operations of {@link RESENT_OPERATIONS}; an answer to a resent call says so (`resent`).
   */
  private async send(send: Send): Promise<{ status: number; text: string; resent?: boolean }> {
    const ms = send.timeoutSeconds === undefined ? this.timeoutMs : send.timeoutSeconds * 1000;
    const started = Date.now();
    const first: Deadline = { ms, passed: false };
    try {
      return await this.attempt(send, first, false);
    } catch (err) {
      const left = ms - (Date.now() - started);
      if (send.resend === false || !pooledConnectionClosed(err, first) || left < 1) throw err;
      try {
        return { ...(await this.attempt(send, { ms: left, passed: false }, true)), resent: true };
      } catch (again) {
        // the peer may have read the first request before it reset the connection: an error saying
        // the retry never got a connection (nothing sent) would hide that, so the reset is reported
        throw sentNothing(again) ? err : again;
      }
    }
  }

  /** One attempt of {@link send} within `deadline`, on a pooled connection or (`fresh`) a new one. */
  private async attempt(send: Send, deadline: Deadline, fresh: boolean): Promise<{ status: number; text: string }> {
    try {
      const request: AxiosRequestConfig =
        send.timeoutSeconds === undefined
          ? { method: send.method, url: send.url, data: send.body, transport: deadlineTransport(deadline) }
          : { method: send.method, url: send.url, data: send.body, headers: send.headers, transport: deadlineTransport(deadline) };
      if (proxyFromEnvironment()) request.proxy = false;
      if (fresh) {
        request.httpAgent = this.freshHttpAgent;
        request.httpsAgent = this.freshHttpsAgent;
      }
      const res = await this.client.request<string>(request);
      return { status: res.status, text: typeof res.data === 'string' ? res.data : String(res.data ?? '') };
    } catch (err) {
      if (deadline.passed) {
        const what = deadline.connected ? 'no complete answer' : 'no connection';
        throw Object.assign(new Error(`${what} within ${deadline.ms} ms`), { code: 'ETIMEDOUT', connected: deadline.connected });
      }
      // an answer over max_answer_bytes: axios keeps none of it, its status is the request's
      if (isTooLarge(err)) Object.assign(err as object, { answerStatus: (deadline.request as { res?: http.IncomingMessage } | undefined)?.res?.statusCode });
      throw err;
    }
  }
}

/** Whether a failed attempt never had a connection (refused, no address, or its deadline passed while connecting): it sent nothing. */
function sentNothing(err: unknown): boolean {
  const { code, connected } = (err ?? {}) as { code?: unknown; connected?: unknown };
  return connected === false || (typeof code === 'string' && NOT_SENT.test(code));
}

/**
 * Whether a call failed because the pooled keep-alive connection it was sent on had been closed
 * by the peer: the connection was reused, it was reset or broken (ECONNRESET, EPIPE), and no byte
 * of an answer had come.
 */
function pooledConnectionClosed(err: unknown, deadline: Deadline): boolean {
  const req = deadline.request;
  if (req === undefined || req.reusedSocket !== true || (req as { res?: unknown }).res) return false;
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * Whether the environment names a proxy axios would use (the variables its `proxy-from-env` reads,
 * in either case): then the call is made with `proxy: false`, so it goes straight to its URL.
 */
function proxyFromEnvironment(): boolean {
  const env = process.env;
  return !!(env.http_proxy || env.HTTP_PROXY || env.https_proxy || env.HTTPS_PROXY || env.all_proxy || env.ALL_PROXY);
}

/** The deadline of one call, whether it passed, whether the peer had accepted the connection then, and the call's request. */
interface Deadline {
  ms: number;
  passed: boolean;
  connected?: boolean;
  request?: http.ClientRequest;
}

/**
 * The transport axios makes the call's request with: node's own, plus one timer from the request's
 * creation to its close (the answer read, or the connection gone) that destroys it when `deadline`
 * passes, whatever phase it is in (connecting, waiting, reading a body a peer drips). Cheaper than
 * an AbortController per call (EventTarget listeners: ~60-100 µs of CPU per call in axios, measured).
 */
function deadlineTransport(deadline: Deadline): { request: typeof http.request } {
  return {
    request: ((options: http.RequestOptions, callback?: (res: http.IncomingMessage) => void) => {
      const req = (options.protocol === 'https:' ? https : http).request(options, callback);
      deadline.request = req;
      const timer = setTimeout(() => {
        deadline.passed = true;
        deadline.connected = req.socket?.connecting === false;
        req.destroy(Object.assign(new Error(`no complete answer within ${deadline.ms} ms`), { code: 'ETIMEDOUT' }));
      }, deadline.ms);
      req.once('close', () => clearTimeout(timer));
      return req;
    }) as typeof http.request,
  };
}

/** The errors of answers over `maxAnswerBytes` (see {@link isAnswerTooLarge}). */
const tooLargeAnswers = new WeakSet<object>();

/** Whether `err` is the module's refusal of an HTTP answer over `max_answer_bytes` (left unread). */
export function isAnswerTooLarge(err: unknown): boolean {
  return typeof err === 'object' && err !== null && tooLargeAnswers.has(err);
}

/**
 * A request to `endpoint` that got no full answer (`err`, from axios), with `messages` for its
 * peer (DTM or a branch) and the call's `timeoutSeconds`: an answer over `maxAnswerBytes` as a
 * {@link DtmServerError}, anything else (no connection, the deadline passed, an answer broken off) as a
 * {@link DtmUnavailableError}: "no complete answer" when the deadline passed on a connection the
 * peer had accepted, "broke off" when the peer's answer began (its status read) and the connection
 * broke before its end (the peer got the request), else "could not reach" with the cause's code or message. A deadline that
 * passed before the connection was made leaves `connected: false` on the error's cause: nothing
 * was sent (`mayHaveReachedDtm`, dtm-transient.ts).
 */
function requestError(
  err: unknown,
  messages: UnansweredMessages,
  endpoint: string,
  timeoutSeconds: number,
  maxAnswerBytes: number,
  ids: Pick<DtmErrorContext, 'gid' | 'branchId'>,
): DtmServerError | DtmUnavailableError {
  const context: DtmErrorContext = { ...ids, endpoint, protocol: 'http', cause: safeCause(err) };
  if (isTooLarge(err)) {
    const tooLarge = new DtmServerError(messages.tooLarge(endpoint, maxAnswerBytes), '', { ...context, status: err.response?.status });
    tooLargeAnswers.add(tooLarge);
    return tooLarge;
  }
  const connected = (err as { connected?: unknown } | undefined)?.connected;
  if (connected === true) return new DtmUnavailableError(messages.noAnswer(endpoint, timeoutSeconds), context);
  // the peer began its answer (status line and headers read), then the connection broke: it got the request
  if (axios.isAxiosError(err) && err.response !== undefined) return new DtmUnavailableError(messages.cut(endpoint, err.response.status, err.code ?? err.message), context);
  if (connected === false) {
    return new DtmUnavailableError(messages.unavailable(endpoint, 'ETIMEDOUT, no connection', timeoutSeconds), { ...context, cause: Object.assign(context.cause as Error, { connected: false }) });
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  const cause = typeof code === 'string' ? code : thrownMessage(err);
  return new DtmUnavailableError(messages.unavailable(endpoint, redactText(cause), timeoutSeconds), context);
}

/** Whether axios gave up reading an answer for its size (over `maxContentLength`, which is `max_answer_bytes`). */
function isTooLarge(err: unknown): err is AxiosError {
  return axios.isAxiosError(err) && err.code === 'ERR_BAD_RESPONSE' && err.message.startsWith('maxContentLength size of');
}

/** An answer's text as an error message shows it: URLs' credentials redacted, at most 200 characters. */
function describeAnswer(text: string): string {
  return text === '' ? 'an empty body' : JSON.stringify(shorten(redactText(text)));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRecordOrNull(value: unknown): boolean {
  return value === undefined || value === null || isRecord(value);
}

/** A list of objects, or nothing (DTM answers `null` for an empty list). */
function isRecordList(value: unknown): boolean {
  return value === undefined || value === null || (Array.isArray(value) && value.every(isRecord));
}

/** An HTTP header name (RFC 9110 token). */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What no HTTP header value may hold: control characters other than tab (CR and LF above all). */
const HTTP_VALUE_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/** The gid the ping's read of DTM's store asks for: none of DTM's (22 characters of base62-ish) nor the module's. */
const PING_GID = 'nestjs-dtm-ping-store-read';

/**
 * What `answers` (DTM's ping and version) give, once `store` (the read of its store, started at the
 * same time) ended too: their error first (DTM not reached at all), else the store's.
 */
export async function answersAndStore<T>(answers: Promise<T>, store: Promise<void>): Promise<T> {
  const [answered, stored] = await Promise.allSettled([answers, store]);
  if (answered.status === 'rejected') throw answered.reason;
  if (stored.status === 'rejected') throw stored.reason;
  return answered.value;
}

/** The shapes of DTM's JSON answers, checked before the wire mapping reads them. */
const isQueryAnswer = (a: Record<string, unknown>) => isRecordOrNull(a.transaction) && isRecordList(a.branches);
const isListAnswer = (a: Record<string, unknown>) => isRecordList(a.transactions);
const isWorkflowAnswer = (a: Record<string, unknown>) => isRecordOrNull(a.transaction) && isRecordList(a.progresses);
const isVersionAnswer = (a: Record<string, unknown>) => typeof a.version === 'string';

/** DTM's error answers are `{"message": "..."}` (plus `dtm_result` on 409/425). */
function messageOf(text: string): string {
  const body = parseAnswer(text);
  if (body && typeof body === 'object' && 'message' in body && typeof (body as { message: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return text;
}
