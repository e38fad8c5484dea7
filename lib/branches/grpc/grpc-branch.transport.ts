import { HttpException, type ArgumentsHost } from '@nestjs/common';
import { throwError } from 'rxjs';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import type { BranchCarrier, BranchTransport } from '../branch-transport.js';
import { type BranchInfo } from '../../transport/dtm.types.js';
import { REQUIRED_BRANCH_QUERY } from '../branch.types.js';
import { messageOf, textOf } from '../../errors/text-of.js';
import { truncate } from '../../dtm.messages.js';
import { ANSWERED_TEXT_MAX } from '../../transport/dtm-limits.js';

/** gRPC status codes (grpc-js `status`; not imported: @grpc/grpc-js is an optional peer). */
export const GRPC_CODE = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, PERMISSION_DENIED: 7, FAILED_PRECONDITION: 9, ABORTED: 10, INTERNAL: 13, UNAUTHENTICATED: 16 } as const;

/** What gRPC code an HttpException's status stands for (409 / 425 as DTM reads them on HTTP). */
const CODE_OF_STATUS: Record<number, number> = { 400: GRPC_CODE.INVALID_ARGUMENT, 401: GRPC_CODE.UNAUTHENTICATED, 403: GRPC_CODE.PERMISSION_DENIED, 404: GRPC_CODE.NOT_FOUND, 409: GRPC_CODE.ABORTED, 425: GRPC_CODE.FAILED_PRECONDITION };

/** A grpc-js `Metadata` (the second argument of a `@GrpcMethod` handler). */
export interface MetadataLike {
  get(key: string): (string | Buffer)[];
  getMap(): Record<string, string | Buffer>;
}

/** A grpc-js unary call (the third argument of a `@GrpcMethod` handler). */
export interface GrpcCallLike {
  metadata: MetadataLike;
  getPath?(): string;
}

/** The property of a request message holding the bytes it was decoded from (with authenticated calls: see `DtmGrpcIntegration`). */
export const RAW_REQUEST = Symbol('nestjs-dtm:raw-request');

/** Whether `value` is a grpc-js Metadata (and the RPC context therefore gRPC, not another Nest transport). */
export function isMetadata(value: unknown): value is MetadataLike {
  return typeof (value as MetadataLike | undefined)?.getMap === 'function' && typeof (value as MetadataLike).get === 'function';
}

/** Whether `carrier` is a grpc-js call (the carrier of a branch call that came in over gRPC). */
export function isGrpcCall(carrier: unknown): carrier is GrpcCallLike {
  return isMetadata((carrier as Partial<GrpcCallLike> | undefined)?.metadata);
}

function first(metadata: MetadataLike, key: string): string {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : value === undefined ? '' : value.toString('utf8');
}

/** Whether the call's metadata lacks `dtm-<key>`: gid, trans_type and op must be non-empty, branch_id present. */
function lacks(metadata: MetadataLike, key: (typeof REQUIRED_BRANCH_QUERY)[number]): boolean {
  const values = metadata.get(`dtm-${key}`);
  return values.length === 0 || (values[0] === '' && key !== 'branch_id');
}

/** DTM's keys of a gRPC branch call, read from its metadata once (the guard, the authentication and the barrier all ask). */
interface GrpcBranchKeys {
  gid: string;
  transType: string;
  branchId: string;
  op: string;
  dtm: string;
  phase2Url: string;
  /** Whether gid, trans_type and op are there and not empty, and branch_id is there. */
  complete: boolean;
}

const BRANCH_KEYS = Symbol('nestjs-dtm:grpc-branch-keys');

function keysOf(carrier: BranchCarrier): GrpcBranchKeys {
  const call = carrier as GrpcCallLike & { [BRANCH_KEYS]?: GrpcBranchKeys };
  let keys = call[BRANCH_KEYS];
  if (keys === undefined) {
    const { metadata } = call;
    keys = {
      gid: first(metadata, 'dtm-gid'),
      transType: first(metadata, 'dtm-trans_type'),
      branchId: first(metadata, 'dtm-branch_id'),
      op: first(metadata, 'dtm-op'),
      dtm: first(metadata, 'dtm-dtm'),
      phase2Url: first(metadata, 'dtm-phase2_url'),
      complete: false,
    };
    keys.complete = keys.gid !== '' && keys.transType !== '' && keys.op !== '' && (keys.branchId !== '' || metadata.get('dtm-branch_id').length > 0);
    call[BRANCH_KEYS] = keys;
  }
  return keys;
}

/**
 * DTM's branch protocol over gRPC: the call in the `dtm-*` metadata (`dtm-gid`, `dtm-trans_type`,
 * `dtm-branch_id`, `dtm-op`, `dtm-dtm`, `dtm-phase2_url`), the outcome as a status code.
 */
