import { randomUUID } from 'node:crypto';
import type { BarrierDatabase, LocalTransactionBounds } from '../barrier/barrier.types.js';
import { BranchBarrier } from '../barrier/branch-barrier.js';
import type { Payload } from '../transport/dtm.types.js';
import { cutToStore } from '../transport/dtm-limits.js';
import type { WorkflowProgress } from '../transport/dtm-transport.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmWorkflowDivergedError } from '../errors/dtm-workflow-diverged.error.js';
import { BranchIdGenerator } from '../transactions/branch-id.generator.js';
import { MAX_STEP_DATA_BYTES, type WorkflowTransaction } from '../transactions/workflow-transaction.js';
import { finishXa, prepareXa, xidOf } from '../xa/xa-local-transaction.js';
import type { XaDatabase } from '../xa/xa.types.js';
import type { LocalStepOptions, WorkflowCallback, WorkflowContext, WorkflowPhase2, WorkflowStep } from './workflow.types.js';
import { messageOf } from '../errors/text-of.js';

/**
 * What a recorded step holds (the `bin_data` of its branch row, JSON): the step's name `k`, and its
 * value `d` (a Buffer inside it as a Buffer's JSON; a value that is bytes as base64, in `b`), or
 * the FAILURE's reason `e`. Only this module reads it.
 */
interface StepRecord {
  k: string;
  d?: unknown;
  b?: string;
  e?: string;
}

/** The most steps a workflow takes: DTM's branch ids of one level, `01` to `99`. */
const MAX_STEPS = 99;

/** What the execution needs besides the transaction: the module's databases and the workflow's options. */
export interface WorkflowExecutionEnvironment {
  barrierConnections: ReadonlyMap<string, unknown>;
  xaDatabases: ReadonlyMap<string, XaDatabase>;
  barrierTable: string;
  compensateFailedStep: boolean;
}

/** A phase-2 callback of a step. */
interface Phase2Item {
  branchId: string;
  step: string;
  op: 'commit' | 'rollback';
  callback: WorkflowCallback;
}

/**
 * The promise a step's action returns: notes when the workflow's code takes its outcome (`await`,
 * `then`, `catch`, `Promise.all` all call `then`). One never taken when the function ends is a
 * step whose outcome the code dropped (a forgotten `await`).
 */
class StepOutcome<T> extends Promise<T> {
  /** Promises made from it (`then`'s) are plain ones. */
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  taken = false;

  override then<R1 = T, R2 = never>(onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null, onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null): Promise<R1 | R2> {
    this.taken = true;
    return super.then(onFulfilled, onRejected);
  }
}

/** `value` as a record's payload: bytes as base64, anything else as its JSON. */
function recordOf(step: string, value: unknown): StepRecord {
  return value instanceof Uint8Array ? { k: step, b: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') } : { k: step, d: value };
}

/** `value`'s JSON text, as DTM stores it; `DtmUsageError` naming `what` when JSON cannot hold it (a BigInt, a cycle). */
export function storedJson(value: unknown, what: string, gid: string, replacer?: (key: string, value: unknown) => unknown): string {
  try {
    return JSON.stringify(value, replacer);
  } catch (err) {
    throw new DtmUsageError(MESSAGES.workflowNotJson(what, messageOf(err)), { gid, cause: err });
  }
}

/** The value a record holds, as a replay sees it (and the first run too: it goes through the same JSON). */
function valueOf(record: StepRecord): unknown {
  return record.b !== undefined ? Buffer.from(record.b, 'base64') : record.d;
}

/** JSON.stringify's replacer of a step's value: a byte array inside it as a Buffer's JSON (a Buffer's own `toJSON` already gives it), not an object of numbered keys. */
function bytesAsBuffers(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength).toJSON() : value;
}

/**
 * A step's record from its JSON `text`, the JSON of a Buffer inside its value (`{ "type": "Buffer",
 * "data": [bytes] }`: a gRPC reply's bytes field, a Buffer a local step returned) a Buffer again,
 * on the first run as on a replay (as DTM's Go SDK gives a reply back from its proto bytes).
 */
function parsedRecord(text: string): StepRecord {
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
    const { type, data } = value as { type?: unknown; data?: unknown };
    if (type !== 'Buffer' || !Array.isArray(data) || Object.keys(value).length !== 2) return value;
    return data.every((byte) => Number.isInteger(byte) && byte >= 0 && byte <= 255) ? Buffer.from(data as number[]) : value;
  }) as StepRecord;
}

