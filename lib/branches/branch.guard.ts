import { BadRequestException, Inject, Injectable, Logger, Optional, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { DTM_BRANCH_RUNTIME } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { withoutTrailingSlashes } from '../redact.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { branchCallProblem, UNDO_OPS } from '../transport/branch-keys.js';
import { BRANCH_CALL, refusal, type BranchCallState, type DtmBranchRuntime } from './branch-call.js';
import type { BranchCarrier } from './branch-transport.js';
import { branchMetadataOf, branchSpecOf, workflowOpsOf } from './branch-metadata.accessor.js';
import { schemaProblem, type StandardSchemaV1 } from '../contracts/branch-contract.js';
import { branchTransportOf } from './branch-transports.js';
import { BRANCH_DECORATOR, handlerName, VALIDATED_OPS } from './branch.types.js';
import { authenticateBranchCall, type BranchCallChecks } from './branch-authentication.js';
import { targetPath } from '../auth/branch-auth.js';
import { textOf } from '../errors/text-of.js';

/**
 * Before a decorated handler, on either transport (a call over any other, a TCP message or a
 * WebSocket event, is refused: DTM never sends one and nothing in it can be checked): a call without DTM's branch keys (HTTP query,
 * gRPC `dtm-*` metadata), or with an op this kind of branch does not serve (in a workflow's call
 * also the workflow ops that mean the same, see `WORKFLOW_BRANCH_OPS`), is refused (HTTP 400,
 * gRPC INVALID_ARGUMENT), naming what is wrong, and the handler does not run. A call whose gid or
 * branch id breaks the rule of `transport/branch-keys.ts`, or whose trans_type is none DTM sends,
 * answers FAILURE (HTTP 409, gRPC ABORTED)
 * before anything runs or is written; for an undo op (compensate, cancel, rollback) it answers
 * success without running the handler, as its action was refused. A call it refuses is reported as
 * one (hooks, span, metrics: outcome `refused`) by the filter. A guard, not an
 * interceptor: it costs no observable pipeline on the hot path. With authenticated branch calls
 * it then checks the call's token (see `authenticateBranchCall`). It also leaves on the call what a
 * handler wrapped in a local transaction needs from the module (it is instantiated in the
 * controller's module, so it sees the DtmModule serving that controller).
 */
@Injectable()
export class DtmBranchGuard implements CanActivate {
  /** What authenticated calls are checked for beyond their token (`app_url`'s path, which a proxy in front of the app takes off, among it). */
  private readonly checks?: BranchCallChecks;

  constructor(@Optional() @Inject(DTM_BRANCH_RUNTIME) readonly runtime?: DtmBranchRuntime) {
    const config = runtime?.config;
    if (config) this.checks = { actions: config.branchAuthCheckActions, issueWindow: config.branchAuthIssueWindow, appUrlPath: appUrlPathOf(config.appUrl), isRoutePath: runtime.isHttpRoutePath };
  }

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const transport = branchTransportOf(context);
    // a branch reached another way (a microservice transport but gRPC, a WebSocket gateway): nothing DTM sends, nothing to check it by
    if (!transport) throw new DtmUsageError(MESSAGES.branchOtherTransport(handlerName(context), context.getType()));
    const carrier = transport.carrier(context);
    const op = transport.completeOp(carrier);
    if (op === undefined) throw this.refused(context, carrier, new BadRequestException(MESSAGES.branchQueryMissing(handlerName(context), transport.missing(carrier))));
    const handler = context.getHandler();
    const { ops, schema } = branchSpecOf(handler);
    if (!ops.includes(op) && !(transport.transType(carrier) === 'workflow' && workflowOpsOf(handler).includes(op))) {
      throw this.refused(context, carrier, new BadRequestException(MESSAGES.branchWrongOp(handlerName(context), op, ops)));
    }
    // keys that break the rule, or a trans_type DTM never sends (see transport/branch-keys.ts): FAILURE,
    // so DTM rolls back instead of retrying; an undo op of such a call skips the handler and succeeds
    // (its action, which carried the same keys, never ran)
    const keysProblem = branchCallProblem(transport.gid(carrier), transport.branchId(carrier), transport.transType(carrier));
    if (keysProblem !== undefined && !UNDO_OPS.has(op)) throw this.refused(context, carrier, new DtmFailureError(MESSAGES.branchKeysRefused(keysProblem)));
    (carrier as { [BRANCH_CALL]?: BranchCallState })[BRANCH_CALL] = { context, runtime: this.runtime, skip: keysProblem };
    const auth = this.runtime?.config.branchAuthKeys;
    const authenticated = auth && keysProblem === undefined ? authenticateBranchCall(auth, this.runtime!.query, transport, context, carrier, handlerName(context), this.checks!) : true;
    if (!schema || !VALIDATED_OPS.has(op) || keysProblem !== undefined) return authenticated;
    // the payload's schema (only on handlers that have one): after the authentication, before the handler
    return (async () => (await authenticated) && checkPayload(schema, transport.payload(context, carrier), context))();
  }

  /**
   * `error`, marked as the module's refusal, with the call's state left on `carrier` (no handler
   * will run): the filter then reports the call (hooks, span, metrics), as `refused`.
   */
  private refused(context: ExecutionContext, carrier: BranchCarrier, error: BadRequestException | DtmFailureError): BadRequestException | DtmFailureError {
    (carrier as { [BRANCH_CALL]?: BranchCallState })[BRANCH_CALL] = { context, runtime: this.runtime };
    return refusal(error);
  }
}

/**
 * Whether the payload passes `schema`; a `DtmFailureError` with the schema's message (FAILURE: DTM
 * rolls back, never retries) when it does not. A schema whose `validate` throws (a bug of the
 * schema: Standard Schema returns issues) is FAILURE too, logged as an error naming the branch and
 * the handler: answered 500, DTM would retry the action forever with the same payload.
 */
async function checkPayload(schema: StandardSchemaV1, payload: unknown, context: ExecutionContext): Promise<true> {
  let problem: string | undefined;
  try {
    problem = await schemaProblem(schema, payload);
  } catch (err) {
    const branch = branchMetadataOf(context.getHandler());
    const message = MESSAGES.schemaThrew(branch ? `${BRANCH_DECORATOR[branch.kind]}('${branch.name}')` : 'a branch', handlerName(context), err instanceof Error ? `${err.name}: ${err.message}` : textOf(err));
    schemaLogger.error(message, err instanceof Error ? err.stack : undefined);
    throw new DtmFailureError(message, { cause: err });
  }
  if (problem !== undefined) throw new DtmFailureError(MESSAGES.invalidPayload(handlerName(context), problem));
  return true;
}

/**
 * The path of `app_url` as the targets DTM calls hold it (`/svc` of `http://gw/svc`), without a
 * trailing slash; '' when it has none. Branch targets are `app_url` + route path, so a call that
 * reaches the app through a proxy which takes that path off arrives at the route path alone.
 */
function appUrlPathOf(appUrl: string | undefined): string {
  if (!appUrl) return '';
  const path = withoutTrailingSlashes(targetPath(appUrl));
  return path.startsWith('/') ? path : '';
}

/** Logs a schema that threw (on such a call only). */
const schemaLogger = new Logger('DtmBranch');
