import type { FinalResult, Payload, TransactionOptions, TransactionRecord, WaitOptions } from '../transport/dtm.types.js';
import type { RemoteBranch, RemoteBranchKind } from '../contracts/branch-contract.js';
import type { EncodedPayload, TransactionRequest } from '../transport/dtm-transport.js';
import { isTransientDtmError, mayHaveReachedDtm } from '../transport/dtm-transient.js';
import { assertOneTransport } from '../transport/branch-target.js';
import { sameSteps, Transaction } from './transaction.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmOutcomeUnknownError } from '../errors/dtm-outcome-unknown.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { assertWaitOptions } from './wait-options.js';

/** The largest request DTM v1.19's gRPC API takes (grpc-go's default receive limit, which DTM does not raise). */
export const DTM_GRPC_MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** Saga and msg: steps DTM calls, given to it whole; the app submits and DTM drives the rest. */
export abstract class StepTransaction extends Transaction {
  protected readonly steps: Record<string, string>[] = [];
  protected readonly payloads: EncodedPayload[] = [];
  /** The bytes of {@link payloads} together, counted over gRPC only (DTM's gRPC API takes them in one request). */
  private payloadBytes = 0;
  /** Steps naming another service's branch, resolved from its manifest before the transaction is sent. */
  protected remoteSteps?: { index: number; ref: RemoteBranch; kind: RemoteBranchKind; payload: Payload }[];

  /** Adds a step of another service's branch `ref` (its targets are filled in by {@link resolveRemote}). */
  protected addRemote(ref: RemoteBranch, kind: RemoteBranchKind, payload: Payload): void {
    this.steps.push(kind === 'saga' ? { action: '', compensate: '' } : { action: '' });
    this.payloads.push('');
    (this.remoteSteps ??= []).push({ index: this.steps.length - 1, ref, kind, payload });
  }

  /**
   * Adds the payload of the next step; over gRPC refused (`DtmUsageError`) when it takes the
   * payloads together over {@link DTM_GRPC_MAX_REQUEST_BYTES}, which DTM would refuse at the submit.
   */
  protected pushPayload(payload: EncodedPayload): void {
    if (this.protocol === 'grpc') {
      const total = this.payloadBytes + byteLength(payload);
      this.assertWithinDtmGrpc(this.payloads.length, total);
      this.payloadBytes = total;
    }
    this.payloads.push(payload);
  }

  /** Throws the `DtmUsageError` of a step `index` whose payload takes the payloads to `total` bytes, when that is over what DTM's gRPC API takes. */
  private assertWithinDtmGrpc(index: number, total: number): void {
    if (total > DTM_GRPC_MAX_REQUEST_BYTES) throw new DtmUsageError(MESSAGES.payloadsOverDtmGrpcLimit(`${this.transType} ${this.gid} step ${index}`, this.transType, total, DTM_GRPC_MAX_REQUEST_BYTES), { gid: this.gid });
  }

  /**
   * Fills in the targets and payloads of the steps added by name of another service (from the kept
   * manifests: no call once fetched), with the transaction's span active: the manifests' fetch and
   * the contracts' payload checks are part of its preparation.
   */
  protected resolveRemote(): Promise<void> {
    return this.withinObservation(() => this.resolveRemoteSteps(), undefined);
  }

  /** {@link resolveRemote}'s work. */
  private async resolveRemoteSteps(): Promise<void> {
    const steps = this.remoteSteps;
    if (!steps) return;
    const resolved = await Promise.all(steps.map((s) => this.remoteTargets(s.ref, s.kind)));
    // every step is checked before any is filled in; a refused one stays to resolve (a submit again is refused too, never sent with empty targets)
    steps.forEach((s, i) => assertOneTransport(() => `${this.transType} ${this.gid} step ${s.index} (branch ${JSON.stringify(s.ref.branch)} of service ${JSON.stringify(s.ref.service)})`, resolved[i], this.gid));
    const data = steps.map((s, i) => this.encode(s.payload, resolved[i].action));
    await this.assertContractPayloads(steps.map((s, i) => ({ ref: s.ref, target: resolved[i].action, data: data[i], where: `step ${s.index}` })));
    if (this.protocol === 'grpc') {
      let total = this.payloadBytes;
      steps.forEach((s, i) => {
        total += byteLength(data[i]);
        this.assertWithinDtmGrpc(s.index, total);
      });
      this.payloadBytes = total;
    }
    steps.forEach((s, i) => {
      const targets = resolved[i];
      this.steps[s.index].action = targets.action.value;
      if (s.kind === 'saga') this.steps[s.index].compensate = targets.compensate?.value ?? '';
      this.payloads[s.index] = data[i];
    });
    this.remoteSteps = undefined;
  }

  /**
   * Sets more per-transaction options (merged with earlier ones; seconds); unset options take the
   * module's `lynx.dtm` values. Before the transaction is sent to DTM only (a message's `prepare()`,
   * a saga's or message's `submit()`): after it, refused with `DtmUsageError` (DTM keeps the options it was sent with).
   */
  setOptions(options: TransactionOptions): this {
    this.mergeOptions(options);
    return this;
  }

  /**
   * Submits the transaction; DTM then drives it. With `waitResult`, resolves once DTM's first round
   * succeeded. DTM v1.19 answers success even when storing the transaction failed (and runs its
   * branches): {@link submitAndWait} sees that and submits again; after `submit()`, query the gid to be sure.
   */
  async submit(): Promise<void> {
    this.observeStart();
    try {
      if (this.remoteSteps) await this.resolveRemote();
      await this.submitRequest(this.submission(), false);
    } catch (err) {
      try {
        await this.submitFailed(err);
      } catch (thrown) {
        this.observeEnd('error', thrown);
        throw thrown;
      }
    }
    this.observeEnd('submitted');
  }