/**
 * One execution of a workflow function (the first, or one resuming it): the context it gets.
 * Every step gets the next branch id (`01`, `02`, ... in call order, as DTM's Go SDK counts); a
 * step recorded in an earlier execution returns its recorded value, checked to have the same name.
 */
export class WorkflowExecution<I> implements WorkflowContext<I> {
  private readonly recorded = new Map<string, { status: string; record: StepRecord }>();
  private readonly ids = new BranchIdGenerator();
  private readonly phase2: Phase2Item[] = [];
  private running?: string;
  /** The phase-2 callback running, if one is: it starts no steps. */
  private inPhase2?: Phase2Item;
  /** Every step action's outcome, with its step: each must be taken by the workflow's code before it ends. */
  private readonly outcomes: { step: string; branchId: string; outcome: StepOutcome<unknown> }[] = [];
  /** How many steps this execution made (the last branch id it gave). */
  private steps = 0;
  /** The error of the first record of a step's outcome that failed (DTM refused it, or did not answer), if one did. */
  private unrecorded?: { error: unknown };

  constructor(
    private readonly tx: WorkflowTransaction,
    readonly name: string,
    readonly input: I,
    progress: WorkflowProgress,
    private readonly env: WorkflowExecutionEnvironment,
  ) {
    for (const p of progress.progresses) {
      let record: StepRecord;
      try {
        record = parsedRecord(p.data.toString('utf8'));
      } catch {
        record = { k: '?' }; // not recorded by this module: a divergence if a step reaches it
      }
      this.recorded.set(`${p.branchId}-${p.op}`, { status: p.status, record });
    }
  }

  get gid(): string {
    return this.tx.gid;
  }

  step(name: string): WorkflowStep {
    if (typeof name !== 'string' || name === '') throw new DtmUsageError(MESSAGES.workflowStepName(this.name), { gid: this.gid });
    if (this.inPhase2) throw new DtmUsageError(MESSAGES.workflowStepInPhase2(this.name, name, this.inPhase2.step, this.inPhase2.op), { gid: this.gid });
    if (this.steps >= MAX_STEPS) throw new DtmUsageError(MESSAGES.workflowTooManySteps(this.name, name, MAX_STEPS), { gid: this.gid });
    const branchId = this.ids.next();
    this.steps += 1;
    return new Step(this, name, branchId);
  }

  now(): Promise<Date> {
    return this.step('$now').run(() => new Date().toISOString()).then((iso) => new Date(iso));
  }

  uuid(): Promise<string> {
    return this.step('$uuid').run(() => randomUUID());
  }

  random(): Promise<number> {
    return this.step('$random').run(() => Math.random());
  }

  /** @internal Registers a phase-2 callback of `step` (the app's before its action, as DTM's Go SDK requires; an XA step's own after it). */
  addPhase2(item: Phase2Item): void {
    this.phase2.push(item);
  }

