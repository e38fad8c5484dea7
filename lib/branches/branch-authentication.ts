import { Logger, UnauthorizedException } from '@nestjs/common';
import { AUTH_CALL_HEADER, AUTH_HEADER, AUTH_HEADERS_HEADER, AUTH_ISSUED_HEADER, headersOfCall, issueProblem, isSignedHeader, shownBranchId, splitTccBranchId, targetPath, tccTargets, tokenInHeader, withPhase2, type BranchAuth, type HeadersOfCall, type SignedCall } from '../auth/branch-auth.js';
import { branchCallOf, refusal } from './branch-call.js';
import { dtmContext } from '../context/dtm-context.js';
import type { ArgumentsHost } from '@nestjs/common';
import type { TransactionRecord, TransactionStatus } from '../transport/dtm.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DTM_DEFAULT_TIMEOUT_TO_FAIL } from '../config/dtm-config.keys.js';
import type { BranchCarrier, BranchTransport } from './branch-transport.js';

/**
 * DTM's status while it confirms (TCC confirm, XA commit). Not `succeed`: DTM records that only once
 * every confirm answered success and calls none after it, so a confirm then is a replay (one whose
 * barrier rows were purged would run again).
 */
const CONFIRMING: readonly TransactionStatus[] = ['submitted'];
/**
 * DTM's status while the app calls its own branches: a TCC Try or an XA action (before the submit
 * or abort, after which DTM refuses their registration), a workflow's steps and their commit and
 * rollback (DTM holds a workflow prepared until the app submits its outcome, after its phase 2; its
 * resumes too).
 */
const PREPARING: readonly TransactionStatus[] = ['prepared'];
/** DTM's status while it compensates (saga compensate, TCC cancel, XA rollback); not `failed`, after which DTM calls none. */
const COMPENSATING: readonly TransactionStatus[] = ['aborting'];
/** How much earlier than DTM's own clock says a back-check may arrive (clocks of DTM and the app differ a little). */
const BACK_CHECK_CLOCK_SLACK_MS = 1000;

const logger = new Logger('DtmBranchAuth');

/** The headers `branchInfo` is given: the check reads none of them (one object for every call, never written). */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** The call being checked: DTM's keys and what it came with. */
interface CallUnderCheck {
  gid: string;
  transType: string;
  branchId: string;
  op: string;
  path: string;
  payload: string | Uint8Array;
  /** The forwarded headers the call's token must sign (see `headersOfCall`), if it names any. */
  headers?: string;
  /** When its transaction's tokens were issued, as the call's {@link AUTH_ISSUED_HEADER} says (its token signs it); none from an app that signed no issue time. */
  issued?: string;
}

/** What a branch call is checked for beyond its token (the module's configuration, fixed for the app's life). */
export interface BranchCallChecks {
  /** `branch_auth_check_actions`. */
  actions: boolean;
  /** `branch_auth_issue_window`, seconds. */
  issueWindow: number;
  /** The path of `app_url` (see the guard), put before a request path that arrived without it; '' for none. */
  appUrlPath: string;
  /** Whether a path (no query) is one of the app's decorated HTTP routes. */
  isRoutePath?: (path: string) => boolean;
}

/** Where the check reads DTM's record of a transaction (the module's configured server, never one a call names). */
export type RecordReader = (gid: string) => Promise<TransactionRecord | null>;

/**
 * With authenticated branch calls (`lynx.dtm.branch_auth_keys`), whether this branch call may run
 * its handler; throws `UnauthorizedException` (HTTP 401, gRPC UNAUTHENTICATED) naming why, before
 * the handler or the barrier runs. A call the app made itself carries its own token
 * (`dtm-auth-call`); a call DTM makes carries the transaction's tokens (`dtm-auth`), or for TCC
 * confirm / cancel a token in its branch id. Compensating and confirming ops also need DTM's record
 * to say that phase began (one query, nothing cached), and DTM's back-check of a message needs the
 * message to be due for one; with `branch_auth_check_actions`, actions need it due too (a TCC Try,
 * an XA action or a workflow's step, which the app calls itself: the transaction prepared). `appUrlPath`: the path of `app_url` (see the guard), put before a
 * request path that arrived without it.
 */
