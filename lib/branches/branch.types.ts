import type { ExecutionContext } from '@nestjs/common';
import type { BranchKind } from '../transport/dtm.types.js';
import type { StandardSchemaV1 } from '../contracts/branch-contract.js';
import { DTM_TRANS_TYPES } from '../transport/branch-keys.js';

/** `Controller.method` of the handler of `context`, for messages. */
export function handlerName(context: ExecutionContext): string {
  return `${context.getClass().name}.${context.getHandler().name}`;
}

/**
 * The ops each kind of branch handler serves: what DTM sends (and, for a TCC Try or an XA action,
 * the app). A call with another op is refused before the handler runs.
 */
export const BRANCH_OPS: Readonly<Record<BranchKind, readonly string[]>> = {
  'saga-action': ['action'],
  'saga-compensate': ['compensate'],
  'tcc-try': ['try'],
  'tcc-confirm': ['confirm'],
  'tcc-cancel': ['cancel'],
  xa: ['action', 'commit', 'rollback'],
  msg: ['action'],
  'msg-query-prepared': ['msg'],
};

/**
 * The ops each kind also serves in a call of DTM's workflow mode (`trans_type=workflow`), where
 * they mean the same: a workflow step's action (a saga action, a TCC Try), its rollback (a
 * compensation, a Cancel), its commit (a Confirm).
 */
export const WORKFLOW_BRANCH_OPS: Readonly<Partial<Record<BranchKind, readonly string[]>>> = {
  'saga-action': ['action'],
  'saga-compensate': ['rollback'],
  'tcc-try': ['action'],
  'tcc-confirm': ['commit'],
  'tcc-cancel': ['rollback'],
  msg: ['action'],
};

/** Options of every branch decorator. */
export interface BranchOptions {
  /**
   * Run the handler inside a barrier-guarded local transaction on this connection of the module's
   * `barrierConnections` (the handler gets it with `@BarrierTx()`); `false` opts out of the
   * controller's `@UseBarrier()`. A handler answering with an Observable is subscribed to inside
   * that transaction, which commits once it completes (its last value the answer) and rolls back
   * if it errors.
   */
  barrier?: string | false;
}

/**
 * Options of the decorators whose payload can be checked (`@SagaAction`, `@TccTry`; `@XaBranch`
 * takes its `schema`): the first op of a branch, whose FAILURE rolls the transaction back.
 */
export interface ValidatedBranchOptions extends BranchOptions {
  /**
   * A Standard Schema (zod, valibot, ...) the payload of the branch's first op (action, try) must
   * pass before the handler runs; a payload that does not is answered FAILURE (409 / gRPC ABORTED)
   * with the schema's message, so DTM rolls back instead of retrying. A contract entry given to the
   * decorator brings its own (`sagaBranch(schema)`). Not on compensations, Confirm / Cancel or
   * message branches: DTM retries their FAILURE forever.
   */
  schema?: StandardSchemaV1;
}

/** Options of `@XaBranch`. */
export interface XaBranchOptions {
  /**
   * Run the local XA transaction on this database of the module's `xaConnections`: the module does
   * XA START / barrier row / your handler / register with DTM / XA END + XA PREPARE for `op=action`,
   * and XA COMMIT or ROLLBACK for phase 2 (the handler only serves `action`; it gets the
   * connection with `@BarrierTx()`). Without it the handler serves all three ops itself.
   */
  db?: string;
}

/** Options of `@SagaAction`. */
export interface SagaActionOptions extends ValidatedBranchOptions {
  /** `false` states that the step has no compensation on purpose (DTM then treats its rollback as done). */
  compensate?: boolean;
}

/** What a branch decorator records on its handler (one namespaced metadata key). */
export interface BranchMetadata {
  kind: BranchKind;
  name: string;
  options: SagaActionOptions & XaBranchOptions;
}

/**
 * The options each kind's decorator takes, as its options type says: refused otherwise where the
 * decorator is applied (plain JavaScript, or an options object built elsewhere, which TypeScript
 * checks for excess properties only as a literal). `barrier` on `@XaBranch` is refused at start-up.
 */
export const BRANCH_OPTIONS: Readonly<Record<BranchKind, readonly string[]>> = {
  'saga-action': ['barrier', 'compensate', 'schema'],
  'saga-compensate': ['barrier'],
  'tcc-try': ['barrier', 'schema'],
  'tcc-confirm': ['barrier'],
  'tcc-cancel': ['barrier'],
  xa: ['db', 'schema', 'barrier'],
  msg: ['barrier'],
  'msg-query-prepared': ['barrier'],
};

/** The decorator of each branch kind, as messages name it. */
export const BRANCH_DECORATOR: Record<BranchKind, string> = {
  'saga-action': '@SagaAction',
  'saga-compensate': '@SagaCompensate',
  'tcc-try': '@TccTry',
  'tcc-confirm': '@TccConfirm',
  'tcc-cancel': '@TccCancel',
  xa: '@XaBranch',
  msg: '@MsgBranch',
  'msg-query-prepared': '@MsgQueryPrepared',
};

/** The ops whose payload a branch's `schema` checks: the first op of each kind, the one whose FAILURE rolls the transaction back. */
export const VALIDATED_OPS: ReadonlySet<string> = new Set(['action', 'try']);

/** The query parameters every DTM branch call carries. */
export const REQUIRED_BRANCH_QUERY = ['gid', 'trans_type', 'branch_id', 'op'] as const;

/**
 * A branch call's `trans_type` as spans, metrics, hook events and log lines show it: one of DTM's
 * transaction types, else `other` (a caller chooses it: a made-up value must neither create a span
 * name per value nor forge a log line).
 */
export function shownTransType(transType: string): string {
  return DTM_TRANS_TYPES.has(transType) ? transType : 'other';
}
