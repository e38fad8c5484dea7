import { BadRequestException, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { branchInfoFromQuery, currentPassThroughHeaders } from '../context/dtm-context.js';
import { MESSAGES } from '../dtm.messages.js';
import { REQUIRED_BRANCH_QUERY, type BranchInfo } from './branch.types.js';

/** Parameter decorator: the `BranchInfo` (gid, transType, branchId, op, dtm?, phase2Url?, headers) of the DTM call being served. */
export const BranchContext = createParamDecorator((_data: unknown, context: ExecutionContext): BranchInfo => {
  const request = context.switchToHttp().getRequest<{ query?: Record<string, unknown> }>();
  const info = branchInfoFromQuery(request.query, currentPassThroughHeaders());
  if (!info) {
    const missing = REQUIRED_BRANCH_QUERY.filter((key) => typeof request.query?.[key] !== 'string');
    throw new BadRequestException(MESSAGES.branchQueryMissing(`${context.getClass().name}.${context.getHandler().name}`, [...missing]));
  }
  return info;
});
