import { expect } from '@jest/globals';
import { harness, type DtmTransRecord } from './harness.js';
import { logLines } from './log-lines.js';

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

/**
 * DTM recorded its next look at the transaction's timeout (3 s), not at a sent retry_interval (DTM
 * default 10 s). `record` is read right after the prepare (within a second); on the shared DTM
 * server another test file's /resetCronTime can come in between: it sets next_cron_time to its own
 * time, and a take of the transaction by DTM's cron then sets it 10 s (DTM's RetryInterval) after
 * the take, so the record no longer shows what the prepare scheduled. Only when DTM's log shows
 * such a move in that second, one that gives the recorded next_cron_time, is the scheduled time
 * not asserted; next_cron_interval (3, which neither changes) is, as always.
 */
export function expectFirstLookAtTimeout(record: DtmTransRecord | null | undefined, gid: string): void {
  expect(record).toMatchObject({ timeout_to_fail: 3, next_cron_interval: 3 });
  expect(record?.retry_interval).toBeUndefined();
  const created = Date.parse(record!.create_time);
  const next = Date.parse(record!.next_cron_time!);
  const scheduledIn = next - created;
  if ((scheduledIn < 2_000 || scheduledIn > 4_000) && movedByCron(gid, created).some((to) => Math.abs(next - to) < 1_500)) return;
  expect(scheduledIn).toBeGreaterThanOrEqual(2_000);
  expect(scheduledIn).toBeLessThanOrEqual(4_000);
}

/** DTM's RetryInterval (its default: the harness's DTM does not set it), which its cron's take adds to next_cron_time. */
const DTM_RETRY_INTERVAL_MS = 10_000;

/**
 * The next_cron_time values DTM's log shows given to `gid` in the 2 s after `created`: by a
 * /resetCronTime (its time; it moves every unfinished transaction) or by a take of its cron (10 s
 * after the take). DTM logs each request and each take, with the time, as one JSON line.
 */
function movedByCron(gid: string, created: number): number[] {
  const moves: number[] = [];
  const logFile = harness().dtm.logFile;
  for (const line of [...logLines(logFile, 0, '/resetCronTime'), ...logLines(logFile, 0, gid)]) {
    const reset = line.includes('/resetCronTime');
    const take = line.includes('cron job return a trans') && line.includes(gid);
    if (!reset && !take) continue;
    const at = Date.parse((JSON.parse(line) as { ts: string }).ts);
    if (at >= created - 1_000 && at < created + 2_000) moves.push(take ? at + DTM_RETRY_INTERVAL_MS : at);
  }
  return moves;
}