export function authenticateBranchCall(
  auth: BranchAuth,
  readRecord: RecordReader,
  transport: BranchTransport,
  context: ArgumentsHost,
  carrier: BranchCarrier,
  where: string,
  checks: BranchCallChecks,
): true | Promise<true> {
  const info = transport.branchInfo(carrier, NO_HEADERS)!;
  const payload = transport.rawBody(context, carrier);
  if (payload === undefined) throw refuse(where, info, MESSAGES.authNoRawBody(transport.protocol));
  let path = transport.path(carrier);
  // targets are app_url + route: a proxy in front of the app that takes app_url's path off delivers the route's path alone
  const appUrlPath = checks.appUrlPath;
  if (appUrlPath !== '' && transport.protocol === 'http' && arrivedWithout(path, appUrlPath, checks.isRoutePath)) path = appUrlPath + path;
  // one object is the call under check and what its token signs (channel 'app' until it is DTM's call)
  const call: CallUnderCheck & SignedCall = { channel: 'app', gid: info.gid, transType: info.transType, branchId: info.branchId, op: info.op, path, target: withPhase2(path, info.phase2Url), payload, headers: undefined, issued: undefined };
  const names = transport.header(carrier, AUTH_HEADERS_HEADER);
  let forwarded: HeadersOfCall | undefined;
  if (names !== undefined) {
    forwarded = headersOfCall(names, (name) => transport.header(carrier, name));
    if (forwarded.bad) throw refuse(where, call, MESSAGES.authBadHeaderList(AUTH_HEADERS_HEADER));
    if (forwarded.missing !== undefined) throw refuse(where, call, MESSAGES.authSignedHeaderMissing(forwarded.missing, AUTH_HEADERS_HEADER));
    call.headers = forwarded.text;
  }
  call.issued = transport.header(carrier, AUTH_ISSUED_HEADER);

  const callToken = transport.header(carrier, AUTH_CALL_HEADER);
  if (callToken !== undefined) {
    if (!auth.verify(call, callToken)) throw refuse(where, call, MESSAGES.authBadToken(AUTH_CALL_HEADER));
    keepSignedHeaders(carrier, call, forwarded);
    // the app calls a TCC Try, an XA action or a workflow's step (action, commit, rollback) only while DTM holds the transaction prepared: one replayed later runs nothing
    if (checks.actions && ((call.transType === 'tcc' && call.op === 'try') || (call.transType === 'xa' && call.op === 'action') || call.transType === 'workflow')) return inPhase(readRecord, call, PREPARING, where, checks.issueWindow).then(() => true as const);
    return true;
  }
  if (call.transType === 'tcc' && (call.op === 'confirm' || call.op === 'cancel')) return checkTccPhase2(auth, readRecord, call, where, () => keepSignedHeaders(carrier, call, forwarded), checks.issueWindow);
  if (call.transType === 'xa' && (call.op === 'commit' || call.op === 'rollback')) {
    keepSignedHeaders(carrier, undefined, undefined); // no token signs them: only trace propagation goes on
    return checkXaPhase2(readRecord, call, where);
  }

  const token = tokenInHeader(transport.header(carrier, AUTH_HEADER), call.op, call.branchId);
  if (token === undefined) throw refuse(where, call, MESSAGES.authNoToken(AUTH_HEADER, AUTH_CALL_HEADER));
  call.channel = 'dtm';
  if (!auth.verify(call, token)) throw refuse(where, call, MESSAGES.authBadToken(AUTH_HEADER));
  keepSignedHeaders(carrier, call, forwarded);
  const window = checks.issueWindow;
  if (call.op === 'compensate' || call.op === 'cancel' || call.op === 'rollback') return inPhase(readRecord, call, COMPENSATING, where, window).then(() => true as const);
  if (call.op === 'msg') return checkBackCheckDue(readRecord, call, where, window);
  if (checks.actions && call.op === 'action' && (call.transType === 'saga' || call.transType === 'msg')) return checkActionDue(readRecord, call, where, window);
  return true;
}

/**
 * Whether the request path (and query) `path` arrived without app_url's path `prefix` (a proxy took
 * it off): it is a decorated route's path (`isRoutePath`; an app mounted under `prefix` gets
 * `prefix` + route path); without that knowledge, when it is not under `prefix`. A route whose
 * path begins with `prefix` (app_url `http://gw/api`, global prefix `api`) is told apart only so.
 */
function arrivedWithout(path: string, prefix: string, isRoutePath: ((path: string) => boolean) | undefined): boolean {
  if (!isRoutePath) return !underPath(path, prefix);
  const q = path.indexOf('?');
  return isRoutePath(q < 0 ? path : path.slice(0, q));
}

/** Whether the request path (and query) `path` is `prefix` or under it. */
function underPath(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  const next = path.charAt(prefix.length);
  return next === '' || next === '/' || next === '?';
}

/**
 * `branch_auth_check_actions`: DTM calls a saga's or a message's actions only while the
 * transaction is `submitted`, and a saga's step only once the steps it waits for are done (without
 * concurrency every earlier step, with it those its branch orders name); a call DTM has not made
 * (the step after a failed one, a step ahead of its turn, a branch of a message still prepared or
 * aborted) is refused.
 */