  /**
   * @internal Runs a step's action once: its recorded outcome on replay (checked to be this step),
   * else `action`, whose outcome is recorded before it is returned. FAILURE is recorded and thrown
   * (the step's rollback dropped unless `compensateFailedStep`); any other error is not recorded.
   */
  async action<T>(step: string, branchId: string, action: () => Promise<unknown>): Promise<T> {
    const replayed = this.replay(step, branchId, 'action');
    if (replayed) {
      if (replayed.status === 'failed') throw this.refused(branchId, replayed.record.e ?? 'FAILURE');
      return valueOf(replayed.record) as T;
    }
    if (this.running) throw new DtmUsageError(MESSAGES.workflowStepsConcurrent(this.name, this.running, step), { gid: this.gid });
    this.running = step;
    let value: unknown;
    try {
      value = await action();
    } catch (err) {
      // a transaction of the step's own refused its gid (taken by the first run of this step, on a resume): no FAILURE of the step's work, which may have succeeded
      if (err instanceof DtmFailureError && !(err instanceof DtmGidInUseError)) {
        // recorded as DTM keeps the rollback reason it becomes: a longer one (a 409's large body) could never be recorded
        const reason = cutToStore(err.reason);
        await this.recordOutcome(branchId, 'action', 'failed', JSON.stringify({ k: step, e: reason }));
        throw this.refused(branchId, reason, err);
      }
      throw err;
    } finally {
      this.running = undefined;
    }
    const text = storedJson(recordOf(step, value), `the value of step "${step}" of workflow "${this.name}"`, this.gid, bytesAsBuffers);
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_STEP_DATA_BYTES) throw new DtmUsageError(MESSAGES.workflowStepValueTooLarge(this.name, step, branchId, bytes, MAX_STEP_DATA_BYTES), { gid: this.gid, branchId });
    await this.recordOutcome(branchId, 'action', 'succeed', text);
    return valueOf(parsedRecord(text)) as T;
  }

  /**
   * @internal What a step's action returns to the workflow's code: `action`'s outcome, noted so that
   * {@link assertAllAwaited} finds one the code never took. Its rejection is handled here: an
   * outcome never taken is reported by that check, not as an unhandled rejection ending the process.
   */
  outcome<T>(step: string, branchId: string, action: Promise<T>): Promise<T> {
    const outcome = new StepOutcome<T>((resolve, reject) => void Promise.prototype.then.call(action, resolve, reject));
    void Promise.prototype.then.call(outcome, undefined, () => undefined);
    this.outcomes.push({ step, branchId, outcome: outcome as StepOutcome<unknown> });
    return outcome;
  }

  /**
   * @internal When the workflow function ended (returned, or threw `DtmFailureError`): `DtmUsageError`
   * naming a step whose outcome its code never took (a forgotten `await`), or still running: its
   * FAILURE would not have changed the workflow's outcome, so neither a commit nor a rollback is right.
   */
  assertAllAwaited(): void {
    const dropped = this.outcomes.find((o) => !o.outcome.taken);
    const step = dropped ?? (this.running === undefined ? undefined : this.outcomes.findLast((o) => o.step === this.running));
    if (step) throw new DtmUsageError(MESSAGES.workflowStepNotAwaited(this.name, step.step, step.branchId), { gid: this.gid, branchId: step.branchId });
  }

  /** @internal Records that a step's business ran inside its XA transaction (`business`), as DTM's Go SDK does before XA PREPARE. */
  recordBusiness(step: string, branchId: string): Promise<void> {
    return this.recordOutcome(branchId, 'business', 'succeed', JSON.stringify({ k: step }));
  }

  /**
   * @internal When the workflow function ended: the error of a step's record that failed (DTM
   * refused it, the workflow no longer prepared: another execution or a forceStop ended it; or DTM
   * did not answer), also when the workflow's code caught it and went on. What DTM holds is then not
   * what this execution saw: neither its commit nor its rollback callbacks may run.
   */
  assertAllRecorded(): void {
    if (this.unrecorded) throw this.unrecorded.error;
  }

  /** @internal Whether step `branchId`'s `op` was recorded (checked to be `step`). */
  wasRecorded(step: string, branchId: string, op: string): boolean {
    return this.replay(step, branchId, op) !== undefined;
  }

  /**
   * @internal Before phase 2: throws `DtmWorkflowDivergedError` when an earlier execution recorded
   * a step at a position this one never reached (the code now ends before it): its callbacks would
   * never run (a rollback without its compensation, a success without its commit).
   */
  assertNothingLeftBehind(): void {
    let first: { branchId: string; op: string; step: string } | undefined;
    for (const [key, { record }] of this.recorded) {
      const [branchId, op] = key.split('-');
      if (Number(branchId) > this.steps && (!first || Number(branchId) < Number(first.branchId))) first = { branchId, op, step: record.k };
    }
    if (first) throw new DtmWorkflowDivergedError(this.name, this.gid, first.branchId, first.op, first.step, '');
  }

  /**
   * @internal Before phase 2 `op`: throws `DtmWorkflowDivergedError` when an earlier execution
   * recorded a callback of the other phase 2 (it began to commit, and this one would roll back, or
   * the reverse): the code now ends otherwise, and running `op` would leave the workflow half
   * committed and half rolled back.
   */
  assertSameEnding(op: 'commit' | 'rollback'): void {
    const other = op === 'commit' ? 'rollback' : 'commit';
    for (const [key, { record }] of this.recorded) {
      const cut = key.lastIndexOf('-'); // `${branchId}-${op}`: the op holds no dash, a branch id may
      if (key.slice(cut + 1) === other) throw new DtmWorkflowDivergedError(this.name, this.gid, key.slice(0, cut), other, record.k, '', op);
    }
  }

  /** @internal Runs the phase-2 callbacks of `op` in reverse order of registration, each recorded once. */
  async runPhase2(op: 'commit' | 'rollback'): Promise<void> {
    for (const item of [...this.phase2].reverse()) {
      if (item.op !== op || this.replay(item.step, item.branchId, op)) continue;
      this.inPhase2 = item;
      try {
        await item.callback(this.phase2Handle(item));
      } catch (err) {
        if (err instanceof DtmFailureError) throw new Error(MESSAGES.workflowPhase2Failure(this.name, this.gid, item.step, op, err.reason), { cause: err });
        throw err;
      } finally {
        this.inPhase2 = undefined;
      }
      await this.tx.record(item.branchId, op, 'succeed', JSON.stringify({ k: item.step }));
    }
  }

  /** @internal The module's barrier database named or given. */
  barrierDatabase<H>(db: BarrierDatabase<H> | string): BarrierDatabase<H> {
    if (typeof db !== 'string') return db;
    const found = this.env.barrierConnections.get(db) as BarrierDatabase<H> | undefined;
    if (!found) throw new DtmUsageError(MESSAGES.workflowUnknownDatabase(this.name, 'barrierConnections', db, [...this.env.barrierConnections.keys()]), { gid: this.gid });
    if ('redis' in found) throw new DtmUsageError(MESSAGES.workflowRedisBarrier(this.name, db), { gid: this.gid });
    return found;
  }

  /** @internal The module's XA database named or given. */
  xaDatabase<H>(db: XaDatabase<H> | string): XaDatabase<H> {
    if (typeof db !== 'string') return db;
    const found = this.env.xaDatabases.get(db) as XaDatabase<H> | undefined;
    if (!found) throw new DtmUsageError(MESSAGES.workflowUnknownDatabase(this.name, 'xaConnections', db, [...this.env.xaDatabases.keys()]), { gid: this.gid });
    return found;
  }

  /** @internal */
  get transaction(): WorkflowTransaction {
    return this.tx;
  }

  /** @internal */
  get barrierTable(): string {
    return this.env.barrierTable;
  }

  /**
   * @internal The barrier of op `op` of step `branchId`, on the module's barrier table, its local
   * transactions bounded by the workflow's branch timeout (`branch_timeout` unless overridden), as a branch call's are.
   */
  barrier(branchId: string, op: string): BranchBarrier {
    return BranchBarrier.from({ transType: 'workflow', gid: this.gid, branchId, op }, { table: this.env.barrierTable, timeoutSeconds: this.tx.options.branchTimeout });
  }

  /** @internal The lock bound of a step's XA transaction: the workflow's branch timeout. */
  get bounds(): LocalTransactionBounds {
    return { timeoutSeconds: this.tx.options.branchTimeout };
  }

  /** Records a step's outcome (`action`, an XA step's `business`), noting a record that failed for {@link assertAllRecorded}. */
  private async recordOutcome(branchId: string, op: string, status: 'succeed' | 'failed', data: string): Promise<void> {
    try {
      await this.tx.record(branchId, op, status, data);
    } catch (err) {
      this.unrecorded ??= { error: err };
      throw err;
    }
  }

  private replay(step: string, branchId: string, op: string): { status: string; record: StepRecord } | undefined {
    const found = this.recorded.get(`${branchId}-${op}`);
    if (found && found.record.k !== step) throw new DtmWorkflowDivergedError(this.name, this.gid, branchId, op, found.record.k, step);
    return found;
  }

  private refused(branchId: string, reason: string, cause?: DtmFailureError): DtmFailureError {
    if (!this.env.compensateFailedStep) {
      const index = this.phase2.findLastIndex((p) => p.branchId === branchId && p.op === 'rollback');
      if (index >= 0) this.phase2.splice(index, 1);
    }
    return new DtmFailureError(reason, { gid: this.gid, branchId, cause });
  }

  private phase2Handle(item: Phase2Item): WorkflowPhase2 {
    const tx = this.tx;
    const call = async (target: string, payload: Payload | undefined): Promise<unknown> => (await tx.call(target, payload, item.branchId, item.op)).body;
    return {
      gid: tx.gid,
      branchId: item.branchId,
      op: item.op,
      barrier: this.barrier(item.branchId, item.op),
      http: call,
      grpc: call,
    };
  }
}

