import { BadRequestException, createParamDecorator, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import { currentPassThroughHeaders } from '../context/dtm-context.js';
import { MESSAGES } from '../dtm.messages.js';
import { branchTransportOf } from './branch-transports.js';
import { branchCallOf, linkBranchInfo, markBehindBarrier } from './branch-call.js';
import { localTransactionOf } from './branch-handler.binding.js';
import { type BranchInfo } from '../transport/dtm.types.js';
import { handlerName } from './branch.types.js';

/**
 * Parameter decorator: the `BranchInfo` (gid, transType, branchId, op, dtm?, phase2Url?, headers)
 * of the DTM call being served, read from the HTTP query or the gRPC `dtm-*` metadata.
 */
export const BranchContext = createParamDecorator(branchContextFactory);

/** The factory of `@BranchContext()` (what the handler binding looks for among a handler's arguments). */
export function branchContextFactory(_data: unknown, context: ExecutionContext): BranchInfo {
  const transport = branchTransportOf(context);
  if (!transport) throw new InternalServerErrorException(MESSAGES.branchContextTransport(handlerName(context), context.getType()));
  const carrier = transport.carrier(context);
  const info = transport.branchInfo(carrier, currentPassThroughHeaders());
  if (!info) throw new BadRequestException(MESSAGES.branchQueryMissing(handlerName(context), transport.missing(carrier)));
  // so that DtmClient.barrier(info) reports its decisions as the call's
  linkBranchInfo(info, branchCallOf(carrier));
  // a handler in a barrier's local transaction: its DtmClient.barrier(info) must not guard SQL again
  const source = localTransactionOf(context.getHandler());
  if (source && 'barrier' in source) markBehindBarrier(info);
  return info;
}
