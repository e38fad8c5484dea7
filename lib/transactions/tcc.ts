import type { BranchAnswer, Payload, TransactionOptions } from '../transport/dtm.types.js';
import { assertOneTransport, parseTarget, type BranchTarget } from '../transport/branch-target.js';
import { isRemoteBranch, type RemoteBranch } from '../contracts/branch-contract.js';
import { GlobalTransaction } from './global-transaction.js';
import { restatedContext } from '../errors/dtm-error.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmRemoteBranchError } from '../errors/dtm-remote-branch.error.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { defaultDtmConfig } from '../config/dtm-config.keys.js';
import type { ParentBranch } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** A TCC global transaction, handed to the callback of `DtmClient.tccGlobalTransaction`. */
export class Tcc extends GlobalTransaction {
  /** A nested TCC over HTTP: whether DTM's record was read for the transaction's protocol (see {@link followDtmProtocol}). */
  private dtmProtocolRead = false;
  /** A nested TCC called over HTTP that moved to gRPC (see {@link followDtmProtocol}): its registrations go to `grpc_server`, which an HTTP-only app may not have set. */
  private movedToGrpc = false;

  /** @internal use `DtmClient.tccGlobalTransaction` or `DtmClient.tccFromBranch` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions, parent?: ParentBranch) {
    super(runtime, gid, 'tcc', options, parent);
  }

  /** Registers and tries this app's TCC branch `name` (`@TccTry(name)`, `@TccConfirm(name)`, `@TccCancel(name)`). */
  callBranch(payload: Payload, name: string): Promise<BranchAnswer>;
  /**
   * Registers a branch (its confirm and cancel targets, and `payload` as their body) with DTM, then
   * calls its Try. Targets are URLs or, in a gRPC transaction, gRPC targets too, all three of one
   * kind (DTM sends the Try's payload bytes to the confirm and cancel; `''` aside). Resolves with the
   * Try's answer; throws `DtmFailureError` if the Try answered FAILURE (the transaction is then
   * cancelled), or another error if it could not be called.
   */
  callBranch(payload: Payload, tryTarget: string, confirmTarget: string, cancelTarget: string): Promise<BranchAnswer>;
  /**
   * Registers and tries another service's TCC branch by name: an entry of its contract
   * (`Stock.reserve`, whose payload type `payload` must have) or `{ service, branch }`; its three
   * targets come from the service's manifest (`lynx.dtm.services`).
   */
  callBranch<P>(payload: NoInfer<P>, branch: RemoteBranch<'tcc', P>): Promise<BranchAnswer>;
  callBranch(payload: Payload, tryOrName: string | RemoteBranch, confirm?: string, cancel?: string): Promise<BranchAnswer> {
    return this.branchCall(() => this.callOne(payload, tryOrName, confirm, cancel));
  }

  /** {@link callBranch}: the targets, then the registration and the Try. */
  private async callOne(payload: Payload, tryOrName: string | RemoteBranch, confirm?: string, cancel?: string): Promise<BranchAnswer> {
    if (this.parent && this.protocol === 'http' && !this.dtmProtocolRead) await this.followDtmProtocol(tryOrName);
    if (isRemoteBranch(tryOrName)) {
      const targets = await this.remoteTargets(tryOrName, 'tcc');
      assertOneTransport(() => `tcc ${this.gid} branch ${JSON.stringify(tryOrName.branch)} of service ${JSON.stringify(tryOrName.service)}`, targets, this.gid);
      return this.register(payload, targets.try, targets.confirm, targets.cancel, tryOrName);
    }
    const named = confirm === undefined && parseTarget(tryOrName, this.gid).kind === 'name';
    if (!named && (typeof confirm !== 'string' || typeof cancel !== 'string')) throw new DtmUsageError(MESSAGES.tccConfirmCancelMissing(String(tryOrName)), { gid: this.gid });
    const tryTarget = this.target(tryOrName, 'tcc-try', 'try', true);
    const confirmTarget = this.target(named ? tryOrName : (confirm ?? ''), 'tcc-confirm', 'confirm');
    const cancelTarget = this.target(named ? tryOrName : (cancel ?? ''), 'tcc-cancel', 'cancel');
    assertOneTransport(() => `tcc ${this.gid} branch${named ? ` ${JSON.stringify(tryOrName)}` : ''}`, { try: tryTarget, confirm: confirmTarget, cancel: cancelTarget }, this.gid);
    return this.register(payload, tryTarget, confirmTarget, cancelTarget);
  }