/** One step: callbacks first (at most one of each op), then exactly one action. */
class Step implements WorkflowStep {
  private acted = false;
  private readonly callbacks = new Set<'commit' | 'rollback'>();

  constructor(
    private readonly execution: WorkflowExecution<unknown>,
    private readonly name: string,
    private readonly branchId: string,
  ) {}

  onRollback(callback: WorkflowCallback): this {
    return this.callback('rollback', callback);
  }

  onCommit(callback: WorkflowCallback): this {
    return this.callback('commit', callback);
  }

  run<T, H = unknown>(action: (handle: H) => Promise<T> | T, options: LocalStepOptions<H> = {}): Promise<T> {
    this.act();
    const { barrier } = options;
    if (barrier === undefined) return this.outcome(this.execution.action<T>(this.name, this.branchId, async () => action(undefined as H)));
    const db = this.execution.barrierDatabase(barrier);
    const branch = this.execution.barrier(this.branchId, 'action');
    return this.outcome(
      this.execution.action<T>(this.name, this.branchId, async () => {
        // committed but not recorded (a crash in between): the barrier skips it; the value is gone
        const outcome = await branch.callWithDb(db, async (handle) => action(handle));
        return outcome.executed ? outcome.result : undefined;
      }),
    );
  }

  http<T = unknown>(target: string, payload?: Payload): Promise<T> {
    return this.call<T>(target, payload);
  }