export const grpcBranchTransport: BranchTransport = {
  protocol: 'grpc',

  carrier(context: ArgumentsHost): BranchCarrier {
    return context.getArgByIndex<GrpcCallLike>(2);
  },

  completeOp(carrier: BranchCarrier): string | undefined {
    const keys = keysOf(carrier);
    return keys.complete ? keys.op : undefined;
  },

  transType(carrier: BranchCarrier): string {
    return keysOf(carrier).transType;
  },

  gid(carrier: BranchCarrier): string {
    return keysOf(carrier).gid;
  },

  branchId(carrier: BranchCarrier): string {
    return keysOf(carrier).branchId;
  },

  missing(carrier: BranchCarrier): string[] {
    const { metadata } = carrier as GrpcCallLike;
    return REQUIRED_BRANCH_QUERY.filter((key) => lacks(metadata, key)).map((key) => `dtm-${key}`);
  },

  branchInfo(carrier: BranchCarrier, headers: Record<string, string>): BranchInfo | undefined {
    const keys = keysOf(carrier);
    if (!keys.complete) return undefined;
    return { gid: keys.gid, transType: keys.transType, branchId: keys.branchId, op: keys.op, dtm: keys.dtm || undefined, phase2Url: keys.phase2Url || undefined, headers };
  },

  header(carrier: BranchCarrier, name: string): string | undefined {
    const values = (carrier as GrpcCallLike).metadata.get(name);
    if (values.length !== 1) return undefined;
    return typeof values[0] === 'string' ? values[0] : undefined;
  },

  path(carrier: BranchCarrier): string {
    return (carrier as GrpcCallLike).getPath?.() ?? '';
  },

  payload(context: ArgumentsHost): unknown {
    return context.getArgByIndex<unknown>(0);
  },

  rawBody(context: ArgumentsHost): Uint8Array | undefined {
    const message = context.getArgByIndex<{ [RAW_REQUEST]?: Uint8Array } | undefined>(0);
    return message?.[RAW_REQUEST];
  },

  /**
   * As DTM reads a gRPC branch (its `GrpcError2DtmError`): `DtmFailureError` → ABORTED (the reason
   * as message, see {@link abortedMessage}), `DtmOngoingError` → FAILED_PRECONDITION, an RpcException → its own error, an
   * HttpException → the code its status stands for, anything else → INTERNAL with its message
   * (DTM retries with backoff). Every message past {@link ANSWERED_TEXT_MAX} is cut (`truncate`): a
   * Node server fails to send a status whose message takes 64 KiB or more. Nest's RPC filters answer with an error Observable.
   */
  failureText(reason: string): string {
    return abortedMessage(reason);
  },

  failureException(reason: string): Error {
    // Nest's BaseRpcExceptionFilter answers an RpcException whose error is an object with that object, which grpc-js sends as the status
    return rpcException({ code: GRPC_CODE.ABORTED, message: abortedMessage(reason) }, new DtmFailureError(reason));
  },

  answeredText(exception: unknown): string {
    const { details, message } = errorOf(exception) as { details?: unknown; message?: unknown };
    return typeof details === 'string' ? details : typeof message === 'string' ? message : '';
  },

  answer(exception: unknown): unknown {
    const error = errorOf(exception);
    return throwError(() => error);
  },
};

/** The error `exception` is answered with (see `answer`). */
function errorOf(exception: unknown): object {
  if (exception instanceof DtmFailureError) return { code: GRPC_CODE.ABORTED, message: abortedMessage(exception.reason) };
  if (exception instanceof DtmOngoingError) return { code: GRPC_CODE.FAILED_PRECONDITION, message: truncate(exception.message, ANSWERED_TEXT_MAX) };
  if (isRpcException(exception)) {
    const inner = exception.getError();
    return typeof inner === 'object' && inner !== null ? answeredRpcError(inner) : { code: GRPC_CODE.INTERNAL, message: truncate(textOf(inner), ANSWERED_TEXT_MAX) };
  }
  if (exception instanceof HttpException) {
    const code = grpcCodeOfHttpException(exception);
    const message = truncate(exception.message, ANSWERED_TEXT_MAX);
    return { code, message: code === GRPC_CODE.ABORTED ? abortedMessage(message) : message };
  }
  return { code: GRPC_CODE.INTERNAL, message: truncate(messageOf(exception), ANSWERED_TEXT_MAX) }; // DTM needs the code only; grpc-js sends no status of ~64 KiB
}

/**
 * An RpcException's error as it is answered: itself, unless its string `details` or `message` (what
 * grpc-js sends as the status message) passes {@link ANSWERED_TEXT_MAX}: then a copy with it cut
 * (`truncate`); grpc-js sends no status message of ~64 KiB or more.
 */