  /**
   * A nested TCC talks to DTM as its Try was called (the call's `dtm`): over HTTP for a Try called
   * over HTTP. A gRPC transaction calls HTTP Tries too (with `dtm` its HTTP server URL, as DTM's
   * SDKs expect), and DTM calls the gRPC branches of a transaction it holds as gRPC over gRPC, so a
   * sub-branch that needs gRPC (a gRPC target, a branch of this app or another service served over gRPC only)
   * moves this TCC to gRPC when DTM's record says the transaction is one (one query, the first
   * time); else it is refused as in any HTTP transaction.
   */
  private async followDtmProtocol(tryOrName: string | RemoteBranch): Promise<void> {
    if (!(await this.needsGrpc(tryOrName))) return;
    this.dtmProtocolRead = true;
    if ((await this.runtime.query(this.gid))?.protocol !== 'grpc') return;
    this.switchProtocol('grpc');
    this.movedToGrpc = true;
  }

  /** Whether a sub-branch can be called over gRPC only; another service's branch that does not resolve throws here as it would when called. */
  private async needsGrpc(tryOrName: string | RemoteBranch): Promise<boolean> {
    if (!isRemoteBranch(tryOrName)) {
      const parsed = parseTarget(tryOrName, this.gid);
      if (parsed.kind !== 'name') return parsed.kind === 'grpc';
      // this app's branch: one with no HTTP route (an unknown name is refused by the call)
      if (!this.runtime.hasBranch('tcc-try', parsed.name)) return false;
      try {
        this.runtime.branchTarget('tcc-try', parsed.name, 'http');
        return false;
      } catch {
        return true;
      }
    }
    try {
      await this.runtime.remoteBranch(tryOrName, 'tcc', 'http');
      return false;
    } catch (err) {
      if (err instanceof DtmRemoteBranchError && err.problems.length === 1 && err.problems[0].problem === 'transport') return true;
      throw err;
    }
  }

  /** Registers the branch with its confirm and cancel, then calls its Try (`remote`: another service's branch, by name, its payload checked by its contract's schema first). */
  private async register(payload: Payload, tryTarget: BranchTarget, confirmTarget: BranchTarget, cancelTarget: BranchTarget, remote?: RemoteBranch): Promise<BranchAnswer> {
    const data = this.encode(payload, tryTarget);
    const service = remote?.service;
    if (remote) await this.assertContractPayloads([{ ref: remote, target: tryTarget, data, where: 'try' }]);
    // with authenticated calls the id carries the token of its confirm and cancel (registered after branch_headers were fixed)
    const branchId = this.auth ? this.auth.tccBranchId(this.ids.next(), this.gid, confirmTarget.value, cancelTarget.value, data, this.signedHeaders()?.text, this.issued) : this.ids.next();
    // a failure of either is kept: run() refuses the submit should the body go on (DTM would confirm the branch)
    await this.keepFailure(branchId, 'register', () =>
      this.transport.registerBranch({ gid: this.gid, transType: 'tcc', branchId, payload: data, fields: { confirm: confirmTarget.value, cancel: cancelTarget.value } }).catch((err: unknown) => {
        if (this.parent && branchIdTaken(err)) throw new DtmFailureError(MESSAGES.nestedSubBranchTaken(this.gid, branchId.split('-')[0], err.message), restatedContext(err));
        throw this.movedToGrpc ? grpcMoveExplained(err, this.runtime.config.grpcServer) : err;
      }),
    );
    return this.keepFailure(branchId, 'try', () => (service === undefined ? this.invokeBranch(tryTarget, data, branchId, 'try') : this.invokeRemote(service, tryTarget, data, branchId, 'try')));
  }
}

/**
 * Whether `err` is DTM's refusal of a branch registration because it holds that branch id already:
 * "storage: UniqueKeyConflict" (boltdb, Redis), the database's duplicate-key error (a SQL store).
 */
function branchIdTaken(err: unknown): err is DtmServerError {
  return err instanceof DtmServerError && /UniqueKeyConflict|Duplicate entry|duplicate key value/.test(err.message);
}

/** `grpc_server` when the configuration does not set it. */
const DEFAULT_GRPC_SERVER = defaultDtmConfig().grpcServer;

/**
 * The error of a registration over gRPC that a nested TCC called over HTTP made because DTM holds
 * the transaction as gRPC: a `DtmUnavailableError` (no DTM at `grpc_server`, which an HTTP-only
 * app often leaves at its default) says why the app talks gRPC at all and what to set; any other as it is.
 */
function grpcMoveExplained(err: unknown, grpcServer: string): unknown {
  if (!(err instanceof DtmUnavailableError)) return err;
  return new DtmUnavailableError(MESSAGES.nestedTccGrpcUnreachable(err.gid ?? '', grpcServer, grpcServer === DEFAULT_GRPC_SERVER, err.message), restatedContext(err));
}