async function checkActionDue(readRecord: RecordReader, call: CallUnderCheck, where: string, window: number): Promise<true> {
  let record = await inPhase(readRecord, call, ['submitted'], where, window);
  if (call.transType !== 'saga') return true;
  const waitsFor = stepsWaitedFor(record, Number(call.branchId));
  const pendingIn = (r: TransactionRecord) => r.branches.filter((b) => b.op === 'action' && waitsFor(Number(b.branchId)) && b.status !== 'succeed').map((b) => b.branchId);
  let pending = pendingIn(record);
  // DTM on a MySQL / PostgreSQL store writes a sequential saga's branch statuses in batches, every
  // 200 ms (dtmsvr/trans_status.go, changeBranchStatus): the step DTM finished just before calling
  // this one may still read as prepared; read again before refusing
  for (let tries = 0; pending.length > 0 && tries < RECORD_SETTLE_TRIES; tries++) {
    await new Promise((resolve) => setTimeout(resolve, RECORD_SETTLE_MS));
    record = await inPhase(readRecord, call, ['submitted'], where, window);
    pending = pendingIn(record);
  }
  if (pending.length > 0) throw refuse(where, call, MESSAGES.authActionNotDue(call.transType, pending));
  return true;
}

/** How often, and how long apart, `branch_auth_check_actions` reads a saga's record again before refusing a step as not due (covers DTM's 200 ms batches). */
const RECORD_SETTLE_TRIES = 3;
const RECORD_SETTLE_MS = 100;

/**
 * The steps (numbered from 1, as the branch ids) saga step `step` waits for, read as DTM reads them
 * (`dtmsvr/trans_type_saga.go`): from the saga's custom data (`{"concurrent": true, "orders":
 * {"1": [0]}}`, 0-based), not from `options.concurrent`, which a saga submitted over gRPC lacks.
 */
function stepsWaitedFor(record: TransactionRecord, step: number): (other: number) => boolean {
  const custom = (typeof record.customData === 'object' && record.customData !== null ? record.customData : {}) as { concurrent?: unknown; orders?: Record<string, unknown> };
  const orders = custom.orders?.[String(step - 1)];
  const named = new Set(Array.isArray(orders) ? orders.filter((pre): pre is number => Number.isInteger(pre)).map((pre) => pre + 1) : []);
  return custom.concurrent === true ? (other) => named.has(other) : (other) => other < step || named.has(other);
}

/** DTM's record of the call's transaction, which must be in one of `statuses` and created within `window` seconds of the call's tokens ({@link checkIssued}). */
async function inPhase(readRecord: RecordReader, call: CallUnderCheck, statuses: readonly TransactionStatus[], where: string, window: number): Promise<TransactionRecord> {
  const record = await readRecord(call.gid);
  if (!record) throw refuse(where, call, MESSAGES.authUnknownTransaction());
  if (record.transType !== call.transType || !statuses.includes(record.status)) throw refuse(where, call, MESSAGES.authWrongPhase(record.transType, record.status, statuses));
  checkIssued(record, call, where, window);
  return record;
}

/**
 * DTM's record must be of the transaction the call's tokens were issued for: created within
 * `window` seconds of their issue time. Else DTM forgot that transaction and someone re-created it
 * under its gid with the tokens its API showed (or the clocks of the app and DTM differ that much).
 */
function checkIssued(record: TransactionRecord, call: CallUnderCheck, where: string, window: number): void {
  const apart = issueProblem(record.createTime, call.issued, window);
  if (apart !== undefined) throw refuse(where, call, MESSAGES.authRecreated(apart, window));
}

/** The target DTM recorded for this call's branch and `op`, if any. */
function recordedUrl(record: TransactionRecord, call: CallUnderCheck, op: string): string | undefined {
  return record.branches.find((b) => b.branchId === call.branchId && b.op === op)?.url;
}

/** DTM's record of this call's branch and op must name the endpoint that was called. */
function checkRecordedTarget(record: TransactionRecord, call: CallUnderCheck, where: string): void {
  const url = recordedUrl(record, call, call.op);
  if (!url || targetPath(url) !== call.path) throw refuse(where, call, MESSAGES.authNotRecorded(call.path));
}

/**
 * TCC confirm / cancel: the token in the branch id signs both targets DTM recorded, so the record is
 * read first; the token is checked before anything about the record is said, so that a caller
 * without one learns nothing (whether DTM holds the gid, its status, its targets).
 */
