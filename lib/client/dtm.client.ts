import { Inject, Injectable, Optional, type OnModuleDestroy } from '@nestjs/common';
import { BranchBarrier } from '../barrier/branch-barrier.js';
import { DtmBranchRegistry } from '../branches/branch.registry.js';
import type { BranchInfo } from '../branches/branch.types.js';
import { currentPassThroughHeaders } from '../context/dtm-context.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_CONFIG } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmDisabledError } from '../errors/dtm-disabled.error.js';
import { DtmError } from '../errors/dtm-error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { Msg } from '../transactions/msg.js';
import { Saga } from '../transactions/saga.js';
import { Tcc } from '../transactions/tcc.js';
import { assertGid } from '../transactions/transaction-base.js';
import type { TransactionRuntime } from '../transactions/transaction-runtime.js';
import { Xa } from '../transactions/xa.js';
import { xaLocalTransaction } from '../xa/xa-local-transaction.js';
import type { XaDatabase } from '../xa/xa.types.js';
import type {
  FinalResult,
  ListFilter,
  ListPage,
  PingResult,
  TransactionOptions,
  TransactionRecord,
  WaitOptions,
} from './dtm-client.types.js';
import { DtmHttp } from './dtm-http.js';
import { fromWireTransaction, toWireTime } from './dtm-wire.js';
import type { WireListAnswer, WireQueryAnswer } from './dtm-wire.types.js';

/** The application side of DTM: starts, steers and inspects global transactions. Injectable. */
@Injectable()
export class DtmClient implements OnModuleDestroy {
  private readonly http: DtmHttp;
  private readonly runtime: TransactionRuntime;

  constructor(
    @Inject(DTM_CONFIG) readonly config: DtmConfig,
    @Optional() branches?: DtmBranchRegistry,
  ) {
    this.http = new DtmHttp(config);
    this.runtime = {
      config,
      http: this.http,
      passThroughHeaders: currentPassThroughHeaders,
      waitForFinal: (gid, options) => this.waitForFinal(gid, options),
      branchUrl: (kind, name) => {
        if (!branches) throw new DtmError(MESSAGES.noRegistry(name));
        return branches.url(kind, name);
      },
      hasBranch: (kind, name) => branches?.has(kind, name) ?? false,
    };
  }

  /** False when `lynx.dtm.enabled` is false; every other method then throws `DtmDisabledError`. */
  get enabled(): boolean {
    return this.config.enabled;
  }

  /** A new global transaction id from the DTM server (`/newGid`). */
  async generateGid(): Promise<string> {
    this.assertEnabled('generateGid()');
    const answer = await this.http.server<{ gid: string }>('GET', 'newGid', undefined, { operation: 'newGid' });
    return answer.gid;
  }

  /** What DTM stores for `gid`: status, rollback reason, options and branches; `null` if DTM has no such transaction. */
  async query(gid: string): Promise<TransactionRecord | null> {
    this.assertEnabled('query()');
    assertGid(gid);
    const answer = await this.http.server<WireQueryAnswer>('GET', `query?gid=${encodeURIComponent(gid)}`, undefined, { gid, operation: 'query' });
    return answer.transaction ? fromWireTransaction(answer.transaction, answer.branches ?? []) : null;
  }

  /** One page of DTM's transactions (`/all`), newest first; pass `nextPosition` back as `position` for the next. */
  async list(filter: ListFilter = {}): Promise<ListPage> {
    this.assertEnabled('list()');
    const params = new URLSearchParams();
    if (filter.gid) params.set('gid', filter.gid);
    if (filter.position) params.set('position', filter.position);
    if (filter.limit !== undefined) params.set('limit', String(filter.limit));
    if (filter.status) params.set('status', filter.status);
    if (filter.transType) params.set('transType', filter.transType);
    if (filter.createdAfter) params.set('createTimeStart', toWireTime(filter.createdAfter));
    if (filter.createdBefore) params.set('createTimeEnd', toWireTime(filter.createdBefore));
    const query = params.toString();
    const answer = await this.http.server<WireListAnswer>('GET', `all${query ? `?${query}` : ''}`, undefined, { operation: 'list' });
    return {
      transactions: (answer.transactions ?? []).map((t) => {
        const { branches: _branches, ...record } = fromWireTransaction(t, []);
        return record;
      }),
      nextPosition: answer.next_position || undefined,
    };
  }

  /** Stops an unfinished transaction: DTM marks it `failed` without calling any more branches (`/forceStop`). */
  async forceStop(gid: string): Promise<void> {
    this.assertEnabled('forceStop()');
    assertGid(gid);
    await this.http.operation('forceStop', { gid }, { gid, operation: 'forceStop' });
  }

