import { NODE_TIMER_MAX_MS } from '../config/dtm-config.keys.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { WaitOptions } from '../transport/dtm.types.js';

/** Seconds a wait for an outcome lasts when `WaitOptions.timeout` is not given. */
export const DEFAULT_WAIT_TIMEOUT = 60;
/** Seconds between the status queries of a wait when `WaitOptions.pollInterval` is not given. */
export const DEFAULT_POLL_INTERVAL = 0.05;

/**
 * Throws `DtmUsageError` unless the wait's options are an object of `timeout` and `pollInterval`
 * alone, and those (given, else their defaults) are numbers of seconds a Node timer can wait. Checked before a transaction that waits sends
 * anything: a refusal after its submit would read as "nothing happened" while DTM runs it.
 */
export function assertWaitOptions(options: WaitOptions | null | undefined): void {
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options)) throw new DtmUsageError(MESSAGES.waitOptionsNotObject(options));
    // a key of another API (timeoutMs, timeout_to_fail) is refused, not dropped: the wait would take its default (60 s)
    for (const key in options) if (key !== 'timeout' && key !== 'pollInterval' && (options as Record<string, unknown>)[key] !== undefined) throw new DtmUsageError(MESSAGES.waitOptionUnknown(key));
  }
  assertWaitOption('timeout', options?.timeout ?? DEFAULT_WAIT_TIMEOUT, 0);
  assertWaitOption('pollInterval', options?.pollInterval ?? DEFAULT_POLL_INTERVAL, 0.001);
}

/** Throws `DtmUsageError` unless `value` is a number of seconds from `min` to what a Node timer can wait. */
function assertWaitOption(option: string, value: unknown, min: number): void {
  const max = NODE_TIMER_MAX_MS / 1000;
  if (typeof value !== 'number' || !(value >= min && value <= max)) throw new DtmUsageError(MESSAGES.waitOptionRange(option, min, max, value));
}
