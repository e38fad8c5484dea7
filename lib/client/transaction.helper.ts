import { Injectable } from '@nestjs/common';
import type { BranchAnswer, FinalResult, Payload, TransactionOptions, WaitOptions } from '../transport/dtm.types.js';
import { isUndecidedSubmit } from '../transport/dtm-transient.js';
import { DtmClient } from './dtm.client.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { parseTarget } from '../transport/branch-target.js';
import type { WorkflowResult } from '../workflow/workflow.types.js';
import type { GlobalTransactionOutcome } from '../transactions/global-transaction.js';
import type { Tcc } from '../transactions/tcc.js';
import type { Xa } from '../transactions/xa.js';

/**
 * A saga step for {@link TransactionHelper.executeSaga}: `action` is a URL or gRPC target (with an
 * optional `compensate`), the name of this app's `@SagaAction` (its `@SagaCompensate` is the
 * compensation), or `''` (nothing to call).
 */
export interface SagaBranch {
  action: string;
  compensate?: string;
  data?: Payload;
}

/**
 * A TCC branch for {@link TransactionHelper.executeTcc}: three URLs (or gRPC targets), or `try`
 * naming this app's TCC branch (then no `confirm` / `cancel`). A target `try` without its `confirm`
 * or `cancel` is refused (`''` says there is nothing to do).
 */
export interface TccBranch {
  try: string;
  confirm?: string;
  cancel?: string;
  data?: Payload;
}

/** An XA branch for {@link TransactionHelper.executeXa}: a URL, a gRPC target or the name of this app's `@XaBranch`. */
export interface XaBranch {
  action: string;
  data?: Payload;
}

/** A message branch for {@link TransactionHelper.executeMsg}: a URL (`topic://<name>` too) or the name of this app's `@MsgBranch`. */
export interface MsgBranch {
  action: string;
  data?: Payload;
}

/** Options of the helper's `execute*` methods: the transaction options, plus whether to wait for the end. */
export interface HelperOptions extends TransactionOptions {
  /** Wait for `succeed` / `failed` (true, or how long) and return it as `final`. */
  waitForFinal?: boolean | WaitOptions;
}

/** What an `execute*` call did. */
export interface ExecutionResult {
  gid: string;
  /** What each TCC Try / XA action answered, in order (empty for saga and msg). */
  answers: BranchAnswer[];
  /** The final status, when `waitForFinal` was asked for. */
  final?: FinalResult;
}

/** One-call transactions from lists of branches, like the Go-Lynx plugin's helper. Injectable. */
@Injectable()
export class TransactionHelper {
  constructor(private readonly client: DtmClient) {}

  /** A new gid from the DTM server; throws if it cannot be had. */
  async mustGenGid(): Promise<string> {
    return this.client.generateGid();
  }

  /** Submits a saga of `branches` in order. */
  async executeSaga(gid: string, branches: SagaBranch[], options: HelperOptions = {}): Promise<ExecutionResult> {
    assertBranches('executeSaga', branches);
    const saga = this.client.newSaga(gid, transactionOptions(options));
    for (const b of branches) {
      if (b.compensate === undefined) saga.add(b.action, b.data);
      else saga.add(b.action, b.compensate, b.data);
    }
    if (!options.waitForFinal) {
      await saga.submit();
      return { gid, answers: [] };
    }
    // submitAndWait, not submit and a wait: it submits again when DTM answers it holds no such gid
    return { gid, answers: [], final: await saga.submitAndWait(options.waitForFinal === true ? {} : options.waitForFinal) };
  }

  /**
   * Runs a TCC transaction: registers and tries each branch in order, then confirms all, or cancels
   * all if a Try fails. A branch whose `try` is a target needs both `confirm` and `cancel` (`''`
   * when there is nothing to do): one missing is refused with `DtmUsageError` before anything is sent.
   * With `waitForFinal`, as `DtmClient.tccGlobalTransactionAndWait`: a Try's FAILURE is a result
   * (`failed`), and a submit DTM did not store (the transaction still prepared) is sent again.
   */
  async executeTcc(gid: string, branches: TccBranch[], options: HelperOptions = {}): Promise<ExecutionResult> {
    assertBranches('executeTcc', branches);
    branches.forEach(assertTccBranch);
    const answers: BranchAnswer[] = [];
    const body = async (tcc: Tcc) => {
      for (const b of branches) {
        answers.push(await (b.confirm === undefined ? tcc.callBranch(b.data, b.try) : tcc.callBranch(b.data, b.try, b.confirm, b.cancel!)));
      }
    };
    if (!options.waitForFinal) {
      await this.client.tccGlobalTransaction(gid, body, transactionOptions(options));
      return { gid, answers };
    }
    // tccGlobalTransactionAndWait, not a run and a wait: it sends the submit again while DTM still holds the transaction prepared
    return { gid, answers, final: finalOf(await this.client.tccGlobalTransactionAndWait(gid, body, transactionOptions(options), waitOptions(options.waitForFinal))) };
  }

