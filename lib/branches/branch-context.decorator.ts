import { BadRequestException, createParamDecorator, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import { currentPassThroughHeaders } from '../context/dtm-context.js';
import { MESSAGES } from '../dtm.messages.js';
import { branchTransportOf } from './branch-transports.js';
import { branchCallOf, linkBranchInfo, markBehindBarrier, markRefusedUndo } from './branch-call.js';
import type { BranchTransport } from './branch-transport.js';
import { branchCallProblem, opProblem, UNDO_OPS } from '../transport/branch-keys.js';
import { localTransactionOf } from './branch-handler.binding.js';
import { type BranchInfo } from '../transport/dtm.types.js';
import { handlerName } from './branch.types.js';

/**
 * Parameter decorator: the `BranchInfo` (gid, transType, branchId, op, dtm?, phase2Url?, headers)
 * of the DTM call being served, read from the HTTP query or the gRPC `dtm-*` metadata. On a route
 * without a branch decorator (no guard checked the call) it checks what the guard checks first
 * (see {@link branchContextFactory}).
 */
export const BranchContext = createParamDecorator(branchContextFactory);

/**
 * The factory of `@BranchContext()` (what the handler binding looks for among a handler's arguments).
 * On a route without a branch decorator, where no guard ran, a call whose gid, branch id or
 * trans_type breaks the guard's rules (`branchCallProblem`), or whose op is none DTM sends, is
 * refused as the guard refuses it: FAILURE (HTTP 409, gRPC ABORTED) before the handler runs, for an
 * undo op (compensate, cancel, rollback) a `BranchInfo` whose `DtmClient.barrier()` writes nothing
 * and skips the business as a null compensation. A decorated route's call was checked by its guard.
 */
export function branchContextFactory(_data: unknown, context: ExecutionContext): BranchInfo {
  const transport = branchTransportOf(context);
  if (!transport) throw new InternalServerErrorException(MESSAGES.branchContextTransport(handlerName(context), context.getType()));
  const carrier = transport.carrier(context);
  const info = transport.branchInfo(carrier, currentPassThroughHeaders());
  if (!info) throw new BadRequestException(MESSAGES.branchQueryMissing(handlerName(context), transport.missing(carrier)));
  const call = branchCallOf(carrier);
  if (call === undefined) {
    // no guard ran (a route without a branch decorator, so no module barrier either): its checks, before anything uses the values
    checkUnguarded(transport, info);
    return info;
  }
  // so that DtmClient.barrier(info) reports its decisions as the call's
  linkBranchInfo(info, call);
  // a handler in a barrier's local transaction: its DtmClient.barrier(info) must not guard SQL again
  const source = localTransactionOf(context.getHandler());
  if (source && 'barrier' in source) markBehindBarrier(info);
  return info;
}

/**
 * The guard's checks of a call on a route without a branch decorator (see {@link branchContextFactory}),
 * with the op one DTM sends (nothing declares the route's ops): O(1) string checks, once per call.
 */
function checkUnguarded(transport: BranchTransport, info: BranchInfo): void {
  const problem = branchCallProblem(info.gid, info.branchId, info.transType) ?? opProblem(info.op, info.transType, info.branchId);
  if (problem === undefined) return;
  // an undo call: its action, which carried the same values, was refused; its barrier skips it
  if (UNDO_OPS.has(info.op)) markRefusedUndo(info, problem);
  else throw transport.failureException(MESSAGES.branchKeysRefused(problem));
}
