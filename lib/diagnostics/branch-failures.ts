// The last errors this process's branch handlers answered, kept (bounded) so that a transaction
// that does not finish in time can say why: DTM v1.19 stores no branch error (its /query has none).

/** What a branch handler of this process answered when it failed. */
export interface RecordedBranchFailure {
  /** `Controller.method`. */
  handler: string;
  /** What the call got: the HTTP status (500 for an error the handler threw) or the gRPC status code. */
  status: number;
  /** The error's message (kept in this process only; DTM was answered without it). */
  message: string;
  /** When it happened (ms since the epoch). */
  at: number;
}

/** Most failures kept: the oldest goes first. */
const MAX_RECORDED = 500;
/** One record per process, shared by every copy of the package loaded in it (ESM and CommonJS). */
const STORE = Symbol.for('nestjs-dtm:branch-failures');

function store(): Map<string, RecordedBranchFailure> {
  const global = globalThis as { [STORE]?: Map<string, RecordedBranchFailure> };
  return (global[STORE] ??= new Map());
}

/**
 * Records that the call `gid` / `branchId` / `op` failed (runs only when a branch handler failed;
 * never for a call the module refused before its handler ran, which anyone reaching the app can
 * make, and so push real failures out).
 */
export function recordBranchFailure(gid: string, branchId: string, op: string, failure: Omit<RecordedBranchFailure, 'at'>): void {
  const failures = store();
  const key = `${gid}\u0000${branchId}\u0000${op}`;
  failures.delete(key);
  failures.set(key, { ...failure, at: Date.now() });
  if (failures.size > MAX_RECORDED) failures.delete(failures.keys().next().value!);
}

/** The last failure of the call `gid` / `branchId` / `op` this process answered, if any. */
export function recordedBranchFailure(gid: string, branchId: string, op: string): RecordedBranchFailure | undefined {
  return store().get(`${gid}\u0000${branchId}\u0000${op}`);
}
