import { applyDecorators, HttpCode, SetMetadata, UseFilters, UseGuards, UseInterceptors } from '@nestjs/common';
import { DTM_BRANCH_METADATA } from '../dtm.constants.js';
import { DtmBranchExceptionFilter } from './branch-exception.filter.js';
import { DtmBranchGuard } from './branch.guard.js';
import { DtmBranchInterceptor } from './branch.interceptor.js';
import type { MsgBranch as MsgBranchSpec, XaBranch as XaBranchSpec } from '../transactions/transaction.helper.js';
import type { BranchKind, BranchMetadata, SagaActionOptions } from './branch.types.js';

/**
 * Makes a branch decorator. It only writes metadata: the branch record under one namespaced key,
 * and Nest's own route metadata for what every branch needs: status 200 on success (DTM reads
 * anything else, Nest's 201 included, as an error), the guard that checks DTM's query parameters,
 * the filter that answers FAILURE with 409 and ONGOING with 425, and outside production the
 * interceptor that refuses success bodies DTM would misread.
 */
function branchDecorator(kind: BranchKind, name: string, options: SagaActionOptions = {}): MethodDecorator {
  const metadata: BranchMetadata = { kind, name, options };
  return applyDecorators(
    SetMetadata(DTM_BRANCH_METADATA, metadata),
    HttpCode(200),
    UseGuards(DtmBranchGuard),
    UseFilters(DtmBranchExceptionFilter),
    ...(process.env.NODE_ENV === 'production' ? [] : [UseInterceptors(DtmBranchInterceptor)]),
  );
}

/** A saga step's action, named `name`: `saga.add(name, payload)` resolves its URL. */
export const SagaAction = (name: string, options?: SagaActionOptions): MethodDecorator => branchDecorator('saga-action', name, options);
/** The compensation of the saga step `name`. */
export const SagaCompensate = (name: string): MethodDecorator => branchDecorator('saga-compensate', name);
/** The Try of TCC branch `name`: `tcc.callBranch(payload, name)` resolves its three URLs. */
export const TccTry = (name: string): MethodDecorator => branchDecorator('tcc-try', name);
/** The Confirm of TCC branch `name`. */
export const TccConfirm = (name: string): MethodDecorator => branchDecorator('tcc-confirm', name);
/** The Cancel of TCC branch `name`. */
export const TccCancel = (name: string): MethodDecorator => branchDecorator('tcc-cancel', name);
/** XA branch `name`: one route serving `op=action`, `commit` and `rollback`. */
export const XaBranch = (name: string): MethodDecorator => branchDecorator('xa', name);
/** As a type: an XA branch of `TransactionHelper.executeXa` (`{ action, data }`). */
export type XaBranch = XaBranchSpec;
/** A two-phase message branch named `name`: `msg.add(name, payload)` resolves its URL. */
export const MsgBranch = (name: string): MethodDecorator => branchDecorator('msg', name);
/** As a type: a message branch of `TransactionHelper.executeMsg` (`{ action, data }`). */
export type MsgBranch = MsgBranchSpec;
/** The back-check (query prepared) endpoint `name` of two-phase messages: `msg.prepare(name)`. */
export const MsgQueryPrepared = (name: string): MethodDecorator => branchDecorator('msg-query-prepared', name);
