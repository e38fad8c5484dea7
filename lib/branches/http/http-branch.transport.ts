import { HttpException, type ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { payloadDigest } from '../../auth/branch-auth.js';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import type { BranchCarrier, BranchTransport } from '../branch-transport.js';
import { type BranchInfo } from '../../transport/dtm.types.js';
import { REQUIRED_BRANCH_QUERY } from '../branch.types.js';

type Query = Record<string, unknown> | undefined;
type Request = { query?: Query; headers?: Record<string, string | string[] | undefined>; originalUrl?: string; url?: string; rawBody?: unknown; body?: unknown };

/** Whether a branch call's query lacks `key`: `gid`, `trans_type` and `op` must be non-empty strings, `branch_id` a string. */
function lacks(query: Query, key: (typeof REQUIRED_BRANCH_QUERY)[number]): boolean {
  const value = query?.[key];
  return typeof value !== 'string' || (value === '' && key !== 'branch_id');
}

/** DTM's branch protocol over HTTP: the call in the query string (`gid, trans_type, branch_id, op, dtm, phase2_url`), the outcome as a status. */
export const httpBranchTransport: BranchTransport = {
  protocol: 'http',

  carrier(context: ArgumentsHost): BranchCarrier {
    return context.switchToHttp().getRequest<object>();
  },

  completeOp(carrier: BranchCarrier): string | undefined {
    const query = (carrier as Request).query;
    return lacks(query, 'gid') || lacks(query, 'trans_type') || lacks(query, 'branch_id') || lacks(query, 'op') ? undefined : (query!.op as string);
  },

  transType(carrier: BranchCarrier): string {
    return String((carrier as Request).query?.trans_type ?? '');
  },

  gid(carrier: BranchCarrier): string {
    return String((carrier as Request).query?.gid ?? '');
  },

  branchId(carrier: BranchCarrier): string {
    return String((carrier as Request).query?.branch_id ?? '');
  },

  missing(carrier: BranchCarrier): string[] {
    const query = (carrier as Request).query;
    return REQUIRED_BRANCH_QUERY.filter((key) => lacks(query, key));
  },

  branchInfo(carrier: BranchCarrier, headers: Record<string, string>): BranchInfo | undefined {
    const query = (carrier as Request).query;
    if (!this.completeOp(carrier)) return undefined;
    const get = (key: string) => (typeof query![key] === 'string' ? (query![key] as string) : '');
    return { gid: get('gid'), transType: get('trans_type'), branchId: get('branch_id'), op: get('op'), dtm: get('dtm') || undefined, phase2Url: get('phase2_url') || undefined, headers };
  },

  header(carrier: BranchCarrier, name: string): string | undefined {
    const value = (carrier as Request).headers?.[name];
    return typeof value === 'string' ? value : undefined;
  },

  path(carrier: BranchCarrier): string {
    const url = (carrier as Request).originalUrl ?? (carrier as Request).url ?? '';
    const q = url.indexOf('?');
    return q < 0 ? url : url.slice(0, q);
  },

  payload(_context: ArgumentsHost, carrier: BranchCarrier): unknown {
    return (carrier as Request).body;
  },

  /** The raw body the module's reader kept; else (another parser read it) the parsed body re-encoded as JSON. */
  bodyDigest(_context: ArgumentsHost, carrier: BranchCarrier): string | undefined {
    const { rawBody, body } = carrier as Request;
    if (Buffer.isBuffer(rawBody)) return payloadDigest(rawBody);
    if (body === undefined || body === null || body === '') return payloadDigest(undefined);
    if (typeof body === 'string' || Buffer.isBuffer(body)) return payloadDigest(body);
    if (typeof body === 'object' && Object.keys(body).length === 0) return payloadDigest(undefined); // no body: parsers leave {}
    return payloadDigest(JSON.stringify(body));
  },

  /**
   * `DtmFailureError` → 409 with a body DTM reads as FAILURE (the reason in it), `DtmOngoingError` →
   * 425 (ONGOING), an HttpException → its own status and body, anything else → 500 with a generic
   * body (DTM retries with backoff; the error's text is not sent, because DTM would read a FAILURE
   * or ONGOING in it as that result).
   */
  answer(exception: unknown, host: ArgumentsHost, adapterHost: HttpAdapterHost | undefined): unknown {
    const [status, body] =
      exception instanceof DtmFailureError
        ? [409, { dtm_result: 'FAILURE', message: exception.reason }]
        : exception instanceof DtmOngoingError
          ? [425, { dtm_result: 'ONGOING', message: exception.message }]
          : exception instanceof HttpException
            ? [exception.getStatus(), exception.getResponse()]
            : [500, { statusCode: 500, message: 'Internal server error' }];
    adapterHost!.httpAdapter.reply(host.switchToHttp().getResponse(), body, status);
    return undefined;
  },
};
