import type { BarrierDatabase } from '../barrier/barrier.types.js';
import type { BranchBarrier } from '../barrier/branch-barrier.js';
import type { Payload, TransactionOptions } from '../transport/dtm.types.js';
import type { XaDatabase } from '../xa/xa.types.js';

/** Options of `@DtmWorkflow(name, options)`. */
export interface WorkflowOptions {
  /**
   * Whether a step that answered FAILURE is rolled back too (its `onRollback` runs). Default
   * false, as in DTM's Go SDK: a refused step changed nothing. Set it when a step's FAILURE may
   * come after effects (a timeout read as FAILURE, say).
   */
  compensateFailedStep?: boolean;
  /** Transaction options of every execution (seconds); `retryInterval` is when DTM first resumes an unfinished one. */
  transaction?: TransactionOptions;
}

/** What a workflow resolves with when it succeeded. */
export interface WorkflowResult<R = unknown> {
  status: 'succeed';
  /** What the workflow function returned, as recorded (JSON). */
  result: R;
}

/** The handle a phase-2 callback (`onRollback`, `onCommit`) gets. */
export interface WorkflowPhase2 {
  gid: string;
  /** The step's branch id. */
  branchId: string;
  op: 'commit' | 'rollback';
  /** The sub-transaction barrier of this callback (`workflow`, gid, branch, op): makes a local compensation exactly-once. */
  barrier: BranchBarrier;
  /** Calls an HTTP branch with this op (`gid, trans_type=workflow, branch_id, op`); FAILURE is not allowed here. */
  http(target: string, payload?: Payload): Promise<unknown>;
  /** Calls a gRPC branch with this op (dtm-* metadata). */
  grpc(target: string, payload?: Payload): Promise<unknown>;
}

/** A phase-2 callback. */
export type WorkflowCallback = (phase2: WorkflowPhase2) => Promise<unknown> | unknown;

/** Options of a local step. */
export interface LocalStepOptions<H> {
  /** Run it in a local transaction guarded by the barrier (a PostgreSQL or MySQL database, or the name of one of the module's `barrierConnections`, not a Redis one): exactly once, also when the workflow is resumed. */
  barrier?: BarrierDatabase<H> | string;
}

/**
 * One named step of a workflow: register its callbacks first, then run exactly one action. The
 * action's outcome is recorded in DTM; on replay the recorded value is returned instead.
 */
export interface WorkflowStep {
  /** Runs `callback` (in reverse order of registration) if the workflow rolls back: its compensation. */
  onRollback(callback: WorkflowCallback): this;
  /** Runs `callback` (in reverse order of registration) once the workflow succeeded. */
  onCommit(callback: WorkflowCallback): this;
  /**
   * A local step: runs `action` (with `{ barrier }`, inside a barrier-guarded local transaction,
   * whose handle it gets). Throw `DtmFailureError` to roll the workflow back.
   */
  run<T, H = unknown>(action: (handle: H) => Promise<T> | T, options?: LocalStepOptions<H>): Promise<T>;
  /** Calls an HTTP branch (op `action`): 200 → its JSON answer, 409 → FAILURE (rolls back), anything else: not recorded, DTM resumes later. */
  http<T = unknown>(target: string, payload?: Payload): Promise<T>;
  /** Calls a gRPC branch (op `action`): OK → its reply (decoded when its proto is known), ABORTED → FAILURE. */
  grpc<T = unknown>(target: string, payload?: Payload): Promise<T>;
  /**
   * A local XA step on `db` (a database, or the name of one of the module's `xaConnections`):
   * `action` runs inside XA START ... XA PREPARE; the module commits it when the workflow succeeds
   * and rolls it back when it fails.
   */
  xa<T, H = unknown>(db: XaDatabase<H> | string, action: (handle: H) => Promise<T> | T): Promise<T>;
}

/** What a `@DtmWorkflow` function gets: its input, and the steps it records. */
export interface WorkflowContext<I = unknown> {
  readonly name: string;
  readonly gid: string;
  /** The input the workflow was started with (as DTM stored it: a resume gets the same). */
  readonly input: I;
  /** The next step, named `name` (the name is recorded, and checked on replay). */
  step(name: string): WorkflowStep;
  /** The current time, recorded: the same on replay. */
  now(): Promise<Date>;
  /** A random UUID, recorded. */
  uuid(): Promise<string>;
  /** `Math.random()`, recorded. */
  random(): Promise<number>;
}

/** A registered workflow function. */
export type WorkflowFunction = (wf: WorkflowContext<never>) => Promise<unknown>;
