// The endpoints DTM calls to resume a workflow: an HTTP route the module adds to the HTTP adapter
// itself (GET and POST, outside Nest's routing: the app's guards, pipes and body parsers do not
// apply), and the gRPC method workflow.Workflow/Execute (protos/workflow.proto).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Controller, HttpException, Inject, Logger, UseFilters } from '@nestjs/common';
import { DtmClient } from '../client/dtm.client.js';
import { DTM_ENDPOINT_METADATA } from '../dtm.constants.js';
import { AUTH_HEADER } from '../auth/branch-auth.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { DtmUnauthenticatedError } from '../errors/dtm-unauthenticated.error.js';
import { DtmWorkflowPendingError } from '../errors/dtm-workflow-pending.error.js';
import { WorkflowResumeRefused } from '../workflow/workflow.engine.js';
import { DtmBranchExceptionFilter } from './branch-exception.filter.js';
import { textOf } from '../errors/text-of.js';
import { shownCallerValue } from '../redact.js';

/** The path of the HTTP resume route (on the adapter, without the app's global prefix): DTM calls `app_url` + this. */
export const WORKFLOW_RESUME_PATH = '/dtm/workflow/resume';

/** The gRPC service DTM resumes workflows at (protos/workflow.proto). */
export const WORKFLOW_SERVICE = 'workflow.Workflow';

/** The gRPC method DTM calls to resume a workflow. */
export const WORKFLOW_RESUME_METHOD = `/${WORKFLOW_SERVICE}/Execute`;

/** The path of the proto `file` shipped with the package (protos/). */
export function shippedProto(file: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'protos', file)) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'protos', file);
}

/** The workflow resume proto shipped with the package: add it (package `workflow`) to your Nest gRPC microservice's `protoPath`. */
export const DTM_WORKFLOW_PROTO: string = shippedProto('workflow.proto');

const logger = new Logger('DtmWorkflow');

/**
 * Answers a resume call: runs the workflow `name` of `gid` with the input DTM stored (the call's
 * body is not read: anyone can reach this endpoint; with authenticated calls its `dtm-auth` must
 * hold the workflow's token, else 401), and answers what DTM reads (its answer only matters to DTM's log).
 */
export async function answerResume(client: DtmClient, name: string, gid: string, authHeader: string | undefined): Promise<{ status: number; body: object }> {
  try {
    const outcome = await client.resumeWorkflow(name, gid, authHeader);
    return outcome === 'pending' ? { status: 425, body: { dtm_result: 'ONGOING', message: `workflow ${gid} is pending` } } : { status: 200, body: { dtm_result: 'SUCCESS' } };
  } catch (err) {
    if (err instanceof DtmUnauthenticatedError) {
      logger.warn(err.message);
      return { status: 401, body: { message: err.message } };
    }
    // calls this app cannot serve (anyone can make them): a warning, no stack
    if (err instanceof WorkflowResumeRefused) {
      logger.warn(err.message);
      return { status: 400, body: { message: err.message } };
    }
    // a workflow this app does not have (deployed elsewhere, or not yet): DTM calls again later
    if (err instanceof DtmWorkflowPendingError) {
      logger.warn(err.message);
      return { status: 425, body: { dtm_result: 'ONGOING', message: err.message } };
    }
    // the gid is the caller's (resume() checked it only on the paths above): quoted when not printable
    logger.error(`workflow ${shownCallerValue(name)} gid=${shownCallerValue(gid)}: the resume failed (answered 500: DTM calls it again later): ${err instanceof Error ? (err.stack ?? err.message) : textOf(err)}`);
    return { status: 500, body: { message: 'workflow resume failed; see the app log' } };
  }
}

/** `@nestjs/microservices`' metadata of a unary `@GrpcMethod` (written here: the package is an optional peer). */
export function grpcMethod(service: string, rpc: string): MethodDecorator {
  return (_target, _key, descriptor) => {
    const handler = descriptor.value as object;
    Reflect.defineMetadata('microservices:pattern', [{ service, rpc, streaming: 'no_stream' }], handler);
    Reflect.defineMetadata('microservices:handler_type', 1, handler);
    Reflect.defineMetadata('microservices:transport', 4, handler);
    return descriptor;
  };
}

/**
 * Marks a handler of the module's own that is called without credentials (the gRPC workflow
 * resume, by DTM; the gRPC branch manifest, by other services' nestjs-dtm), so that
 * `isDtmBranchHandler` is true for it: an app's global guard written as the module advises lets it
 * through, as it does the decorated branch handlers.
 */
export function dtmEndpoint(): MethodDecorator {
  return (_target, _key, descriptor) => {
    Reflect.defineMetadata(DTM_ENDPOINT_METADATA, true, descriptor.value as object);
    return descriptor;
  };
}

/**
 * The gRPC resume endpoint: `workflow.Workflow/Execute` (served only by gRPC servers that load
 * protos/workflow.proto). It answers what the HTTP route answers, in the codes the module answers
 * a gRPC branch with (grpcBranchTransport.answer): OK, FAILED_PRECONDITION for pending (DTM's
 * ONGOING: DTM calls again, without logging an error), INVALID_ARGUMENT for a resume it refuses
 * (400), UNAUTHENTICATED (401), INTERNAL (500). DTM resumes a workflow whatever the code: it
 * changes nothing of its record, only what DTM logs.
 */
@Controller()
export class DtmWorkflowResumeController {
  constructor(@Inject(DtmClient) private readonly client: DtmClient) {}

  @grpcMethod('workflow.Workflow', 'Execute')
  @dtmEndpoint()
  @UseFilters(DtmBranchExceptionFilter)
  async execute(_data: unknown, metadata: { get(key: string): unknown[] }): Promise<object> {
    const auth = metadata.get(AUTH_HEADER);
    const answer = await answerResume(this.client, String(metadata.get('dtm-op')[0] ?? ''), String(metadata.get('dtm-gid')[0] ?? ''), auth.length === 1 ? String(auth[0]) : undefined);
    if (answer.status === 200) return {};
    // a plain Error would reach DTM as Nest's "Internal server error" (UNKNOWN) whatever its code
    const message = (answer.body as { message?: string }).message ?? '';
    if (answer.status === 425) throw new DtmOngoingError(message);
    throw new HttpException(message, answer.status);
  }
}
