/** Context a {@link DtmError} can carry: which transaction and branch, the HTTP status, the cause. */
export interface DtmErrorContext {
  gid?: string;
  branchId?: string;
  status?: number;
  cause?: unknown;
}

/** Base class of every error nestjs-dtm throws; `name` is the subclass name. */
export class DtmError extends Error {
  /** Global transaction id, when the error concerns one. */
  readonly gid?: string;
  /** Branch id, when the error concerns one branch. */
  readonly branchId?: string;
  /** HTTP status involved, when there was one. */
  readonly status?: number;

  constructor(message: string, context: DtmErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    this.gid = context.gid;
    this.branchId = context.branchId;
    this.status = context.status;
  }
}
