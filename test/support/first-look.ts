import { expect } from '@jest/globals';
import type { DtmTransRecord } from './harness.js';

/**
 * How late DTM's first look at a prepared transaction with `timeoutToFail: 3` (and no
 * retry_interval) may come. DTM schedules it at create time + 3 s, but its boltdb and Redis stores
 * index next_cron_time by whole seconds, so its cron (every second or less here) can take the
 * transaction up to a second before the timeout; finding it not yet timed out, DTM's lock has
 * already moved the next look to its own RetryInterval (10 s) later: 3 + 10 s and a cron tick.
 * (A clean-clone run saw a TCC cancel at 13.5 s.) The bound still catches a first look scheduled
 * 10 s out, which lands after 10 s + 10 s; the record check below is what tells 3 from 10.
 */
export const FIRST_LOOK_BOUND_MS = 15_500;

/** DTM recorded its next look at the transaction's timeout (3 s), not at a sent retry_interval (DTM default 10 s). */
export function expectFirstLookAtTimeout(record: DtmTransRecord | null | undefined): void {
  expect(record).toMatchObject({ timeout_to_fail: 3, next_cron_interval: 3 });
  expect(record?.retry_interval).toBeUndefined();
  const scheduledIn = Date.parse(record!.next_cron_time!) - Date.parse(record!.create_time);
  expect(scheduledIn).toBeGreaterThanOrEqual(2_000);
  expect(scheduledIn).toBeLessThanOrEqual(4_000);
}
