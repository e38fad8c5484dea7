// What errors and logs may show of a URL or of a failed request: never credentials.

const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i;

/** `url` with any `user:password@` replaced by `***@`, so that it can be shown in errors and logs. */
export function redactUrl(url: string): string {
  return url.replace(USERINFO, '$1***@');
}

/**
 * A plain Error standing in for an HTTP client's error as the `cause` of ours: its code and its
 * message with URLs redacted. The original (an AxiosError) holds the request's configuration,
 * headers included, which anything that prints the cause would print too (a forwarded
 * Authorization header, credentials in a URL).
 */
export function safeCause(err: unknown): Error {
  const source = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof source?.message === 'string' ? source.message : String(err);
  const cause = new Error(message.replace(/[a-z][a-z0-9+.-]*:\/\/[^/?#@\s]*@/gi, (m) => redactUrl(m)));
  if (typeof source?.code === 'string') Object.assign(cause, { code: source.code });
  return cause;
}
