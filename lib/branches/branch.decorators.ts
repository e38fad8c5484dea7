import { applyDecorators, HttpCode, SetMetadata, UseFilters, UseGuards, UseInterceptors } from '@nestjs/common';
import { DTM_BRANCH_METADATA } from '../dtm.constants.js';
import { DtmBranchExceptionFilter } from './branch-exception.filter.js';
import { DtmBranchGuard } from './branch.guard.js';
import { bindBranchHandler, answersWithoutHandler, bindControllerBarrier, localTransactionOf } from './branch-handler.binding.js';
import { DtmModuleAnswerInterceptor } from './module-answer.interceptor.js';
import { FAILURE_CANNOT_ROLL_BACK } from './branch-result.js';
import { DtmBranchBodyInterceptor } from './http/branch-body.interceptor.js';
import type { MsgBranch as MsgBranchSpec, XaBranch as XaBranchSpec } from '../client/transaction.helper.js';
import type { BranchKind, Payload } from '../transport/dtm.types.js';
import { BRANCH_DECORATOR, BRANCH_OPTIONS, type BranchMetadata, type BranchOptions, type SagaActionOptions, type ValidatedBranchOptions, type XaBranchOptions } from './branch.types.js';
import { isRemoteBranch, isStandardSchema, type RemoteBranch, type RemoteBranchKind, type StandardSchemaV1 } from '../contracts/branch-contract.js';
import { BRANCH_NAME_RULE } from '../contracts/branch-manifest.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { recordDeclaredBranch } from './branch-metadata.accessor.js';
import { MESSAGES } from '../dtm.messages.js';

/**
 * Makes a branch decorator, for an HTTP route and / or a `@GrpcMethod()` handler. It writes
 * metadata: the branch record under one namespaced key, and Nest's own metadata for what every
 * branch needs: status 200 on success (DTM reads anything else over HTTP, Nest's 201 included, as an
 * error), the guard that checks DTM's branch keys, the filter that answers FAILURE and ONGOING as
 * DTM reads them on the call's transport, and outside production the interceptor that refuses
 * HTTP success bodies DTM would misread. It wraps the handler (see branch-handler.binding.ts): a
 * gRPC handler's `undefined` becomes an empty message, and with a `barrier` option (or an XA `db`)
 * the handler runs inside that local transaction. A back-check with a barrier and an XA branch with
 * a `db` also get the interceptor that answers their empty phase-2 / back-check calls before pipes.
 */
function branchDecorator(kind: BranchKind, nameOrBranch: string | RemoteBranch, given: SagaActionOptions & XaBranchOptions = {}): MethodDecorator {
  const named = contractName(nameOrBranch, kind);
  if (typeof given !== 'object' || given === null) throw new DtmUsageError(MESSAGES.notAnObject(`the options of ${BRANCH_DECORATOR[kind]}(${JSON.stringify(named.name)})`, given));
  if (given.schema !== undefined && !VALIDATES.has(kind)) throw new DtmUsageError(MESSAGES.schemaNotChecked(BRANCH_DECORATOR[kind], named.name));
  if (given.schema !== undefined && !isStandardSchema(given.schema)) throw new DtmUsageError(MESSAGES.notStandardSchema(named.name));
  const unknown = Object.keys(given).filter((key) => (given as Record<string, unknown>)[key] !== undefined && !BRANCH_OPTIONS[kind].includes(key));
  if (unknown.length > 0) throw new DtmUsageError(MESSAGES.unknownBranchOptions(BRANCH_DECORATOR[kind], named.name, unknown, BRANCH_OPTIONS[kind].filter((key) => key !== 'barrier' || kind !== 'xa')));
  const schema = given.schema ?? (VALIDATES.has(kind) ? named.schema : undefined);
  const options = schema ? { ...given, schema } : given;
  const metadata: BranchMetadata = { kind, name: named.name, options };
  const source = options.db ? { xa: options.db } : options.barrier ? { barrier: options.barrier, queryPrepared: kind === 'msg-query-prepared' } : undefined;
  const production = process.env.NODE_ENV === 'production';
  // in production (no DtmBranchBodyInterceptor), a FAILURE body of a branch whose FAILURE cannot roll anything back is still thrown, for the filter's warning
  const checksResultBody = production && (FAILURE_CANNOT_ROLL_BACK.has(kind) || kind === 'xa');
  return applyDecorators(
    ((target, key, descriptor) => {
      recordDeclaredBranch(kind, named.name, `${(target as { constructor: { name: string } }).constructor.name}.${String(key)}`);
      return bindBranchHandler(target, key, descriptor, source, false, checksResultBody, kind === 'tcc-try');
    }) as MethodDecorator,
    SetMetadata(DTM_BRANCH_METADATA, metadata),
    HttpCode(200),
    UseGuards(DtmBranchGuard),
    UseFilters(DtmBranchExceptionFilter),
    ...(production ? [] : [UseInterceptors(DtmBranchBodyInterceptor)]),
    ...(options.db || (options.barrier && kind === 'msg-query-prepared') ? [UseInterceptors(DtmModuleAnswerInterceptor)] : []),
  );
}

