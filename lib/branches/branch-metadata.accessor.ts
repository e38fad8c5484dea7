// The one place decorator metadata is read: ours (the branch record) and Nest's (routes, gRPC methods).
import { DTM_BRANCH_METADATA, DTM_ENDPOINT_METADATA } from '../dtm.constants.js';
import { BRANCH_OPS, WORKFLOW_BRANCH_OPS, type BranchMetadata } from './branch.types.js';
import type { StandardSchemaV1 } from '../contracts/branch-contract.js';

/** Nest's route metadata keys (the same in Nest 11 and 12). */
const PATH_METADATA = 'path';
const METHOD_METADATA = 'method';
const VERSION_METADATA = '__version__';
const HTTP_CODE_METADATA = '__httpCode__';
const HOST_METADATA = 'host';
/** Nest's `@UseFilters()` metadata key, and the exception types a filter's `@Catch()` recorded (the same in Nest 11 and 12). */
const EXCEPTION_FILTERS_METADATA = '__exceptionFilters__';
const FILTER_CATCH_EXCEPTIONS = '__filterCatchExceptions__';
/** `@nestjs/microservices`' pattern metadata key: `@GrpcMethod` writes `[{ service, rpc, streaming }]`. */
const PATTERN_METADATA = 'microservices:pattern';

/** What `@GrpcMethod(service, rpc)` recorded on a handler. */
export interface GrpcMethodMetadata {
  /** As given to `@GrpcMethod`: relative to the proto package (`Bank`) or fully qualified (`bank.Bank`). */
  service: string;
  rpc: string;
}

/** What the guard reads of a decorated handler on every call, looked up once per handler. */
interface HandlerSpec {
  ops: readonly string[];
  schema?: StandardSchemaV1;
}

const specCache = new WeakMap<object, HandlerSpec>();

/** The handlers each branch decorator was put on (`Class.method`), by kind and name: read only to explain an unknown name. */
const declaredHandlers = new Map<string, string[]>();

/** Records that the handler `where` was decorated as branch `name` of `kind` (when its class is defined). */
export function recordDeclaredBranch(kind: string, name: string, where: string): void {
  const key = `${kind}:${name}`;
  const list = declaredHandlers.get(key);
  if (!list) declaredHandlers.set(key, [where]);
  else if (!list.includes(where)) list.push(where);
}

/** The handlers decorated as branch `name` of `kind` in this process, whether or not a module lists their class. */
export function declaredBranchHandlers(kind: string, name: string): readonly string[] {
  return declaredHandlers.get(`${kind}:${name}`) ?? [];
}

/** The branch record a branch decorator wrote on `handler`, if any. */
export function branchMetadataOf(handler: object): BranchMetadata | undefined {
  return Reflect.getMetadata(DTM_BRANCH_METADATA, handler) as BranchMetadata | undefined;
}

/** Whether `handler` is one of the module's own handlers DTM calls (the gRPC workflow resume), not a decorated branch. */
export function isDtmEndpoint(handler: object): boolean {
  return Reflect.getMetadata(DTM_ENDPOINT_METADATA, handler) === true;
}

/** The ops a decorated `handler` serves and the schema of its payload, looked up once per handler (metadata lookups cost on every call). */
export function branchSpecOf(handler: object): HandlerSpec {
  let spec = specCache.get(handler);
  if (!spec) {
    const { kind, options } = branchMetadataOf(handler)!;
    spec = options.schema ? { ops: BRANCH_OPS[kind], schema: options.schema } : { ops: BRANCH_OPS[kind] };
    specCache.set(handler, spec);
  }
  return spec;
}

/** The ops a decorated `handler` also serves in a workflow's call (`trans_type=workflow`). */
export function workflowOpsOf(handler: object): readonly string[] {
  return WORKFLOW_BRANCH_OPS[branchMetadataOf(handler)!.kind] ?? [];
}

/** The HTTP route metadata of `handler` (and its controller): undefined when it is not a route. */
export function routeMetadataOf(controller: object, handler: object) {
  const requestMethod = Reflect.getMetadata(METHOD_METADATA, handler) as number | undefined;
  const methodPath = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
  if (requestMethod === undefined || methodPath === undefined) return undefined;
  return {
    requestMethod,
    methodPath,
    controllerPath: Reflect.getMetadata(PATH_METADATA, controller) as string | string[] | undefined,
    methodVersion: Reflect.getMetadata(VERSION_METADATA, handler) as unknown,
    controllerVersion: Reflect.getMetadata(VERSION_METADATA, controller) as unknown,
    /** The status of a success as `@HttpCode()` set it last (the branch decorators set 200; one written above them wins). */
    httpCode: Reflect.getMetadata(HTTP_CODE_METADATA, handler) as number | undefined,
    /** The hosts the controller answers (`@Controller({ host })`), if it is bound to some. */
    host: Reflect.getMetadata(HOST_METADATA, controller) as string | RegExp | (string | RegExp)[] | undefined,
  };
}

/**
 * The exception filters of `handler`'s own `@UseFilters()` that Nest tries before `moduleFilter`
 * (those written above the branch decorator: Nest tries a method's filters last one first), each
 * with the exception types its `@Catch()` names (none: it catches everything).
 */
export function filtersTriedBefore(handler: object, moduleFilter: object): { name: string; catches: unknown[] }[] {
  const filters = (Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, handler) ?? []) as unknown[];
  const at = filters.lastIndexOf(moduleFilter);
  if (at < 0) return [];
  return filters.slice(at + 1).map((filter) => {
    const type = (typeof filter === 'function' ? filter : (filter as { constructor?: unknown } | null)?.constructor) as { name?: string } | undefined;
    return { name: type?.name || 'a filter', catches: ((type && Reflect.getMetadata(FILTER_CATCH_EXCEPTIONS, type)) ?? []) as unknown[] };
  });
}