  /** Runs an XA transaction: calls each branch's action in order, then commits all, or rolls back if one fails (with `waitForFinal`, as {@link executeTcc}). */
  async executeXa(gid: string, branches: XaBranch[], options: HelperOptions = {}): Promise<ExecutionResult> {
    assertBranches('executeXa', branches);
    const answers: BranchAnswer[] = [];
    const body = async (xa: Xa) => {
      for (const b of branches) answers.push(await xa.callBranch(b.data, b.action));
    };
    if (!options.waitForFinal) {
      await this.client.xaGlobalTransaction(gid, body, transactionOptions(options));
      return { gid, answers };
    }
    // as executeTcc: the submit is sent again while DTM still holds the transaction prepared
    return { gid, answers, final: finalOf(await this.client.xaGlobalTransactionAndWait(gid, body, transactionOptions(options), waitOptions(options.waitForFinal))) };
  }

  /**
   * Prepares a message of `branches` with back-check `queryPrepared` (a URL or a `@MsgQueryPrepared`
   * name), then submits it. A submit that does not get through is `DtmOutcomeUnknownError` (DTM holds
   * the message prepared); with `waitForFinal`, that is waited out, as is, with `waitResult`, DTM's first
   * round that did not deliver every branch (`DtmOngoingError` without it).
   */
  async executeMsg(gid: string, queryPrepared: string, branches: MsgBranch[], options: HelperOptions = {}): Promise<ExecutionResult> {
    assertBranches('executeMsg', branches);
    const msg = this.client.newMsg(gid, transactionOptions(options));
    for (const b of branches) msg.add(b.action, b.data);
    await msg.prepare(queryPrepared);
    if (!options.waitForFinal) {
      await msg.submit();
      return { gid, answers: [] };
    }
    // a submit that may not have got through, and with waitResult a first round that did not deliver every
    // branch, are waited out by submitAndWait, which reports the final status as the other execute* do
    const wait = waitOptions(options.waitForFinal);
    try {
      return { gid, answers: [], final: await msg.submitAndWait(wait) };
    } catch (err) {
      // an answer to the submit that is not DTM's decision (a gateway's 4xx, say): DTM holds the message prepared, its back-check decides
      if (!isUndecidedSubmit(err)) throw err;
    }
    return { gid, answers: [], final: await this.client.waitForFinal(gid, wait) };
  }

  /** Runs (or re-attaches to) the workflow `name` as `gid`: see `DtmClient.executeWorkflow`. */
  async executeWorkflow<R = unknown>(name: string, gid: string, input?: unknown, options?: TransactionOptions): Promise<WorkflowResult<R>> {
    return this.client.executeWorkflow<R>(name, gid, input, options);
  }
}

/** The wait's options of `waitForFinal` (`true`: the defaults). */
function waitOptions(waitForFinal: true | WaitOptions): WaitOptions {
  return waitForFinal === true ? {} : waitForFinal;
}

/** The final status of a TCC / XA outcome, without the body's result (the helper's body returns none). */
function finalOf(outcome: GlobalTransactionOutcome<void>): FinalResult {
  const { result: _result, ...final } = outcome;
  return final;
}

function transactionOptions(options: HelperOptions): TransactionOptions {
  const { waitForFinal: _wait, ...rest } = options;
  return rest;
}

/** A TCC branch is three targets, or a name of this app's TCC branch (no confirm, no cancel): checked before anything is sent. */
function assertTccBranch(b: TccBranch, index: number): void {
  const hasConfirm = typeof b.confirm === 'string';
  const hasCancel = typeof b.cancel === 'string';
  if (hasConfirm && hasCancel) return;
  const named = b.confirm === undefined && b.cancel === undefined && parseTarget(b.try).kind === 'name';
  if (!named) throw new DtmUsageError(MESSAGES.helperTccConfirmCancelMissing(index, b.try, hasConfirm ? 'cancel' : hasCancel ? 'confirm' : 'confirm and cancel'));
}

function assertBranches(method: string, branches: unknown[]): void {
  if (!Array.isArray(branches) || branches.length === 0) throw new DtmUsageError(MESSAGES.noBranches(method));
  const bad = branches.findIndex((b) => typeof b !== 'object' || b === null || Array.isArray(b));
  if (bad >= 0) throw new DtmUsageError(MESSAGES.helperBranchNotObject(method, bad, branches[bad]));
}
