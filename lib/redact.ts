// What errors and logs may show of a URL, a configuration value or a failed request: never
// credentials, whatever their characters (a password may hold `@`, `:`, `/`, `?`, `#`, spaces) and
// wherever the URL sits in the text.
import { textOf } from './errors/text-of.js';

/** A character of a URL's scheme (`[a-z0-9+.-]`, any case); one begins with a letter. */
const SCHEME_CHAR = /[a-z0-9+.-]/i;
const LETTER = /[a-z]/i;

/**
 * Where the first `scheme://` at or after `from` begins (what `/[a-z][a-z0-9+.-]*:\/\//gi` finds
 * from there), and where it ends; undefined when there is none. Linear in the text: that regex
 * tries every start in a run of scheme characters again (quadratic: a 64 KB run with an `@`, which
 * a branch's answer or a call's `dtm` parameter can hold, took seconds; an answer of
 * `max_answer_bytes`, hours), whereas each `://` is found once and its run walked once.
 */
function nextScheme(text: string, from: number): { start: number; end: number } | undefined {
  for (let sep = text.indexOf('://', from); sep >= 0; sep = text.indexOf('://', sep + 3)) {
    let start = sep;
    while (start > from && SCHEME_CHAR.test(text[start - 1]!)) start--;
    while (start < sep && !LETTER.test(text[start]!)) start++;
    if (start < sep) return { start, end: sep + 3 };
  }
  return undefined;
}
/** What ends a URL inside free text. */
const WHITESPACE = /\s/;
/** Longest value shown in a message; longer ones are cut. */
const SHOWN_LENGTH = 200;

/**
 * `value` (a URL, or a value that may hold one) with everything that could be credentials replaced
 * by `***`: from after `scheme://` (or from the start, without a scheme) up to the LAST `@`. A
 * password may contain any character, so the value is not parsed: `http://u:p@ss@h/x` and the invalid
 * `http://u:pa/ss@h` both become `http://***@h...`. A URL with `@` elsewhere (its path or query)
 * loses more than its credentials; that is the price of never showing them. Without `@` (the usual
 * case) `value` itself is returned, without allocating.
 */
export function redactUrl(value: string): string {
  const at = value.lastIndexOf('@');
  if (at < 0) return value;
  const scheme = nextScheme(value, 0);
  const start = scheme && scheme.end <= at ? scheme.end : 0;
  return `${value.slice(0, start)}***${value.slice(at)}`;
}

/**
 * The URL `value` without its username and password (`http://user:pw@dtm:36789/api/dtmsvr` →
 * `http://dtm:36789/api/dtmsvr`): what may be sent to a third party (a branch) as a server's
 * address. `value` itself when it holds none or is not a URL.
 */
export function withoutCredentials(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  if (url.username === '' && url.password === '') return value;
  url.username = '';
  url.password = '';
  // new URL() adds a `/` to a URL without a path: not to be mistaken for another server's address
  return url.pathname === '/' && !value.endsWith('/') && url.search === '' && url.hash === '' ? url.href.slice(0, -1) : url.href;
}

/**
 * Free text (an error message from a library, a list or mapping printed as JSON) with the
 * credentials of every URL in it replaced: for each `scheme://`, everything up to the last `@`
 * before the next whitespace. A password with a space in it cannot be told apart from the text
 * around it: values known to be URLs go through {@link redactUrl} instead.
 */
export function redactText(text: string): string {
  if (!text.includes('@')) return text;
  let out = '';
  let from = 0;
  for (let match = nextScheme(text, 0); match; ) {
    const start = match.end;
    let end = start;
    while (end < text.length && !WHITESPACE.test(text[end])) end++;
    // the last @ of this URL, looked for in it only (lastIndexOf would walk back past it, each URL again)
    let at = end - 1;
    while (at >= start && text.charCodeAt(at) !== 64) at--;
    if (at >= start) {
      out += `${text.slice(from, start)}***`;
      from = at;
    }
    match = nextScheme(text, end);
  }
  return out + text.slice(from);
}

/** `value` without its trailing `/`s, in one pass (`/\/+$/` takes quadratic time on a long run of `/` not at the end, which a caller can send). */
export function withoutTrailingSlashes(value: string): string {
  let end = value.length;
  while (end > 0 && value.charCodeAt(end - 1) === 47) end--;
  return end === value.length ? value : value.slice(0, end);
}

/** `value` shortened for a message: at most 200 characters, then `…`. */
export function shorten(value: string): string {
  return value.length > SHOWN_LENGTH ? `${value.slice(0, SHOWN_LENGTH)}…` : value;
}

/**
 * A plain Error standing in for an HTTP client's error as the `cause` of ours: its code and its
 * message with URLs redacted. The original (an AxiosError) holds the request's configuration,
 * headers included, which anything that prints the cause would print too (a forwarded
 * Authorization header, credentials in a URL).
 */
export function safeCause(err: unknown): Error {
  const source = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof source?.message === 'string' ? source.message : textOf(err);
  const cause = new Error(redactText(message));
  if (typeof source?.code === 'string') Object.assign(cause, { code: source.code });
  return cause;
}

/** Control characters (C0, DEL, C1) and the Unicode line and paragraph separators. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * `text` (which may hold what a caller sent: a pipe's message naming a payload's property) with
 * every control character written as an escape (`\r`, `\n`, `\t`, `\u001b`, ...), so that it can
 * neither break a log line nor forge one; `text` itself when it holds none.
 */
export function escapeControls(text: string): string {
  if (!CONTROL.test(text)) return text;
  return text.replace(CONTROLS, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** What a message may show of a caller's value as it is: printable ASCII without spaces. */
const PLAIN = /^[!-~]*$/;

/**
 * A value a caller may have chosen (a branch call's gid, branch id or op), as a log line or an error
 * shows it: as it is when printable ASCII without spaces (every gid, branch id and op DTM sends),
 * else cut to 200 characters and quoted ({@link quotedCallerValue}), so that CR, LF, ANSI escapes
 * and spaces neither forge a line nor a field, and a long value does not flood the log.
 */
export function shownCallerValue(value: string): string {
  return value.length <= SHOWN_LENGTH && PLAIN.test(value) ? value : quotedCallerValue(shorten(value));
}

/**
 * `value` quoted as JSON, with the characters JSON leaves as they are escaped too (DEL, C1 controls
 * such as NEL and CSI, U+2028, U+2029: a line break to Unicode-aware viewers, an ANSI escape to some
 * terminals; {@link escapeControls}): still JSON, which reads back as `value`.
 */
export function quotedCallerValue(value: string): string {
  return escapeControls(JSON.stringify(value));
}
