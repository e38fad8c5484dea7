import { BadRequestException, Inject, Injectable, Optional, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { DTM_BRANCH_METADATA, DTM_BRANCH_RUNTIME } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { hasBranchQuery, missingBranchQuery } from '../context/dtm-context.js';
import { BRANCH_OPS, handlerName, type BranchMetadata } from './branch.types.js';
import { BRANCH_RUNTIME, type DtmBranchRuntime } from './local-transaction.binding.js';

/** Where the guard leaves, on the request, the execution context of the branch handler serving it (for the filter). */
export const BRANCH_HANDLER = Symbol('nestjs-dtm:branch-handler');

/** The branch record of the handler of `context`. */
export function branchOf(context: ExecutionContext): BranchMetadata | undefined {
  return Reflect.getMetadata(DTM_BRANCH_METADATA, context.getHandler()) as BranchMetadata | undefined;
}

/**
 * Before a decorated handler (HTTP only): a call without DTM's query parameters, or with an op
 * this kind of branch does not serve, is answered 400, naming what is wrong, and the handler does
 * not run. A guard, not an interceptor: it costs no observable pipeline on the hot path. It also
 * leaves on the request what a handler wrapped in a local transaction needs from the module (it is
 * instantiated in the controller's module, so it sees the DtmModule serving that controller).
 */
@Injectable()
export class DtmBranchGuard implements CanActivate {
  /** The ops each handler serves, looked up once per handler (metadata lookups cost on every call). */
  private readonly opsByHandler = new WeakMap<object, readonly string[]>();

  constructor(@Optional() @Inject(DTM_BRANCH_RUNTIME) readonly runtime?: DtmBranchRuntime) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const request = context
      .switchToHttp()
      .getRequest<{ query?: Record<string, unknown>; [BRANCH_HANDLER]?: ExecutionContext; [BRANCH_RUNTIME]?: DtmBranchRuntime }>();
    const query = request.query ?? {};
    if (!hasBranchQuery(query)) throw new BadRequestException(MESSAGES.branchQueryMissing(handlerName(context), missingBranchQuery(query)));
    const ops = this.opsOf(context);
    if (!ops.includes(query.op as string)) throw new BadRequestException(MESSAGES.branchWrongOp(handlerName(context), String(query.op), ops));
    request[BRANCH_HANDLER] = context;
    request[BRANCH_RUNTIME] = this.runtime;
    return true;
  }

  private opsOf(context: ExecutionContext): readonly string[] {
    const handler = context.getHandler();
    let ops = this.opsByHandler.get(handler);
    if (!ops) {
      ops = BRANCH_OPS[branchOf(context)!.kind]; // the guard is only on decorated handlers
      this.opsByHandler.set(handler, ops);
    }
    return ops;
  }
}
