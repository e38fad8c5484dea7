// The participant side's transport seam: what differs between a branch call that arrives over HTTP
// and one that arrives over gRPC. The guard, the filter, @BranchContext() and the handler binding
// speak only this; http/ and grpc/ implement it.
import type { ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import type { DtmProtocol } from '../errors/dtm-error.js';
import type { BranchInfo } from '../transport/dtm.types.js';

/** The per-call object a transport keeps the call's state on: the HTTP request, or the gRPC call. */
export type BranchCarrier = object;

/** One transport's side of serving a DTM branch call. */
export interface BranchTransport {
  readonly protocol: DtmProtocol;
  /** The per-call object of `context` (HTTP: the request; gRPC: the call). */
  carrier(context: ArgumentsHost): BranchCarrier;
  /** The call's op when it carries every key of a DTM branch call; checked on every call, so it allocates nothing. */
  completeOp(carrier: BranchCarrier): string | undefined;
  /** The call's `trans_type` (read once `completeOp` found every key; checked on every call, so it allocates nothing). */
  transType(carrier: BranchCarrier): string;
  /** The call's gid (read once `completeOp` found every key). */
  gid(carrier: BranchCarrier): string;
  /** The call's branch id (read once `completeOp` found every key). */
  branchId(carrier: BranchCarrier): string;
  /** The keys of a DTM branch call that the call lacks (for the message that names them). */
  missing(carrier: BranchCarrier): string[];
  /** The DTM branch call `carrier` carries (with the allow-listed headers of the call), or undefined when a key is missing. */
  branchInfo(carrier: BranchCarrier, headers: Record<string, string>): BranchInfo | undefined;
  /** The call's single value of header (gRPC: metadata key) `name`, lower-case; undefined when absent or repeated. */
  header(carrier: BranchCarrier, name: string): string | undefined;
  /** The target the call was made to as a branch-call token names it (HTTP: the URL's path and its query but DTM's keys, see `signedQuery`; gRPC: `/package.Service/Method`). */
  path(carrier: BranchCarrier): string;
  /** The body as it arrived (text or bytes; '' when there was none), or undefined when the raw body is not available. */
  rawBody(context: ArgumentsHost, carrier: BranchCarrier): string | Uint8Array | undefined;
  /** The call's payload as the handler receives it (HTTP: the parsed body; gRPC: the decoded request message). */
  payload(context: ArgumentsHost, carrier: BranchCarrier): unknown;
  /** The text DTM receives as this transport's FAILURE answer with `reason` (what DTM quotes in a saga's rollback reason): HTTP the 409's body, gRPC the ABORTED's message. */
  failureText(reason: string): string;
  /**
   * The exception Nest's own exception handling answers as this transport's FAILURE with `reason`,
   * as the module's filter answers a `DtmFailureError` (HTTP 409 with the same body, gRPC ABORTED;
   * its cause that error): how `@BranchContext()` refuses a call on a route without a branch
   * decorator, which the module's filter does not serve.
   */
  failureException(reason: string): Error;
  /** The text DTM receives of this transport's answer to `exception` (HTTP the body, gRPC the status message), as {@link answer} sends it. */
  answeredText(exception: unknown): string;
  /** Answers `exception` as DTM reads this transport: HTTP 409 / 425 / ...; gRPC ABORTED / FAILED_PRECONDITION / ... */
  answer(exception: unknown, host: ArgumentsHost, adapterHost: HttpAdapterHost | undefined): unknown;
}