  /**
   * Submits and waits for the final status: resolves with `succeed` or `failed` (a rollback is a
   * result, with its reason). Throws `DtmUnavailableError` only when the submit was never sent (DTM
   * could not be reached): safe to run again, under a new gid too; not after a message's `prepare()`
   * (DTM holds it prepared: the wait sends the submit again, as below). When DTM answers that it holds
   * no such gid after a submit (acknowledged, or one that may have reached it), or still holds a
   * message prepared first as prepared, the same transaction is submitted again under the same gid:
   * DTM v1.19 can have run its branches without storing the submit. Throws `DtmOutcomeUnknownError` when the outcome is not known within `wait.timeout`
   * (status queries are retried through DTM restarts and network errors until then): wait again
   * for the same gid (or, with `lastStatus` `absent`, call this again), never a new one. Throws
   * `DtmGidInUseError` if DTM refused the submit because it holds another transaction under the gid
   * (also, nothing sent, when DTM holds another one unfinished under it, see {@link assertGidFree}).
   * A saga or message whose final record holds another transaction's branches (another submit took
   * the gid after that check) is `DtmOutcomeUnknownError`: the other's outcome is not this one's.
   */
  async submitAndWait(wait?: WaitOptions): Promise<FinalResult> {
    assertWaitOptions(wait); // before the submit: a refusal after it would read as "not sent" while DTM runs it
    this.observeStart();
    let final: FinalResult;
    try {
      if (this.remoteSteps) await this.resolveRemote();
      const request = this.submission(); // built (and with authenticated calls signed) once: the check, the submit, a submit again and the final comparison
      if (!this.sentToDtm) await this.assertGidFree(request);
      const again = () => this.submitRequest(request, true);
      let lost: Error | undefined;
      try {
        await again();
      } catch (err) {
        // a submit never sent (DTM refusing connections for a moment) of a message this object prepared: DTM holds it prepared, and the wait sends it again, as a TCC's
        if (!(this.preparedInDtm ? isTransientDtmError(err) : mayHaveReachedDtm(err))) throw err;
        lost = err as Error; // the submit may have reached DTM before the connection broke: what DTM holds decides
      }
      // the status queries of the wait (and a submit sent again) with the transaction's span active, as the submit
      final = await this.withinObservation((w) => this.runtime.waitForFinal(this.gid, w, { lost, again, mayBeAbsent: true, transType: this.transType, protocol: this.protocol }, this.steps), wait);
      // another transaction under the gid (submitted at the same time, after the check of the gid): its outcome is not this one's
      if (final.transaction.gid !== this.gid) {
        throw new DtmOutcomeUnknownError(MESSAGES.gidTakenOtherCase(this.gid, final.transaction.gid, this.transType, final.status), this.gid, 'unknown');
      }
      if (!sameSteps(final.transaction, request)) {
        throw new DtmOutcomeUnknownError(MESSAGES.gidTakenMeanwhile(this.gid, this.transType, final.status), this.gid, 'unknown');
      }
    } catch (err) {
      const thrown = this.submitError(err);
      this.observeEnd('error', thrown);
      throw thrown;
    }
    this.observeEnd(final.status, final.status === 'failed' ? final.rollbackReason : undefined);
    return final;
  }

  /**
   * DTM v1.19 takes a saga's or whole message's submit for a gid it holds unfinished and runs the
   * submitted steps over that transaction (`dtmsvr/api.go`, svcSubmit): a saga or message still
   * running with other steps is marked done once the new steps succeed (its own never run, or are
   * never compensated; on boltdb its record is rewritten with the new steps, so DTM never retries
   * its own); a prepared message or TCC is driven as this transaction. So, before the first submit
   * of {@link submitAndWait} (not after this object's own prepare), a gid DTM holds unfinished for
   * anything but this same transaction (a resubmission of it, same steps and payloads, goes on) is
   * refused with `DtmGidInUseError`, nothing sent. A query that got no connection is thrown
   * (`DtmUnavailableError`: nothing sent; the wait's queries go there too); one that otherwise
   * fails leaves the submit to say what happened. DTM refuses a finished one itself.
   */
  private async assertGidFree(request: TransactionRequest): Promise<void> {
    let record: TransactionRecord | null;
    try {
      record = await this.withinObservation((gid) => this.runtime.query(gid), this.gid);
    } catch (err) {
      if (isTransientDtmError(err) && !mayHaveReachedDtm(err)) throw err;
      return;
    }
    // DTM's MySQL store finds a gid without case: a record of another gid is another transaction, finished or not
    if (record && record.gid !== this.gid) throw new DtmGidInUseError('submit', this.gid, record.status, MESSAGES.gidHeldOtherCase(record.gid, record.transType), { protocol: this.protocol });
    if (!record || record.status === 'succeed' || record.status === 'failed' || sameSteps(record, request)) return;
    throw new DtmGidInUseError('submit', this.gid, record.status, MESSAGES.gidHeldUnfinished(record.transType, record.status, this.transType), { protocol: this.protocol });
  }

  /**
   * What {@link submit} does when its submit failed with `err`: throws {@link submitError}'s error;
   * a subclass that finds the submit took all the same (DTM's record, read on that error path only)
   * returns instead, and the submit resolves.
   */
  protected async submitFailed(err: unknown): Promise<void> {
    throw this.submitError(err);
  }

  /** The error {@link submit} / {@link submitAndWait} throw for `err`: `err` itself; a subclass restating it does so here, so that `transaction.end` carries what the caller gets. */
  protected submitError(err: unknown): unknown {
    return err;
  }

  /** What submit sends. */
  protected abstract submission(): TransactionRequest;
}

/** The bytes `payload` takes on the wire. */
function byteLength(payload: EncodedPayload): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
}
