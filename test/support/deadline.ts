// Deadlines for what a test awaits from outside itself (a peer's HTTP answer, a latch another
// process opens, a close): a stuck wait fails its test, well before jest's own timeout, with an
// error naming what it waited for, instead of holding the file until the run's guard kills jest
// without a word about where it stood.

/** The deadline of one call to a peer (below jest's test timeout of 60 s, so that the test's error names the call). */
export const CALL_DEADLINE_MS = 20_000;

/** The error of a wait that ran out of time: `what` names what it waited for. */
export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what}: no answer within ${ms} ms`);
  }
}

/**
 * What `run` resolves to, or a {@link DeadlineError} naming `what` once `ms` have passed (then the
 * signal given to `run` aborts, so that a fetch or a socket given it lets go). `run`'s own error
 * passes through as it is. The timer is cleared either way: one left running would keep the jest
 * worker alive.
 */
export async function within<T>(what: string, ms: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DeadlineError(what, ms));
      controller.abort();
    }, ms);
  });
  try {
    return await Promise.race([run(controller.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** A peer's answer read whole: its HTTP status and its body's text. */
export interface PeerAnswer {
  status: number;
  text: string;
}

/**
 * `fetch(url, init)` and its body's text within `ms` (both: a peer that sends its headers and then
 * stalls is stuck too); past it, a {@link DeadlineError} naming the method, the URL and the gid of
 * a JSON body that has one. Network errors (`fetch failed`: the peer is down) pass through as they are.
 */
export async function fetchWithin(url: string, init: RequestInit = {}, ms = CALL_DEADLINE_MS): Promise<PeerAnswer> {
  return within(describeCall(url, init), ms, async (signal) => {
    const res = await fetch(url, { ...init, signal });
    return { status: res.status, text: await res.text() };
  });
}

/** `POST <url>` with `body` as JSON, within `ms` ({@link fetchWithin}). */
export function postJsonWithin(url: string, body: unknown, ms = CALL_DEADLINE_MS): Promise<PeerAnswer> {
  return fetchWithin(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }, ms);
}

/** `METHOD url`, and ` (gid …)` when the body is JSON naming a gid: how a stuck call is named. */
function describeCall(url: string, init: RequestInit): string {
  let gid: unknown;
  if (typeof init.body === 'string') {
    try {
      gid = (JSON.parse(init.body) as { gid?: unknown }).gid;
    } catch {
      // not JSON: no gid to name
    }
  }
  return `${init.method ?? 'GET'} ${url}${typeof gid === 'string' ? ` (gid ${gid})` : ''}`;
}

/**
 * Runs each of `steps` (a hook's closes: what it closes, and how) within `ms` each, all of them even
 * when one fails or is stuck, then throws the errors together: a close that never ends names
 * itself, and the others still run.
 */
export async function closeEach(steps: [what: string, close: () => unknown][], ms = CALL_DEADLINE_MS): Promise<void> {
  const errors: string[] = [];
  for (const [what, close] of steps) {
    try {
      await within(what, ms, async () => close());
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (errors.length > 0) throw new Error(errors.join('\n'));
}
