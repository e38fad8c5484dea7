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