/** Nest's interceptors metadata key (the same in Nest 11 and 12). */
const INTERCEPTORS_METADATA = '__interceptors__';

/** Gives the handler `handler`, which `@UseBarrier()` made a back-check with a barrier, the interceptor that answers it before pipes (once). */
function answerBeforePipes(handler: object): void {
  if (!answersWithoutHandler(localTransactionOf(handler), 'msg')) return;
  if (((Reflect.getMetadata(INTERCEPTORS_METADATA, handler) ?? []) as unknown[]).includes(DtmModuleAnswerInterceptor)) return;
  UseInterceptors(DtmModuleAnswerInterceptor)({}, 'handler', { value: handler });
}

/** A branch name `add(name)` / `callBranch(name)` can reach (see {@link BRANCH_NAME_RULE}). */
const BRANCH_NAME = BRANCH_NAME_RULE;

/** The handler kinds whose payload a contract entry's schema checks (their first op); not a message branch: DTM retries its FAILURE forever. */
const VALIDATES: ReadonlySet<BranchKind> = new Set(['saga-action', 'tcc-try', 'xa']);

/** The kind of contract entry each decorator serves (`@MsgQueryPrepared` takes a name only). */
const CONTRACT_KIND: Readonly<Record<BranchKind, RemoteBranchKind | undefined>> = {
  'saga-action': 'saga',
  'saga-compensate': 'saga',
  'tcc-try': 'tcc',
  'tcc-confirm': 'tcc',
  'tcc-cancel': 'tcc',
  xa: 'xa',
  msg: 'msg',
  'msg-query-prepared': undefined,
};

/** The decorators that serve each kind of contract entry, as messages name them. */
const KIND_DECORATORS: Readonly<Partial<Record<string, string>>> = {
  saga: '@SagaAction / @SagaCompensate',
  tcc: '@TccTry / @TccConfirm / @TccCancel',
  msg: '@MsgBranch',
  xa: '@XaBranch',
};

/** A branch decorator's name: given, or that of a contract entry (with its schema). */
function contractName(nameOrBranch: string | RemoteBranch, kind: BranchKind): { name: string; schema?: StandardSchemaV1 } {
  if (typeof nameOrBranch === 'string') {
    if (!BRANCH_NAME.test(nameOrBranch)) throw new DtmUsageError(MESSAGES.badBranchName(BRANCH_DECORATOR[kind], nameOrBranch));
    return { name: nameOrBranch };
  }
  if (!isRemoteBranch(nameOrBranch)) throw new DtmUsageError(MESSAGES.decoratorName(kind, typeof nameOrBranch));
  if (!BRANCH_NAME.test(nameOrBranch.branch)) throw new DtmUsageError(MESSAGES.badBranchName(BRANCH_DECORATOR[kind], nameOrBranch.branch));
  const entryKind = nameOrBranch.kind;
  if (entryKind !== undefined && entryKind !== CONTRACT_KIND[kind]) {
    throw new DtmUsageError(MESSAGES.contractKindMismatch(BRANCH_DECORATOR[kind], String(entryKind), nameOrBranch.branch, nameOrBranch.service, KIND_DECORATORS[entryKind] ?? 'none of the branch decorators'));
  }
  if (nameOrBranch.schema !== undefined && !isStandardSchema(nameOrBranch.schema)) throw new DtmUsageError(MESSAGES.notStandardSchema(nameOrBranch.branch));
  return { name: nameOrBranch.branch, schema: nameOrBranch.schema as StandardSchemaV1 | undefined };
}

