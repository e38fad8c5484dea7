import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance } from 'axios';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { MESSAGES } from '../../dtm.messages.js';
import type { DtmErrorContext } from '../../errors/dtm-error.js';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import { DtmServerError } from '../../errors/dtm-server.error.js';
import { DtmUnavailableError } from '../../errors/dtm-unavailable.error.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import type { BranchTarget } from '../branch-target.js';
import type { BranchAnswer, ListFilter, ListPage, Payload, PingResult, TransactionRecord } from '../dtm.types.js';
import type { BranchRegistration, DirectBranchCall, DtmTransport, EncodedPayload, TransactionRequest, WorkflowProgress } from '../dtm-transport.js';
import { parseAnswer, payloadText } from '../payload.js';
import { redactUrl, safeCause } from '../../redact.js';
import { fromWireProgress, fromWireTransaction, toWireListQuery, toWireRegistration, toWireRequest } from './http-wire.js';
import type { WireListAnswer, WireQueryAnswer, WireWorkflowAnswer } from './http-wire.types.js';

/** What one request carries besides its URL: the body (text), and for a branch its headers and timeout. */
interface Send {
  method: 'GET' | 'POST';
  url: string;
  body?: string;
  headers?: Record<string, string>;
  timeoutSeconds?: number;
}

/**
 * DTM's HTTP API and HTTP branches, through one axios instance with keep-alive agents. Bodies go
 * out and come back as text, so payloads pass verbatim. Also the HTTP half of the gRPC transport:
 * DTM's query, list and forceStop exist only over HTTP, and HTTP branches are called over HTTP in a
 * gRPC transaction too.
 */
