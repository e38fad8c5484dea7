import { readFileSync } from 'node:fs';
import type { DtmInfo } from './services/dtm.js';
import type { StackInfo } from './services/stack.js';
import { HARNESS_ENV, sleep, waitUntil } from './services/process.js';

/** The stack of a test run: the global setup always starts a DTM server. */
export interface HarnessInfo extends StackInfo {
  dtm: DtmInfo;
}

/** Environment variable naming the harness's JSON file (defined beside the run directory it lives in). */
export { HARNESS_ENV };

let cached: HarnessInfo | undefined;

/** The running stack (DTM server, PostgreSQL, MariaDB, Redis) started once for this test run. */
export function harness(): HarnessInfo {
  if (cached) return cached;
  const file = process.env[HARNESS_ENV];
  if (!file) throw new Error(`${HARNESS_ENV} is not set: run the tests with "npm test" (jest's global setup starts the stack)`);
  cached = JSON.parse(readFileSync(file, 'utf8')) as HarnessInfo;
  return cached;
}

/** Global transaction statuses DTM stores. */
export type TransStatus = 'prepared' | 'submitted' | 'aborting' | 'succeed' | 'failed';
/** Branch statuses DTM stores. */
export type BranchStatus = 'prepared' | 'succeed' | 'failed';

/** A global transaction as `/api/dtmsvr/query` returns it (the fields tests look at). */
export interface DtmTransRecord {
  /** The row's id on DTM's SQL stores; 0 on boltdb and Redis. */
  id?: number;
  gid: string;
  trans_type: string;
  status: TransStatus;
  protocol: string;
  steps?: Record<string, string>[];
  payloads?: string[];
  custom_data?: string;
  query_prepared?: string;
  rollback_reason?: string;
  /** A workflow's result, base64 of its JSON. */
  result?: string;
  /** The stored options, as JSON text. */
  options?: string;
  timeout_to_fail?: number;
  request_timeout?: number;
  retry_interval?: number;
  retry_limit?: number;
  retry_count?: number;
  branch_headers?: Record<string, string>;
  concurrent?: boolean;
  next_cron_interval?: number;
  next_cron_time?: string;
  create_time: string;
  update_time: string;
  finish_time?: string;
  rollback_time?: string;
}

/** A branch row as `/api/dtmsvr/query` returns it. */
export interface DtmBranchRecord {
  gid: string;
  branch_id: string;
  op: string;
  status: BranchStatus;
  url?: string;
  /** The stored request body, base64. */
  bin_data?: string;
  create_time: string;
  update_time: string;
  finish_time?: string;
}

/** The answer of `/api/dtmsvr/query`: `transaction` is null for an unknown gid. */
export interface DtmQueryAnswer {
  transaction: DtmTransRecord | null;
  branches: DtmBranchRecord[];
}

/** A raw HTTP answer from the DTM server. */
export interface DtmHttpAnswer<T = unknown> {
  status: number;
  body: T;
  text: string;
}

/** GET `<server_url><path>` on the harness's DTM server (or the one at `serverUrl`); answers status and parsed body. */
export async function dtmGet<T = unknown>(path: string, serverUrl = harness().dtm.serverUrl): Promise<DtmHttpAnswer<T>> {
  const res = await fetch(`${serverUrl}${path}`);
  return toAnswer<T>(res);
}