/**
 * Controller default: every branch handler of the class runs inside a barrier-guarded local
 * transaction on `connection` (a key of the module's `barrierConnections`), unless its decorator
 * says `{ barrier: false }` or names another connection. XA branches ignore it.
 */
export const UseBarrier =
  (connection: string): ClassDecorator =>
  (controller) => {
    for (const handler of bindControllerBarrier(controller, connection)) answerBeforePipes(handler);
  };

/** A saga step's action, named `name` (or a contract entry: its name and schema): `saga.add(name, payload)` resolves its target (its route, or its gRPC method). */
export const SagaAction = (name: string | RemoteBranch<'saga', Payload>, options?: SagaActionOptions): MethodDecorator => branchDecorator('saga-action', name, options);
/** The compensation of the saga step `name`. */
export const SagaCompensate = (name: string | RemoteBranch<'saga', Payload>, options?: BranchOptions): MethodDecorator => branchDecorator('saga-compensate', name, options);
/** The Try of TCC branch `name`: `tcc.callBranch(payload, name)` resolves its three targets. */
export const TccTry = (name: string | RemoteBranch<'tcc', Payload>, options?: ValidatedBranchOptions): MethodDecorator => branchDecorator('tcc-try', name, options);
/** The Confirm of TCC branch `name`. */
export const TccConfirm = (name: string | RemoteBranch<'tcc', Payload>, options?: BranchOptions): MethodDecorator => branchDecorator('tcc-confirm', name, options);
/** The Cancel of TCC branch `name`. */
export const TccCancel = (name: string | RemoteBranch<'tcc', Payload>, options?: BranchOptions): MethodDecorator => branchDecorator('tcc-cancel', name, options);
/**
 * XA branch `name`: one route (or gRPC method) serving ops `action`, `commit` and `rollback`. With
 * `{ db }` the module runs the local XA transaction on that database (the handler serves `action`,
 * with `@BarrierTx()`; phase 2, whose message is empty, never reaches it); a handler answering with
 * an Observable is waited for before the branch prepares.
 */
export const XaBranch = (name: string | RemoteBranch<'xa', Payload>, options?: XaBranchOptions & Pick<ValidatedBranchOptions, 'schema'>): MethodDecorator => branchDecorator('xa', name, options);
/** As a type: an XA branch of `TransactionHelper.executeXa` (`{ action, data }`). */
export type XaBranch = XaBranchSpec;
/** A two-phase message branch named `name`: `msg.add(name, payload)` resolves its target. */
export const MsgBranch = (name: string | RemoteBranch<'msg', Payload>, options?: BranchOptions): MethodDecorator => branchDecorator('msg', name, options);
/** As a type: a message branch of `TransactionHelper.executeMsg` (`{ action, data }`). */
export type MsgBranch = MsgBranchSpec;
/**
 * The back-check (query prepared) endpoint `name` of two-phase messages: `msg.prepare(name)`. With
 * `{ barrier: connection }` the module answers it from the barrier table (409 when the local
 * transaction never committed) and the handler is not called.
 */
export const MsgQueryPrepared = (name: string, options?: BranchOptions): MethodDecorator => branchDecorator('msg-query-prepared', name, options);