  /** Checks that the DTM server answers (`/api/ping`, then `/version`); changes nothing. */
  async ping(): Promise<PingResult> {
    this.assertEnabled('ping()');
    const started = Date.now();
    await this.http.server('GET', new URL('../ping', `${this.config.serverUrl}/`).toString(), undefined, { operation: 'ping' });
    const latencyMs = Date.now() - started;
    const { version } = await this.http.server<{ version: string }>('GET', 'version', undefined, { operation: 'version' });
    return { version, latencyMs };
  }

  /** A new saga with global transaction id `gid`; add steps, then `submit()` or `submitAndWait()`. */
  newSaga(gid: string, options?: TransactionOptions): Saga {
    this.assertEnabled('newSaga()');
    return new Saga(this.runtime, gid, options);
  }

  /** A new two-phase message with global transaction id `gid`; add branches, then `prepare()`+`submit()` or `doAndSubmit()`. */
  newMsg(gid: string, options?: TransactionOptions): Msg {
    this.assertEnabled('newMsg()');
    return new Msg(this.runtime, gid, options);
  }

  /**
   * Runs a TCC transaction: prepares it (with `options`), runs `body` — whose `tcc.callBranch()`
   * registers each branch and calls its Try — then submits (DTM confirms every branch) or, if `body`
   * threw, aborts with the error message as rollback reason (DTM cancels every registered branch)
   * and rethrows. Resolves with what `body` returned.
   */
  async tccGlobalTransaction<T>(gid: string, body: (tcc: Tcc) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.assertEnabled('tccGlobalTransaction()');
    return new Tcc(this.runtime, gid, options).run(body);
  }

  /** The sub-transaction barrier of the branch call `branch` (its `@BranchContext()`), on the module's `barrier_table`. */
  barrier(branch: BranchInfo): BranchBarrier {
    return BranchBarrier.from(branch, { table: this.config.barrierTable });
  }

  /**
   * The resource manager's side of an XA branch, for the call `branch` (its `@BranchContext()`):
   * for `op=action` runs `business` on a dedicated connection of `db` inside XA START ... XA PREPARE
   * (PostgreSQL: BEGIN ... PREPARE TRANSACTION), registering the branch with DTM before preparing;
   * for `op=commit|rollback` finishes it (idempotently) without running `business`. Errors roll the
   * branch back and propagate (a `DtmFailureError` then makes the transaction abort).
   * `@XaBranch(name, { db })` does this for a handler.
   */
  async xaLocalTransaction<H, T>(branch: BranchInfo, db: XaDatabase<H>, business: (handle: H) => Promise<T>): Promise<T | undefined> {
    this.assertEnabled('xaLocalTransaction()');
    return xaLocalTransaction({ http: this.http, config: this.config }, branch, db, business);
  }

  /**
   * Nested TCC: inside a `@TccTry` handler, the TCC transaction of the branch being served (its
   * `@BranchContext()`), so that the handler can register and try sub-branches of its own branch
   * (ids `0101`, `0102`, ... under branch `01`), as DTM's Go SDK (`TccFromQuery`) allows.
   */
  tccFromBranch(branch: BranchInfo, options?: TransactionOptions): Tcc {
    this.assertEnabled('tccFromBranch()');
    if (branch?.transType !== 'tcc') throw new DtmError(MESSAGES.notInTccBranch());
    return new Tcc(this.runtime, branch.gid, options, branch.branchId, branch.dtm);
  }

  /**
   * Runs an XA transaction: prepares it, runs `body` — whose `xa.callBranch()` calls each branch's
   * action — then submits (DTM commits every branch) or, if `body` threw, aborts (DTM rolls back
   * the prepared branches) and rethrows. Resolves with what `body` returned.
   */
  async xaGlobalTransaction<T>(gid: string, body: (xa: Xa) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.assertEnabled('xaGlobalTransaction()');
    return new Xa(this.runtime, gid, options).run(body);
  }

  /**
   * Waits until `gid` is `succeed` or `failed` and returns the final status, rollback reason and
   * branches. A rollback is a result; throws `DtmOngoingError` if not final within `timeoutMs`.
   */
  async waitForFinal(gid: string, options: WaitOptions = {}): Promise<FinalResult> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let interval = options.pollIntervalMs ?? 50;
    for (;;) {
      const record = await this.query(gid);
      if (!record) throw new DtmError(MESSAGES.unknownTransaction(gid), { gid });
      if (record.status === 'succeed' || record.status === 'failed') {
        return { gid, status: record.status, rollbackReason: record.rollbackReason, branches: record.branches, transaction: record };
      }
      if (Date.now() >= deadline) throw new DtmOngoingError(MESSAGES.notFinal(gid, record.status, timeoutMs), { gid });
      await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
      interval = Math.min(interval * 1.5, 1000);
    }
  }

  /** Closes the keep-alive connections when the Nest app shuts down. */
  onModuleDestroy(): void {
    this.http.close();
  }

  private assertEnabled(operation: string): void {
    if (!this.config.enabled) throw new DtmDisabledError(operation);
  }
}