export class HttpTransport implements DtmTransport {
  readonly protocol = 'http' as const;
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });
  private readonly client: AxiosInstance;

  constructor(private readonly config: DtmConfig) {
    this.client = axios.create({
      adapter: 'http',
      timeout: config.timeout * 1000,
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

  checkTransaction(): void {
    // DTM passes any gid and header value to HTTP branches
  }

  async newGid(): Promise<string> {
    return (JSON.parse(await this.server('GET', 'newGid', undefined, 'newGid')) as { gid: string }).gid;
  }

  prepare(request: TransactionRequest): Promise<void> {
    return this.operation('prepare', toWireRequest(request), request.gid);
  }

  submit(request: TransactionRequest): Promise<void> {
    return this.operation('submit', toWireRequest(request), request.gid);
  }

  abort(request: TransactionRequest): Promise<void> {
    return this.operation('abort', toWireRequest(request), request.gid);
  }

  async prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress> {
    const text = await this.server('POST', 'prepareWorkflow', JSON.stringify(toWireRequest(request)), 'prepareWorkflow', request.gid);
    return fromWireProgress(JSON.parse(text) as WireWorkflowAnswer);
  }

  registerBranch(registration: BranchRegistration): Promise<void> {
    return this.operation('registerBranch', toWireRegistration(registration), registration.gid, registration.branchId);
  }

  async query(gid: string): Promise<TransactionRecord | null> {
    const answer = JSON.parse(await this.server('GET', `query?gid=${encodeURIComponent(gid)}`, undefined, 'query', gid)) as WireQueryAnswer;
    return answer.transaction ? fromWireTransaction(answer.transaction, answer.branches ?? []) : null;
  }

  async list(filter: ListFilter): Promise<ListPage> {
    const query = toWireListQuery(filter);
    const answer = JSON.parse(await this.server('GET', `all${query ? `?${query}` : ''}`, undefined, 'list')) as WireListAnswer;
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

  async ping(): Promise<PingResult> {
    const started = Date.now();
    await this.server('GET', new URL('../ping', `${this.config.serverUrl}/`).toString(), undefined, 'ping');
    const latencyMs = Date.now() - started;
    return { version: await this.version(), protocol: 'http', latencyMs };
  }

  /** What the server's `/version` answers. */
  async version(): Promise<string> {
    return (JSON.parse(await this.server('GET', 'version', undefined, 'version')) as { version: string }).version;
  }

  /**
   * Calls an HTTP branch the way DTM's SDKs do: POST (GET without a payload) with `dtm, gid,
   * trans_type, branch_id, op` (and `phase2_url`) in the query, and reads its answer with DTM's own
   * rules: 425 or a body containing ONGOING → {@link DtmOngoingError}; 409 or a body containing
   * FAILURE → {@link DtmFailureError} (the body is the reason); any other status but 200 → {@link DtmServerError}.
   */
  async callBranch(call: DirectBranchCall): Promise<BranchAnswer> {
    const url = new URL(call.target.value);
    const query = url.searchParams;
    query.set('dtm', this.config.serverUrl);
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
      throw unavailableError(err, (cause) => MESSAGES.branchUnavailable(endpoint, cause, call.timeoutSeconds), { gid: call.gid, branchId: call.branchId, endpoint });
    }
    const context: DtmErrorContext = { gid: call.gid, branchId: call.branchId, endpoint, protocol: 'http', status: answer.status };
    if (answer.status === 425 || answer.text.includes('ONGOING')) throw new DtmOngoingError(answer.text || 'ONGOING', context);
    if (answer.status === 409 || answer.text.includes('FAILURE')) throw new DtmFailureError(answer.text || 'FAILURE', context);
    if (answer.status !== 200) throw new DtmServerError(MESSAGES.branchStatus(endpoint, answer.status, answer.text), answer.text, context);
    return { body: parseAnswer(answer.text), raw: Buffer.from(answer.text, 'utf8') };
  }

  /** Closes the keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
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
   * statuses → {@link DtmServerError}; no answer within `timeout` → {@link DtmUnavailableError}.
   */
  private async server(method: 'GET' | 'POST', path: string, body: string | undefined, operation: string, gid?: string, branchId?: string, scanFailure = false): Promise<string> {
    const url = /^https?:\/\//.test(path) ? path : `${this.config.serverUrl}/${path}`;
    let answer: { status: number; text: string };
    try {
      answer = await this.send({ method, url, body });
    } catch (err) {
      const endpoint = redactUrl(url);
      throw unavailableError(err, (cause) => MESSAGES.unavailable(endpoint, cause, this.config.timeout), { gid, branchId, endpoint });
    }
    if (answer.status === 200 && !(scanFailure && answer.text.includes('FAILURE'))) return answer.text;
    // what follows runs only when DTM refused: the endpoint's redacted name is made only then
    const endpoint = redactUrl(url);
    const context: DtmErrorContext = { gid, branchId, endpoint, protocol: 'http', status: answer.status };
    if (answer.status === 200 || answer.status === 409) throw new DtmFailureError(MESSAGES.failureFromDtm(operation, gid ?? '?', messageOf(answer.text)), context);
    if (answer.status === 425) throw new DtmOngoingError(messageOf(answer.text), context);
    throw new DtmServerError(MESSAGES.serverStatus(endpoint, answer.status, answer.text), answer.text, context);
  }

  /**
   * One request, which rejects as axios does when there is no answer (the caller makes that a
   * {@link unavailableError}); the instance already has the DTM timeout and sends JSON, so most
   * calls pass only method, URL and body.
   */
  private async send(send: Send): Promise<{ status: number; text: string }> {
    const res = await this.client.request<string>(
      send.timeoutSeconds === undefined
        ? { method: send.method, url: send.url, data: send.body }
        : { method: send.method, url: send.url, data: send.body, timeout: send.timeoutSeconds * 1000, headers: send.headers },
    );
    return { status: res.status, text: typeof res.data === 'string' ? res.data : String(res.data ?? '') };
  }
}

/** A request that got no answer (`err`, from axios) as a {@link DtmUnavailableError}: `message` from the cause's code or message. */
function unavailableError(err: unknown, message: (cause: string) => string, context: DtmErrorContext): DtmUnavailableError {
  const cause = axios.isAxiosError(err) ? (err.code ?? err.message) : err instanceof Error ? err.message : String(err);
  return new DtmUnavailableError(message(cause), { ...context, protocol: 'http', cause: safeCause(err) });
}

/** DTM's error answers are `{"message": "..."}` (plus `dtm_result` on 409/425). */
function messageOf(text: string): string {
  const body = parseAnswer(text);
  if (body && typeof body === 'object' && 'message' in body && typeof (body as { message: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return text;
}