  grpc<T = unknown>(target: string, payload?: Payload): Promise<T> {
    return this.call<T>(target, payload);
  }

  xa<T, H = unknown>(dbOrName: XaDatabase<H> | string, action: (handle: H) => Promise<T> | T): Promise<T> {
    // its XA commit and rollback are its phase 2, recorded under its branch id and those ops
    if (this.callbacks.size > 0) throw new DtmUsageError(MESSAGES.workflowXaStepCallbacks(this.name));
    this.act();
    const execution = this.execution;
    const db = execution.xaDatabase(dbOrName);
    const xid = xidOf({ gid: execution.gid, branchId: this.branchId }, db.dialect);
    const row = { transType: 'workflow', gid: execution.gid, branchId: this.branchId, table: execution.barrierTable };
    const acted = execution.action<T>(this.name, this.branchId, async () => {
      // prepared in an earlier execution but not recorded: its outcome cannot be read back, so roll back
      if (execution.wasRecorded(this.name, this.branchId, 'business')) throw new DtmFailureError(MESSAGES.workflowXaNotResumable(this.name));
      return prepareXa(db, xid, row, async (handle) => action(handle), () => execution.recordBusiness(this.name, this.branchId), execution.bounds);
    });
    // phase 2 of the XA transaction, whatever the action's outcome (a failed or unknown prepare is
    // rolled back): added after the action, as DTM's Go SDK does, so that the FAILURE of the action
    // drops the step's own onRollback (unless compensateFailedStep), never the XA rollback
    const phase2 = () => {
      execution.addPhase2({ branchId: this.branchId, step: this.name, op: 'commit', callback: () => finishXa(db, xid, true, row) });
      execution.addPhase2({ branchId: this.branchId, step: this.name, op: 'rollback', callback: () => finishXa(db, xid, false, row) });
    };
    return this.outcome(
      acted.then(
        (value) => (phase2(), value),
        (err: unknown) => {
          phase2();
          throw err;
        },
      ),
    );
  }

  private call<T>(target: string, payload: Payload | undefined): Promise<T> {
    this.act();
    return this.outcome(this.execution.action<T>(this.name, this.branchId, async () => (await this.execution.transaction.call(target, payload, this.branchId, 'action')).body));
  }

  private outcome<T>(action: Promise<T>): Promise<T> {
    return this.execution.outcome(this.name, this.branchId, action);
  }

  private callback(op: 'commit' | 'rollback', callback: WorkflowCallback): this {
    if (this.acted) throw new DtmUsageError(MESSAGES.workflowCallbackAfterAction(this.name, op));
    // each phase-2 callback is recorded under the step's branch id and op: a second one would share its record
    if (this.callbacks.has(op)) throw new DtmUsageError(MESSAGES.workflowSecondCallback(this.name, op));
    this.callbacks.add(op);
    this.execution.addPhase2({ branchId: this.branchId, step: this.name, op, callback });
    return this;
  }

  private act(): void {
    if (this.acted) throw new DtmUsageError(MESSAGES.workflowSecondAction(this.name));
    this.acted = true;
  }
}
