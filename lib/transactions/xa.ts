import type { BranchAnswer, Payload, TransactionOptions } from '../transport/dtm.types.js';
import { GlobalTransaction } from './global-transaction.js';
import { isRemoteBranch, type RemoteBranch } from '../contracts/branch-contract.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** An XA global transaction, handed to the callback of `DtmClient.xaGlobalTransaction`. */
export class Xa extends GlobalTransaction {
  /** @internal use `DtmClient.xaGlobalTransaction` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'xa', options);
  }

  /**
   * Calls an XA branch's action (`op=action`, phase-2 target = its own target): the branch runs its
   * local XA transaction, registers itself with DTM and prepares. `target` is a URL, a gRPC target
   * (gRPC transactions), or the name of this app's `@XaBranch`. Resolves with its answer.
   */
  callBranch(payload: Payload, target: string): Promise<BranchAnswer>;
  /** Calls another service's XA branch by name: an entry of its contract (whose payload type `payload` must have) or `{ service, branch }`. */
  callBranch<P>(payload: NoInfer<P>, branch: RemoteBranch<'xa', P>): Promise<BranchAnswer>;
  callBranch(payload: Payload, target: string | RemoteBranch): Promise<BranchAnswer> {
    return this.branchCall(() => this.callOne(payload, target));
  }

  /** {@link callBranch}: the target, then the action. */
  private async callOne(payload: Payload, target: string | RemoteBranch): Promise<BranchAnswer> {
    const service = isRemoteBranch(target) ? target.service : undefined;
    const resolved = isRemoteBranch(target) ? (await this.remoteTargets(target, 'xa')).action : this.target(target, 'xa', 'XA action', true);
    const data = this.encode(payload, resolved);
    if (isRemoteBranch(target)) await this.assertContractPayloads([{ ref: target, target: resolved, data, where: 'action' }]);
    const branchId = this.ids.next();
    // a failed action is kept: run() refuses the submit should the body go on (DTM would commit the branches it holds without this one's work)
    return this.keepFailure(branchId, 'action', () =>
      service === undefined ? this.invokeBranch(resolved, data, branchId, 'action', resolved.value) : this.invokeRemote(service, resolved, data, branchId, 'action', resolved.value),
    );
  }
}
