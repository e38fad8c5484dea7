// The rule every gid and branch id must follow, checked on both sides with the same code: by the AP
// before it sends a transaction to DTM, and by the branch guard before a handler runs or a barrier
// row is written. A gid and a branch id are keys: of DTM's store, of the barrier table, of XA ids,
// of Redis barrier keys. The rule keeps them exact and safe wherever they go:
// - at most 128 characters: DTM's SQL stores and the barrier table keep them in varchar(128)
//   (PostgreSQL refuses a longer value, MySQL in a non-strict sql_mode truncates it);
// - printable ASCII (0x21-0x7E): no control characters, no spaces (MySQL's PAD SPACE collations
//   ignore trailing ones), nothing a collation could fold (accents);
// - none of ' " ` (quotes), \ (an escape character in MySQL strings unless NO_BACKSLASH_ESCAPES,
//   and in PostgreSQL's E'' strings), ; (DTM strips it from gids, so the gid DTM stores would not
//   be the one the branch sees).
// Everything DTM and its SDKs generate passes (newGid's 22 letters and digits, branch ids `01`,
// `0101`, `01-01`), and so do the usual business ids (`order-7`, `Order_7:2026`, UUIDs, ULIDs,
// `tenant/order#7`, base64 and base64url).
// A call's trans_type must be one DTM sends (`DTM_TRANS_TYPES`): the barrier row keeps it too.
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';

/** Longest gid and branch id: DTM's SQL stores and the barrier table keep both in varchar(128). */
export const MAX_BRANCH_KEY_LENGTH = 128;

/** Printable ASCII but space, `"`, `'`, `;`, `\` and `` ` ``. */
const KEY = /^[\x21\x23-\x26\x28-\x3a\x3c-\x5b\x5d-\x5f\x61-\x7e]*$/;

/**
 * The `trans_type` values DTM v1.19 puts in a branch call (HTTP query, gRPC `dtm-trans_type`): the
 * types it has a processor for (dtmsvr/trans_type_*.go), spelled so. A call carrying any other is
 * not DTM's: its trans_type would go into the barrier row (`varchar(45)`) as it came.
 */
export const DTM_TRANS_TYPES: ReadonlySet<string> = new Set(['saga', 'msg', 'tcc', 'xa', 'workflow']);

/**
 * The ops DTM v1.19 puts in a branch call (`dtmcli/dtmimp/consts.go`; a workflow's resume, branch
 * `00`, carries the workflow's name instead). A decorated handler's ops are some of these (the guard
 * checks the call's against them); `@BranchContext()` checks a call on a route without a branch
 * decorator against all of them (see {@link opProblem}).
 */
export const DTM_OPS: ReadonlySet<string> = new Set(['action', 'compensate', 'try', 'confirm', 'cancel', 'commit', 'rollback', 'msg']);

/** Ops that undo an action: a branch call refused for its keys never ran, so these have nothing to undo. */
export const UNDO_OPS: ReadonlySet<string> = new Set(['compensate', 'cancel', 'rollback']);

/**
 * What is wrong with a branch call's gid or branch id, or undefined when both follow the rule (see
 * the top of this file). The answer never repeats the value (it goes back to DTM, which reads the
 * words FAILURE and ONGOING anywhere in an answer). Allocates nothing when both are fine.
 */
export function branchKeysProblem(gid: string, branchId: string): string | undefined {
  if (gid.length > 0 && gid.length <= MAX_BRANCH_KEY_LENGTH && KEY.test(gid) && branchId.length <= MAX_BRANCH_KEY_LENGTH && KEY.test(branchId)) return undefined;
  return keyProblem('gid', gid) ?? keyProblem('branch id', branchId);
}

/**
 * What is wrong with a branch call's `trans_type`, or undefined when it is one of {@link DTM_TRANS_TYPES}
 * (one Set lookup: the guard asks on every call). Every call of a transaction carries the same
 * trans_type, so a refused one refuses all of them, and an undo op refused so has nothing to undo.
 * The answer never repeats the value.
 */
export function transTypeProblem(transType: string): string | undefined {
  return DTM_TRANS_TYPES.has(transType) ? undefined : MESSAGES.transTypeUnknown([...DTM_TRANS_TYPES]);
}

/**
 * What is wrong with a branch call's gid, branch id ({@link branchKeysProblem}) or trans_type
 * ({@link transTypeProblem}), or undefined when all follow the rules: what the branch guard checks
 * before a decorated handler, and `@BranchContext()` on a route without a branch decorator (where
 * no guard ran). Allocates nothing when all are fine.
 */
export function branchCallProblem(gid: string, branchId: string, transType: string): string | undefined {
  return branchKeysProblem(gid, branchId) ?? transTypeProblem(transType);
}

/**
 * What is wrong with the op of a call to a route without a branch decorator (which declares no ops),
 * or undefined when DTM sends it: one of {@link DTM_OPS}, or in a workflow's resume
 * (`trans_type=workflow`, branch `00`) any (the workflow's name). One Set lookup.
 */
export function opProblem(op: string, transType: string, branchId: string): string | undefined {
  return DTM_OPS.has(op) || (transType === 'workflow' && branchId === '00') ? undefined : MESSAGES.opUnknown([...DTM_OPS]);
}

/** Throws `DtmUsageError` (naming the limit) unless `gid` follows the rule of gids; called before anything is sent to DTM. */
export function assertTransactionGid(gid: unknown): asserts gid is string {
  if (typeof gid !== 'string') throw new DtmUsageError(MESSAGES.badGid(gid));
  const problem = keyProblem('gid', gid);
  if (problem !== undefined) throw new DtmUsageError(MESSAGES.gidRefused(gid, problem), { gid });
}

function keyProblem(what: 'gid' | 'branch id', value: string): string | undefined {
  if (what === 'gid' && value.length === 0) return MESSAGES.keyEmpty(what);
  if (value.length > MAX_BRANCH_KEY_LENGTH) return MESSAGES.keyTooLong(what, value.length, MAX_BRANCH_KEY_LENGTH);
  if (KEY.test(value)) return undefined;
  for (let i = 0; i < value.length; i++) {
    const code = value.codePointAt(i)!;
    if (!KEY.test(String.fromCodePoint(code))) return MESSAGES.keyCharacter(what, describe(code), i + 1);
  }
  return undefined;
}

function describe(code: number): string {
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code === 0x20) return 'a space';
  if (code === 0x22 || code === 0x27 || code === 0x60) return 'a quote';
  if (code === 0x5c) return 'a backslash';
  if (code === 0x3b) return "a ';' (DTM strips it from gids)";
  if (code < 0x20 || code === 0x7f) return `a control character (${hex})`;
  return `a non-ASCII character (${hex})`;
}
