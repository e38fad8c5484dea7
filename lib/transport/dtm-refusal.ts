// How DTM words the refusal of an operation because of the transaction it already stores under the
// gid (dtmsvr/api.go: "current status 'succeed', cannot sumbmit." [sic], "... cannot prepare."),
// the same text over HTTP (409) and gRPC (ABORTED). Both transports make it a DtmFailureError.
import { DtmFailureError } from '../errors/dtm-failure.error.js';

const STATUS_REFUSAL = /current status '([a-z]+)', cannot [a-z]+/;

/** When `err` is DTM's refusal of an operation because of the stored status: that status, and DTM's words. */
export function refusedForStatus(err: unknown): { status: string; detail: string } | undefined {
  const match = err instanceof DtmFailureError ? STATUS_REFUSAL.exec(err.message) : null;
  return match ? { status: match[1], detail: match[0] } : undefined;
}

/**
 * DTM's 500 answers that are refusals of the call itself, the same whenever it is sent again, and
 * after which DTM holds nothing of it (it fails before or inside the store's transaction):
 * "topic not found" (a message to a topic nobody subscribed, dtmsvr/trans_type_msg.go) and a value
 * longer than its column of DTM's SQL store (MySQL "Data too long for column 'options'",
 * PostgreSQL "value too long for type character varying(1024)", SQLSTATE 22001). Answers the
 * cause and the fix, to name in the error; undefined for any other answer (a 5xx that may pass).
 */
export function definiteServerRefusal(body: string): { cause: string; fix: string } | undefined {
  if (/\btopic not found\b/.test(body)) {
    return {
      cause: 'the message names a topic of which the DTM server knows no subscriber (DTM answers "topic not found")',
      fix:
        'subscribe the topic first (DTM v1.19: GET <server_url>/subscribe?topic=<topic>&url=<subscriber URL>&remark=<text>, or the gRPC Subscribe; it has no POST /subscribe) or correct its name, then send it again (same gid or a new one). ' +
        'DTM reads its topics from its store every ConfigUpdateInterval (3 s by default): it refuses a topic subscribed just before. ' +
        'On its Redis store DTM v1.19 reads them with one SCAN call, which sees only a part of a Redis holding more keys, so it may never find a subscribed topic: add() each subscriber\'s URL instead',
    };
  }
  const column = /Data too long for column '([A-Za-z_]+)'/.exec(body)?.[1];
  if (column !== undefined) {
    const large = LARGE_COLUMNS[column];
    if (large) return { cause: `DTM's MySQL store keeps ${large.what} (${column}) in a ${large.type} column, at most 65535 bytes, and one of this transaction's is larger (DTM answers "Data too long for column '${column}'")`, fix: large.fix };
    return { cause: `DTM's SQL store keeps ${column} in a varchar(1024) column, and this transaction's is longer (DTM answers "Data too long for column '${column}'")`, fix: TOO_LONG_FIX[column] ?? 'shorten it to 1024 characters' };
  }
  const type = /value too long for type (character varying\(\d+\))/.exec(body)?.[1];
  if (type !== undefined) return { cause: `DTM's SQL store refused a value longer than its column (${type})`, fix: `keep each of the transaction's options (as JSON), custom data, branch URLs and back-check URL within that many characters: ${TOO_LONG_FIX.options}` };
  return undefined;
}

/** DTM's MySQL columns that are no varchar(1024) but a BLOB (65535 bytes): what they hold, and how to stay within them. */
const LARGE_COLUMNS: Record<string, { what: string; type: string; fix: string }> = {
  bin_data: {
    what: "each branch's payload",
    type: 'BLOB',
    fix: "keep each branch's payload as sent (the JSON text over HTTP, the message's bytes over gRPC) within 65535 bytes: pass large data by reference (an id the branch reads), or run DTM on PostgreSQL, whose bytea has no such limit",
  },
};

/** How to stay within DTM's varchar(1024) columns, by column. */
const TOO_LONG_FIX: Record<string, string> = {
  options:
    'DTM stores the transaction\'s options (timeouts, retry settings, branch headers and the headers pass_through_headers forwards, and with lynx.dtm.branch_auth_keys the dtm-auth tokens of DTM\'s calls, about 35 characters per step and op: a saga of 14 steps or more, a message of 28 or more, cannot be stored) as one JSON text within 1024 characters: pass a long value (a bearer token) some other way than as a branch header; with branch_auth_keys, split the work into transactions of fewer steps, or run DTM on its boltdb or Redis store',
  custom_data: 'DTM stores the custom data (saga branch orders, msg delay, workflow name and input) within 1024 characters: fewer orders, a shorter workflow input',
  url: 'keep every branch URL (and target) within 1024 characters',
  query_prepared: 'keep the back-check URL within 1024 characters',
  rollback_reason: 'keep the rollback reason within 1024 characters',
  result: 'keep the result within 1024 characters',
};
