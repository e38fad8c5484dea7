// How long a text DTM's SQL stores keep: `rollback_reason`, `options`, `custom_data`, `result`,
// `query_prepared` and a branch's `url` are varchar(1024) in DTM v1.19's MySQL and PostgreSQL
// schemas (sqls/dtmsvr.storage.*.sql). Both count a varchar's length in characters (code points,
// with utf8mb4 on MySQL), not bytes. A longer value makes DTM answer 500 ("Data too long for column
// ...", PostgreSQL "value too long for type character varying(1024)") and store nothing of the call.

/** The longest text, in characters (code points), DTM's SQL stores keep in their varchar(1024) columns. */
export const DTM_TEXT_MAX = 1024;

/** What ends a text {@link cutToStore} shortened. */
const CUT_MARK = '…';

/**
 * `text` as DTM's SQL stores keep it: unchanged when it has at most `max` characters (code
 * points), else its first `max - 1` code points and `…` (never a half of a surrogate pair).
 */
export function cutToStore(text: string, max = DTM_TEXT_MAX): string {
  if (text.length <= max) return text; // UTF-16 units: never fewer than code points
  const points = Array.from(text);
  if (points.length <= max) return text;
  return points.slice(0, max - 1).join('') + CUT_MARK;
}

/**
 * @internal `text`, or when `length` of it (how long the text made of it is: a JSON body, escapes
 * included) passes `budget`, its start cut ({@link cutToStore}, ending in `…`) so that it fits. A text
 * of more than 4 × `budget` UTF-16 units is measured by that much of its start only (what is kept is
 * at most `budget` code points, each 1 or 2 units): a handler's error of megabytes costs no more.
 */
export function cutToFit(text: string, budget: number, length: (text: string) => number): string {
  const source = text.length > 4 * budget ? text.slice(0, 4 * budget) : text;
  if (source === text && length(text) <= budget) return text;
  // from at most `budget` characters down, each pass in proportion to what is over (escapes make a text longer than it has characters)
  let keep = Math.min(Array.from(source).length, budget);
  let cut = cutToStore(source, keep);
  for (let over = length(cut) - budget; over > 0 && keep > 1; over = length(cut) - budget) {
    keep = Math.max(1, Math.min(keep - 1, Math.floor((keep * budget) / (budget + over))));
    cut = cutToStore(source, keep);
  }
  return cut;
}

/**
 * The most characters (UTF-16 units) of an error's text a branch of this app answers (a FAILURE's
 * reason, an ONGOING's message, an HttpException's body or message, over gRPC any error's message),
 * cut between words (`truncate`, dtm.messages.ts) past it: a grpc-js server cannot send a status
 * whose message takes ~64 KiB or more (percent-encoded: up to 9 characters a unit; Node's HTTP/2
 * closes the connection, the calls on it wait for their deadline, docs/grpc.md), and a caller of
 * this module refuses an HTTP answer over its `max_answer_bytes` (64 KiB at least). The same bound
 * applies to what a log line quotes.
 */
export const ANSWERED_TEXT_MAX = 4000;

/**
 * The most bytes the headers DTM adds to an HTTP branch call (`branch_headers`: forwarded headers,
 * `branchHeaders`, with `lynx.dtm.branch_auth_keys` the tokens of DTM's calls) may take, each as
 * `name: value` and a line end. Node's HTTP server refuses a request whose header section passes
 * 16 KiB (`http.maxHeaderSize`) with 431 before any handler runs, which DTM retries for ever;
 * the other 4 KiB are left for what DTM sends itself (the request line, with the branch's URL,
 * gid, op and DTM's address, and its own headers).
 */
export const HTTP_BRANCH_HEADERS_MAX = 12 * 1024;

/** The bytes `headers` take in an HTTP request's header section (`name: value` and CRLF each). */
export function httpHeaderBytes(headers: Record<string, string>): number {
  let bytes = 0;
  for (const name in headers) bytes += Buffer.byteLength(name) + Buffer.byteLength(headers[name]) + 4;
  return bytes;
}