/** POST a JSON body to `<server_url><path>` on the harness's DTM server (or the one at `serverUrl`; plain HTTP, no library code). */
export async function dtmPost<T = unknown>(path: string, body: unknown, serverUrl = harness().dtm.serverUrl): Promise<DtmHttpAnswer<T>> {
  const res = await fetch(`${serverUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return toAnswer<T>(res);
}

async function toAnswer<T>(res: Response): Promise<DtmHttpAnswer<T>> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: body as T, text };
}

/** A new gid from the harness's server (or the one at `serverUrl`): `/newGid`. */
export async function newGid(serverUrl?: string): Promise<string> {
  const answer = await dtmGet<{ gid: string }>('/newGid', serverUrl);
  if (answer.status !== 200) throw new Error(`newGid answered ${answer.status}: ${answer.text}`);
  return answer.body.gid;
}

/**
 * The module's own headers DTM sends with every branch call of a transaction (its tokens,
 * `dtm-auth`; their issue time, `dtm-auth-issued`), as its query answer shows them: what a call
 * replayed from DTM's API carries (its forwarded headers and their list aside).
 */
export function storedAuth(from: DtmQueryAnswer | Record<string, string>): Record<string, string> {
  const stored = isQueryAnswer(from) ? (from.transaction?.branch_headers ?? {}) : from;
  const auth: Record<string, string> = {};
  for (const name of ['dtm-auth', 'dtm-auth-issued']) if (stored[name] !== undefined) auth[name] = stored[name];
  return auth;
}

function isQueryAnswer(from: DtmQueryAnswer | Record<string, string>): from is DtmQueryAnswer {
  return Array.isArray((from as DtmQueryAnswer).branches);
}

/** What DTM (the harness's, or the one at `serverUrl`) recorded for `gid` (`/api/dtmsvr/query`). */
export async function queryTrans(gid: string, serverUrl?: string): Promise<DtmQueryAnswer> {
  const answer = await rawQueryTrans(gid, serverUrl);
  if (answer.transaction) withStoredOptions(answer.transaction);
  return answer;
}

/** DTM's `/query` answer for `gid` as it is: on a SQL store without the top-level option fields {@link queryTrans} fills in (for tests that pin that answer). */
export async function rawQueryTrans(gid: string, serverUrl?: string): Promise<DtmQueryAnswer> {
  const answer = await dtmGet<DtmQueryAnswer>(`/query?gid=${encodeURIComponent(gid)}`, serverUrl);
  if (answer.status !== 200) throw new Error(`query ${gid} answered ${answer.status}: ${answer.text}`);
  return answer.body;
}

/** The transaction options DTM answers as top-level fields on boltdb and Redis, and only as the JSON text of `options` on SQL stores. */
const OPTION_FIELDS = ['timeout_to_fail', 'request_timeout', 'retry_interval', 'retry_limit', 'wait_result', 'branch_headers', 'concurrent'];

/**
 * Sets on `record` each option DTM stored only in its `options` text (on a SQL store, where those
 * fields are no columns), as boltdb and Redis answer it: tests read DTM's options one way on every store.
 */
function withStoredOptions(record: DtmTransRecord): void {
  if (!record.options) return;
  const text = JSON.parse(record.options) as Record<string, unknown>;
  const top = record as unknown as Record<string, unknown>;
  for (const key of OPTION_FIELDS) {
    if (top[key] === undefined && text[key] !== undefined && text[key] !== 0 && text[key] !== false) top[key] = text[key];
  }
}

/** Branch statuses of `gid` in DTM's storage order (saga: compensate, action per step). */
export async function branchStatuses(gid: string): Promise<BranchStatus[]> {
  return (await queryTrans(gid)).branches.map((b) => b.status);
}

/**
 * Polls `/query` (of the harness's DTM server, or the one at `serverUrl`) until the global status of
 * `gid` is `status` (or one of them) and returns that answer; fails with the last answer when `timeoutMs` runs out.
 */
export function waitForTransStatus(gid: string, status: TransStatus | TransStatus[], timeoutMs = 20_000, serverUrl?: string): Promise<DtmQueryAnswer> {
  return untilStatus(gid, status, { timeoutMs, intervalMs: 100, serverUrl });
}

/**
 * Makes DTM's cron take every pending transaction (`triggerCron`, every `intervalMs`) until the
 * global status of `gid` is `status` (or one of them), as DTM's own retries would in time, and
 * returns that answer; fails with what DTM held last when `timeoutMs` runs out.
 */
export function cronUntilStatus(
  gid: string,
  status: TransStatus | TransStatus[],
  options: { timeoutMs?: number; intervalMs?: number; serverUrl?: string } = {},
): Promise<DtmQueryAnswer> {
  const { timeoutMs = 30_000, intervalMs = 500, serverUrl } = options;
  return untilStatus(gid, status, { timeoutMs, intervalMs, serverUrl, cron: true });
}

/** The wait of {@link waitForTransStatus} and {@link cronUntilStatus}: `/query` every `intervalMs` (after a `triggerCron` with `cron`). */
async function untilStatus(
  gid: string,
  status: TransStatus | TransStatus[],
  options: { timeoutMs: number; intervalMs: number; serverUrl?: string; cron?: boolean },
): Promise<DtmQueryAnswer> {
  const wanted = Array.isArray(status) ? status : [status];
  const { timeoutMs, intervalMs, serverUrl, cron } = options;
  let last: DtmQueryAnswer | undefined;
  try {
    await waitUntil(`transaction ${gid} reaching ${wanted.join(' or ')}${cron ? " (DTM's cron made to take it)" : ''}`, async () => {
      if (cron) await triggerCron(serverUrl);
      last = await queryTrans(gid, serverUrl);
      return last.transaction !== null && wanted.includes(last.transaction.status);
    }, { timeoutMs, intervalMs });
  } catch (err) {
    throw new Error(`${(err as Error).message}; DTM held last: ${seenIn(last)}`, { cause: err });
  }
  return settledBranches(gid, last!, serverUrl);
}

/** What a `/query` answer holds, for an error message: status, branches, rollback reason. */
function seenIn(answer: DtmQueryAnswer | undefined): string {
  if (!answer) return 'no answer from DTM';
  if (!answer.transaction) return 'no such transaction';
  const branches = answer.branches.map((b) => `${b.branch_id}/${b.op}=${b.status}`).join(', ');
  const reason = answer.transaction.rollback_reason ? `, rollback_reason "${answer.transaction.rollback_reason}"` : '';
  return `status "${answer.transaction.status}", branches [${branches}]${reason}`;
}

/**
 * `answer` with its branch statuses as DTM wrote them in the end: DTM on a SQL store (its rows have
 * an id) writes them in 200 ms batches and may record a finished transaction before them, so a
 * finished answer with `prepared` branches is read again 300 ms later while that changes them.
 */
async function settledBranches(gid: string, answer: DtmQueryAnswer, serverUrl?: string): Promise<DtmQueryAnswer> {
  const finished = (a: DtmQueryAnswer) => a.transaction?.status === 'succeed' || a.transaction?.status === 'failed';
  const statuses = (a: DtmQueryAnswer) => a.branches.map((b) => b.status).join();
  for (let reads = 0; reads < 4 && finished(answer) && (answer.transaction?.id ?? 0) > 0 && answer.branches.some((b) => b.status === 'prepared'); reads++) {
    await sleep(300);
    const again = await queryTrans(gid, serverUrl);
    const changed = statuses(again) !== statuses(answer);
    answer = again;
    if (!changed) break;
  }
  return answer;
}

/**
 * Has DTM's cron take every unfinished transaction at its next poll (≤ 1 s with the harness config)
 * instead of after its retry interval, via `GET /resetCronTime?timeout=0`. This is the only way on
 * the boltdb and Redis stores: `POST /resetNextCronTime {gid}` changes the stored next_cron_time but
 * not the index the cron reads, so it has no effect there (pinned in test/e2e/harness.spec.ts).
 * It moves the transactions of every test file: a test asserting that something is NOT retried
 * must use a DTM server of its own (`startDtm`). `serverUrl`: another DTM server than the harness's.
 */
export async function triggerCron(serverUrl?: string): Promise<void> {
  const answer = await dtmGet<{ succeed_count: number }>('/resetCronTime?timeout=0&limit=1000', serverUrl);
  if (answer.status !== 200) throw new Error(`resetCronTime answered ${answer.status}: ${answer.text}`);
}