async function checkTccPhase2(auth: BranchAuth, readRecord: RecordReader, call: CallUnderCheck, where: string, verified: () => void, window: number): Promise<true> {
  const { prefix, token } = splitTccBranchId(call.branchId);
  if (!token) throw refuse(where, call, MESSAGES.authTccIdWithoutToken());
  const record = await readRecord(call.gid);
  const targets = record ? tccTargets(recordedUrl(record, call, 'confirm') ?? '', recordedUrl(record, call, 'cancel') ?? '') : '';
  const signed = { channel: 'dtm' as const, gid: call.gid, transType: 'tcc', branchId: prefix, op: 'tcc', target: targets, payload: call.payload, headers: call.headers, issued: call.issued };
  if (!record || record.transType !== 'tcc' || !auth.verify(signed, token)) throw refuse(where, call, MESSAGES.authBadToken('branch id'));
  verified();
  const statuses = call.op === 'confirm' ? CONFIRMING : COMPENSATING;
  if (!statuses.includes(record.status)) throw refuse(where, call, MESSAGES.authWrongPhase(record.transType, record.status, statuses));
  checkIssued(record, call, where, window);
  checkRecordedTarget(record, call, where);
  return true;
}

/**
 * XA phase 2 carries no payload: it may only finish what a verified action prepared, in the phase
 * DTM is in, at the target it registered. It carries no token either, so its refusal answers one
 * reason whatever DTM's record said (a caller learns nothing of it: whether DTM holds the gid, its
 * type, its status); the app's warning names what the record said.
 */
async function checkXaPhase2(readRecord: RecordReader, call: CallUnderCheck, where: string): Promise<true> {
  const statuses = call.op === 'commit' ? CONFIRMING : COMPENSATING;
  const record = await readRecord(call.gid);
  const url = record ? recordedUrl(record, call, call.op) : undefined;
  let problem: string | undefined;
  if (!record) problem = MESSAGES.authUnknownTransaction();
  else if (record.transType !== call.transType || !statuses.includes(record.status)) problem = MESSAGES.authWrongPhase(record.transType, record.status, statuses);
  else if (!url || targetPath(url) !== call.path) problem = MESSAGES.authNotRecorded(call.path);
  if (problem !== undefined) throw refuse(where, call, problem, MESSAGES.authXaNotDue(call.op));
  return true;
}

/**
 * DTM back-checks a message only while it is prepared, once its `timeout_to_fail` has passed; one
 * of 0 (or none) is DTM's own `TimeoutToFail` (dtmsvr/trans_status.go, `isTimeout`), taken as
 * its default ({@link DTM_DEFAULT_TIMEOUT_TO_FAIL}): not due at once.
 */
async function checkBackCheckDue(readRecord: RecordReader, call: CallUnderCheck, where: string, window: number): Promise<true> {
  const record = await inPhase(readRecord, call, ['prepared'], where, window);
  const timeoutToFail = record.options.timeoutToFail || DTM_DEFAULT_TIMEOUT_TO_FAIL;
  const due = (record.createTime?.getTime() ?? 0) + timeoutToFail * 1000 - BACK_CHECK_CLOCK_SLACK_MS;
  if (Date.now() < due) throw refuse(where, call, MESSAGES.authBackCheckEarly(new Date(due + BACK_CHECK_CLOCK_SLACK_MS).toISOString()));
  return true;
}

/**
 * After a call's token verified: the request context passes on (to `BranchInfo.headers` and the
 * transactions the handler starts) only the forwarded headers the token signed, with the values it
 * signed, and trace propagation; an allow-listed header the caller added is dropped. The call
 * remembers what its token signed of the transaction (`call`: forwarded headers, issue time): a
 * nested TCC branch signs its sub-branches over it, as DTM sends them the transaction's headers.
 */
function keepSignedHeaders(carrier: BranchCarrier, call: Pick<CallUnderCheck, 'headers' | 'issued'> | undefined, forwarded: HeadersOfCall | undefined): void {
  const state = branchCallOf(carrier);
  if (state) state.verified = call ?? {};
  const headers = dtmContext.getStore()?.headers;
  if (!headers) return;
  for (const name in headers) {
    if (!isSignedHeader(name)) continue;
    const at = forwarded ? forwarded.list.indexOf(name) : -1;
    if (at < 0) delete headers[name];
    else headers[name] = forwarded!.values[at];
  }
}

/**
 * A refusal (HTTP 401, gRPC UNAUTHENTICATED; reported as `refused`, see `refusal`), logged as a
 * warning; a TCC branch id's token is shown as `<token>`, never logged. `answered`: the reason the
 * caller is told, when it must not learn `reason` (DTM's record, for a call no token vouches for).
 */
function refuse(where: string, call: Pick<CallUnderCheck, 'gid' | 'branchId' | 'op'>, reason: string, answered = reason): UnauthorizedException {
  const shown = (why: string) => MESSAGES.authRefused(where, call.gid, shownBranchId(call.branchId), call.op, why);
  logger.warn(shown(reason));
  return refusal(new UnauthorizedException(shown(answered)));
}