/** The HTTP method DTM calls a branch of `kind` with: GET for a message back-check (no body), POST for every other (the module never sends an empty payload, and an XA branch is always POST). */
export function dtmMethodOf(kind: string): 'GET' | 'POST' {
  return kind === 'msg-query-prepared' ? 'GET' : 'POST';
}

/** Nest's route-argument metadata key (the same in Nest 11 and 12). */
export const ROUTE_ARGS_METADATA = '__routeArguments__';
/** Nest's `@Res({ passthrough })` metadata key, and its `@Res()` / `@Next()` argument types. */
const RESPONSE_PASSTHROUGH_METADATA = '__responsePassthrough__';
const RESPONSE_ARGUMENT = 1;
const NEXT_ARGUMENT = 2;

/** Whether the route `methodName` of `controller` answers its calls itself (`@Res()` or `@Next()` without `passthrough`): Nest then sends nothing it returns, as Nest decides it. */
export function answersItself(controller: object, methodName: string): boolean {
  const args = Object.keys((Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, methodName) ?? {}) as Record<string, unknown>);
  const takesResponse = args.some((key) => key.startsWith(`${RESPONSE_ARGUMENT}:`) || key.startsWith(`${NEXT_ARGUMENT}:`));
  return takesResponse && Reflect.getMetadata(RESPONSE_PASSTHROUGH_METADATA, controller, methodName) !== true;
}

/** Nest's `@UsePipes()` metadata key (on a controller and on a handler), and the argument type of `@Body()` / `@Payload()` (the same number for both). */
const PIPES_METADATA = '__pipes__';
const PAYLOAD_ARGUMENT = 3;
/** Parameter types a validating pipe leaves alone (class-validator's `ValidationPipe` checks other classes only). */
const NOT_VALIDATED: ReadonlySet<unknown> = new Set([undefined, Object, String, Number, Boolean, Array, Date, Buffer, Promise]);

/** A handler's whole-payload parameter typed with a class (see {@link payloadParameterOf}). */
export interface PayloadParameter {
  /** The parameter's class (a DTO). */
  type: abstract new (...args: never) => unknown;
  /** The names of the pipes of the handler, its controller and the parameter (not the app's global ones). */
  pipes: string[];
}

/**
 * The parameter of `methodName` of `controller` that takes the whole payload (`@Body()`, `@Payload()`)
 * when its type is a class a validating pipe checks (a DTO; not an interface, a type alias, a builtin),
 * with the pipes the handler declares around it. Start-up only.
 */
export function payloadParameterOf(controller: abstract new (...args: never) => unknown, methodName: string): PayloadParameter | undefined {
  const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, methodName) ?? {}) as Record<string, { index: number; data?: unknown; pipes?: unknown[] }>;
  const entry = Object.entries(args).find(([key, arg]) => key.startsWith(`${PAYLOAD_ARGUMENT}:`) && arg.data === undefined)?.[1];
  if (!entry) return undefined;
  const prototype = controller.prototype as object;
  const type = (Reflect.getMetadata('design:paramtypes', prototype, methodName) as unknown[] | undefined)?.[entry.index];
  if (typeof type !== 'function' || NOT_VALIDATED.has(type)) return undefined;
  const handler = (prototype as Record<string, unknown>)[methodName] as object;
  const declared = [...((Reflect.getMetadata(PIPES_METADATA, controller) as unknown[] | undefined) ?? []), ...((Reflect.getMetadata(PIPES_METADATA, handler) as unknown[] | undefined) ?? []), ...(entry.pipes ?? [])];
  return { type: type as PayloadParameter['type'], pipes: declared.map(pipeName) };
}

/** A pipe's name: its class's, given as a class or an instance. */
export function pipeName(pipe: unknown): string {
  const type = typeof pipe === 'function' ? pipe : (pipe as { constructor?: { name?: unknown } } | null)?.constructor;
  const name = (type as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name !== '' ? name : 'a pipe';
}

/** Whether `handler` is also a message or event pattern of a microservice transport other than gRPC (`@MessagePattern`, `@EventPattern`). */
export function hasNonGrpcPattern(handler: object): boolean {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown[] | undefined;
  return (patterns ?? []).some((p) => typeof (p as { service?: unknown } | null)?.service !== 'string' || typeof (p as { rpc?: unknown }).rpc !== 'string');
}

/** The unary `@GrpcMethod` of `handler`, if it is one. */
export function grpcMethodOf(handler: object): GrpcMethodMetadata | undefined {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown[] | undefined;
  for (const pattern of patterns ?? []) {
    const p = pattern as { service?: unknown; rpc?: unknown; streaming?: unknown };
    if (typeof p?.service === 'string' && typeof p.rpc === 'string' && (p.streaming === undefined || p.streaming === 'no_stream')) return { service: p.service, rpc: p.rpc };
  }
  return undefined;
}

/** The `@GrpcStreamMethod` / `@GrpcStreamCall` of `handler`, if it is one (its decorator's name). */
export function grpcStreamDecoratorOf(handler: object): string | undefined {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown[] | undefined;
  for (const pattern of patterns ?? []) {
    const streaming = (pattern as { streaming?: unknown } | undefined)?.streaming;
    if (streaming === 'rx_stream') return '@GrpcStreamMethod';
    if (streaming === 'pt_stream') return '@GrpcStreamCall';
  }
  return undefined;
}