function answeredRpcError(error: object): object {
  const { details, message } = error as { details?: unknown; message?: unknown };
  const long = (text: unknown): text is string => typeof text === 'string' && text.length > ANSWERED_TEXT_MAX;
  if (!long(details) && !long(message)) return error;
  return { ...error, ...(long(details) ? { details: truncate(details, ANSWERED_TEXT_MAX) } : {}), ...(long(message) ? { message: truncate(message, ANSWERED_TEXT_MAX) } : {}) };
}

/** The gRPC code an HttpException a gRPC handler throws is answered with: the one its status stands for, else INTERNAL. */
export function grpcCodeOfHttpException(exception: HttpException): number {
  return CODE_OF_STATUS[exception.getStatus()] ?? GRPC_CODE.INTERNAL;
}

/**
 * The message of an ABORTED the module answers for a FAILURE: `message`, unless it is exactly
 * `ONGOING`, which DTM v1.19 reads in an ABORTED as its protocol before v1.10 said ONGOING (asked
 * again for ever, never rolled back): then `ONGOING (FAILURE)`.
 */
function abortedMessage(message: string): string {
  return message === 'ONGOING' ? 'ONGOING (FAILURE)' : message;
}

/**
 * The gRPC code an RpcException (or a subclass) answers with, when its error is an object with a
 * numeric `code` (`new RpcException({ code, message })`); undefined for anything else.
 */
export function rpcExceptionCode(exception: unknown): number | undefined {
  if (!isRpcException(exception)) return undefined;
  const code = (exception.getError() as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * What DTM reads an RpcException as (its `GrpcError2DtmError`): ABORTED is FAILURE (ONGOING when the
 * message DTM gets is exactly `ONGOING`, DTM's protocol before v1.10), FAILED_PRECONDITION is
 * ONGOING, any other code an error it retries. The message DTM gets is the error's `details` when it
 * has a string one (grpc-js answers it in place of `message`), else its `message`.
 */
export function dtmResultOfRpcException(exception: unknown): 'FAILURE' | 'ONGOING' | undefined {
  const code = rpcExceptionCode(exception);
  if (code === GRPC_CODE.ABORTED) {
    const { message, details } = (exception as { getError(): { message?: unknown; details?: unknown } }).getError();
    return (typeof details === 'string' ? details : message) === 'ONGOING' ? 'ONGOING' : 'FAILURE';
  }
  return code === GRPC_CODE.FAILED_PRECONDITION ? 'ONGOING' : undefined;
}

/**
 * The message grpc-js answers for an RpcException whose error is an object with a numeric `code`:
 * its `details` when a string, else its `message` (RpcException's own message knows only
 * `message`); undefined for any other exception.
 */
export function rpcExceptionDetails(exception: unknown): string | undefined {
  if (rpcExceptionCode(exception) === undefined) return undefined;
  const { details, message } = (exception as { getError(): { details?: unknown; message?: unknown } }).getError();
  return typeof details === 'string' ? details : typeof message === 'string' ? message : undefined;
}

/** `@nestjs/microservices`' RpcException, once loaded (see {@link loadRpcException}). */
let RpcExceptionClass: (new (error: object) => Error) | undefined;

/**
 * Loads `@nestjs/microservices`' RpcException (once) as the library's other imports load Nest, so
 * that it is the class of the app's own instance (Nest's filter checks `instanceof`; under Jest the
 * test's module registry's): called as soon as the app has a gRPC server (the package is an
 * optional peer, which such an app has).
 */
export async function loadRpcException(): Promise<void> {
  RpcExceptionClass ??= (await import('@nestjs/microservices')).RpcException;
}

/**
 * An RpcException of `error`, its cause `cause` (Nest's RPC exception filter answers an error of that
 * class only as it is); `cause` itself while the class is not loaded yet (a call served before
 * {@link loadRpcException} ended: answered as an error, which DTM retries).
 */
function rpcException(error: object, cause: Error): Error {
  if (!RpcExceptionClass) return cause;
  const exception = new RpcExceptionClass(error);
  // RpcException's constructor takes no cause
  Object.defineProperty(exception, 'cause', { value: cause, writable: true, configurable: true });
  return exception;
}

/** `@nestjs/microservices`' RpcException or a subclass (not imported: an optional peer). */
function isRpcException(value: unknown): value is { getError(): unknown } {
  if (typeof (value as { getError?: unknown } | undefined)?.getError !== 'function') return false;
  for (let c = (value as object).constructor; typeof c === 'function' && c !== Object; c = Object.getPrototypeOf(c)) if (c.name === 'RpcException') return true;
  return false;
}
