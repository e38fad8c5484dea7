import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance, type Method } from 'axios';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import type { BranchAnswer } from './dtm-client.types.js';
import { redactUrl, safeCause } from './redact.js';

/** Context of one call, carried into errors. */
export interface CallContext {
  gid?: string;
  branchId?: string;
}

/** Context of a call to the DTM server: `operation` names it in error messages. */
export interface ServerCallContext extends CallContext {
  operation?: string;
}

/** A call the module makes to a branch itself (TCC try, XA action, msg back-check). */
export interface BranchCall extends CallContext {
  method: 'GET' | 'POST';
  url: string;
  query: Record<string, string>;
  headers?: Record<string, string>;
  /** Already encoded; omitted for GET. */
  body?: string;
  timeoutSeconds: number;
}

/**
 * The HTTP conversation with the DTM server and with branches, through one axios instance with
 * keep-alive agents. Bodies go out and come back as text, so payloads pass verbatim.
 */
export class DtmHttp {
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

  /**
   * Calls `<server_url>/<path>` (or `path` itself when it is an absolute URL) and returns the parsed
   * body. 200 → the body; 409 → {@link DtmFailureError}; 425 → {@link DtmOngoingError}; other
   * statuses → {@link DtmServerError}; no answer within `timeout` → {@link DtmUnavailableError}.
   */
  async server<T>(method: 'GET' | 'POST', path: string, body: unknown, context: ServerCallContext = {}): Promise<T> {
    return parseBody(await this.serverText(method, path, body, context)) as T;
  }

  /**
   * An operation on a transaction (prepare, submit, abort, registerBranch, ...): like {@link server},
   * but a 200 whose body says FAILURE is a failure too (DTM's SDKs read operation answers that way),
   * and the body is not needed.
   */
  async operation(path: string, body: unknown, context: ServerCallContext = {}): Promise<void> {
    await this.serverText('POST', path, body, context, true);
  }

  private async serverText(method: 'GET' | 'POST', path: string, body: unknown, context: ServerCallContext, scanFailure = false): Promise<string> {
    const url = /^https?:\/\//.test(path) ? path : `${this.config.serverUrl}/${path}`;
    const answer = await this.send(method, url, body === undefined ? undefined : JSON.stringify(body), undefined, context, (cause) =>
      MESSAGES.unavailable(redactUrl(url), cause, this.config.timeout),
    );
    if (answer.status === 200 && !(scanFailure && answer.text.includes('FAILURE'))) return answer.text;
    const operation = context.operation ?? path;
    const errorContext = { gid: context.gid, branchId: context.branchId, status: answer.status };
    if (answer.status === 200 || answer.status === 409) {
      throw new DtmFailureError(MESSAGES.failureFromDtm(operation, context.gid ?? '?', messageOf(answer.text)), errorContext);
    }
    if (answer.status === 425) throw new DtmOngoingError(messageOf(answer.text), errorContext);
    throw new DtmServerError(MESSAGES.serverStatus(redactUrl(url), answer.status, answer.text), redactUrl(url), answer.text, errorContext);
  }

  /**
   * Calls a branch and reads its answer with DTM's own rules: 425 or a body containing ONGOING →
   * {@link DtmOngoingError}; 409 or a body containing FAILURE → {@link DtmFailureError} (the body is
   * the reason); any other status but 200 → {@link DtmServerError}.
   */
  async branch(call: BranchCall): Promise<BranchAnswer> {
    const target = new URL(call.url);
    for (const [k, v] of Object.entries(call.query)) target.searchParams.set(k, v);
    const url = target.toString();
    const answer = await this.send(call.method, url, call.body, { headers: call.headers, timeoutSeconds: call.timeoutSeconds }, call, (cause) =>
      MESSAGES.branchUnavailable(redactUrl(call.url), cause, call.timeoutSeconds),
    );
    const context = { gid: call.gid, branchId: call.branchId, status: answer.status };
    if (answer.status === 425 || answer.text.includes('ONGOING')) throw new DtmOngoingError(answer.text || 'ONGOING', context);
    if (answer.status === 409 || answer.text.includes('FAILURE')) throw new DtmFailureError(answer.text || 'FAILURE', context);
    if (answer.status !== 200) {
      throw new DtmServerError(MESSAGES.branchStatus(redactUrl(call.url), answer.status, answer.text), redactUrl(call.url), answer.text, context);
    }
    return { status: answer.status, body: parseBody(answer.text), text: answer.text };
  }

  /** Closes the keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /** One request; the instance already has the DTM timeout and sends JSON, so most calls pass only method, URL and body. */
  private async send(
    method: Method,
    url: string,
    body: string | undefined,
    branch: { headers?: Record<string, string>; timeoutSeconds: number } | undefined,
    context: CallContext,
    unavailable: (cause: string) => string,
  ): Promise<{ status: number; text: string }> {
    try {
      const res = await this.client.request<string>(
        branch
          ? { method, url, data: body, timeout: branch.timeoutSeconds * 1000, headers: branch.headers }
          : { method, url, data: body },
      );
      return { status: res.status, text: typeof res.data === 'string' ? res.data : String(res.data ?? '') };
    } catch (err) {
      const cause = axios.isAxiosError(err) ? (err.code ?? err.message) : err instanceof Error ? err.message : String(err);
      throw new DtmUnavailableError(unavailable(cause), redactUrl(url), { gid: context.gid, branchId: context.branchId, cause: safeCause(err) });
    }
  }
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** DTM's error answers are `{"message": "..."}` (plus `dtm_result` on 409/425). */
function messageOf(text: string): string {
  const body = parseBody(text);
  if (body && typeof body === 'object' && 'message' in body && typeof (body as { message: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return text;
}
