import { BadRequestException, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { branchInfoFromQuery, currentPassThroughHeaders, missingBranchQuery } from '../context/dtm-context.js';
import { MESSAGES } from '../dtm.messages.js';
import { handlerName, type BranchInfo } from './branch.types.js';

/** Parameter decorator: the `BranchInfo` (gid, transType, branchId, op, dtm?, phase2Url?, headers) of the DTM call being served. */
export const BranchContext = createParamDecorator((_data: unknown, context: ExecutionContext): BranchInfo => {
  const request = context.switchToHttp().getRequest<{ query?: Record<string, unknown> }>();
  const info = branchInfoFromQuery(request.query, currentPassThroughHeaders());
  if (!info) throw new BadRequestException(MESSAGES.branchQueryMissing(handlerName(context), missingBranchQuery(request.query)));
  return info;
});
