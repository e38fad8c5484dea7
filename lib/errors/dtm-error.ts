import { shownBranchId } from '../auth/branch-auth.js';

/** Which way a peer was talked to. */
export type DtmProtocol = 'http' | 'grpc';

/** Context a {@link DtmError} can carry: which transaction and branch, which peer and what it answered, the cause. */
export interface DtmErrorContext {
  gid?: string;
  branchId?: string;
  /** The peer involved: a URL (credentials redacted) or a gRPC `host:port/package.Service/Method`. */
  endpoint?: string;
  /** How the peer was talked to. */
  protocol?: DtmProtocol;
  /** What the peer answered: the HTTP status (`protocol: 'http'`) or the gRPC status code (`'grpc'`). */
  status?: number;
  cause?: unknown;
}

/** The context of `err` (its transaction, branch, peer and answer), with `err` as the cause: for an error that restates it. */
export function restatedContext(err: DtmError): DtmErrorContext {
  return { gid: err.gid, branchId: err.branchId, endpoint: err.endpoint, protocol: err.protocol, status: err.status, cause: err };
}

/** Marks an error with the names of its error classes, so that `instanceof` works across two loaded copies of the package. */
const KINDS = Symbol.for('nestjs-dtm:error-kinds');

/**
 * Base class of every error nestjs-dtm throws; `name` is the subclass name. `instanceof` compares
 * class names recorded on the error (like temporalio's SymbolBasedInstanceOfError), so it holds
 * when the app loads two copies of the package (an ESM and a CommonJS one, or two versions).
 */
export class DtmError extends Error {
  /** Global transaction id, when the error concerns one. */
  readonly gid?: string;
  /** Branch id, when the error concerns one branch; a TCC branch id of authenticated calls without its token (`01-<token>`). */
  readonly branchId?: string;
  /** The peer involved: a URL (credentials redacted) or a gRPC `host:port/package.Service/Method`. */
  readonly endpoint?: string;
  /** How the peer was talked to. */
  readonly protocol?: DtmProtocol;
  /** What the peer answered: the HTTP status, or the gRPC status code (see `protocol`). */
  readonly status?: number;

  /** True for errors made by any copy of nestjs-dtm whose class is this one or a subclass of it. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const kinds = (value as { [KINDS]?: unknown })[KINDS];
    return Array.isArray(kinds) ? kinds.includes(this.name) : Function.prototype[Symbol.hasInstance].call(this, value);
  }

  constructor(message: string, context: DtmErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    const kinds: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) kinds.push((c as { name: string }).name);
    Object.defineProperty(this, KINDS, { value: kinds });
    if (context.gid !== undefined) this.gid = context.gid;
    if (context.branchId !== undefined) this.branchId = shownBranchId(context.branchId);
    if (context.endpoint !== undefined) this.endpoint = context.endpoint;
    if (context.protocol !== undefined) this.protocol = context.protocol;
    if (context.status !== undefined) this.status = context.status;
  }
}
