import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach } from '@jest/globals';
import { DtmWorkflowPendingError, type BranchAnswer, type BranchRecord, type DtmClient, type DtmProtocol, type FinalResult, type Payload, type TransactionHelper } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from './dtm-app.js';
import { cronUntilStatus, dtmPost, harness, queryTrans, triggerCron, waitForTransStatus, type DtmHttpAnswer, type DtmQueryAnswer, type TransStatus } from './harness.js';
import { startRecorder, type Recorder } from './recorder.js';
import { startDtm, type DtmInfo } from './services/dtm.js';
import { runDirFrom, type ManagedProcess } from './services/process.js';

/** The protocols the application-side scenarios run on: the same tests, DtmClient talking HTTP or gRPC to DTM. */
export const PROTOCOLS: readonly DtmProtocol[] = ['http', 'grpc'];

/** What `useDtmAppWithRecorder` gives a spec; read its fields inside tests and hooks, not at load time. */
export interface DtmAppWithRecorder {
  readonly protocol: DtmProtocol;
  readonly app: DtmTestApp;
  readonly client: DtmClient;
  readonly helper: TransactionHelper;
  readonly recorder: Recorder;
  /** The recorder's `path` as a branch target of this protocol: its URL (HTTP), or its gRPC target. */
  target(path: string): string;
  /** `value` as a payload for the recorder on this protocol: as it is (HTTP), or its JSON text as the message bytes (gRPC). */
  payload(value: unknown): Payload;
  /** A branch answer's body: the parsed JSON (HTTP), or the reply bytes read as JSON (gRPC). */
  answerBody(answer: BranchAnswer): unknown;
  /** The `dtm` a branch the module calls itself receives: DTM's HTTP URL, or its gRPC address. */
  readonly dtm: string;
  /** The server_url of the DTM server the app talks to: the harness's, or the one of `{ ownDtm }` (for `triggerCron`, `queryTrans`). */
  readonly serverUrl: string;
  /** How a branch call arrives at the recorder: the HTTP method, or `GRPC`. */
  method(http: 'GET' | 'POST'): string;
}

/**
 * Registers the spec's hooks: a recorder app and a DtmModule test app (talking `protocol` to DTM)
 * started once for the file (closed after it), the recorder reset before each test. With `ownDtm`
 * (a name for its run directory), on a DTM server of its own, started with them: for a test that
 * counts what DTM retries, which the shared server's cron, moved by any file's /resetCronTime, alters.
 */
export function useDtmAppWithRecorder(protocol: DtmProtocol = 'http', options: { ownDtm?: string } = {}): DtmAppWithRecorder {
  let app: DtmTestApp | undefined;
  let recorder: Recorder | undefined;
  const own = options.ownDtm ? useOwnDtm(options.ownDtm) : undefined;
  const grpc = protocol === 'grpc';
  beforeAll(async () => {
    recorder = await startRecorder();
    app = await startDtmApp({ config: { protocol, ...own?.config() } });
  });
  afterAll(async () => {
    await app?.close();
    await recorder?.close();
  });
  beforeEach(() => recorder?.reset());
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useDtmAppWithRecorder: read inside a test or hook, after beforeAll');
    return value;
  };
  return {
    protocol,
    get app() { return started(app); },
    get client() { return started(app).client; },
    get helper() { return started(app).helper; },
    get recorder() { return started(recorder); },
    target: (path) => (grpc ? started(recorder).grpcTargetFor(path) : started(recorder).urlFor(path)),
    payload: (value) => (grpc ? Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8') : (value as Payload)),
    answerBody: (answer) => (grpc ? JSON.parse(answer.raw.toString('utf8')) : answer.body),
    get dtm() {
      const dtm = own?.info ?? harness().dtm;
      return grpc ? dtm.grpcAddress : dtm.serverUrl;
    },
    get serverUrl() { return (own?.info ?? harness().dtm).serverUrl; },
    method: (http) => (grpc ? 'GRPC' : http),
  };
}

/** What `useOwnDtm` gives a spec: a DTM server of its own and the harness's helpers aimed at it; read its fields inside tests and hooks. */
export interface OwnDtm {
  readonly info: DtmInfo;
  /** The module configuration that points an app at this server (HTTP and gRPC). */
  config(): { serverUrl: string; grpcServer: string };
  /** `queryTrans` on this server. */
  queryTrans(gid: string): Promise<DtmQueryAnswer>;
  /** `triggerCron` on this server: moves this server's transactions only. */
  triggerCron(): Promise<void>;
  /** `waitForTransStatus` on this server. */
  waitForTransStatus(gid: string, status: TransStatus | TransStatus[], timeoutMs?: number): Promise<DtmQueryAnswer>;
  /** `cronUntilStatus` on this server. */
  cronUntilStatus(gid: string, status: TransStatus | TransStatus[], options?: { timeoutMs?: number; intervalMs?: number }): Promise<DtmQueryAnswer>;
  /** `dtmPost` to this server. */
  dtmPost<T = unknown>(path: string, body: unknown): Promise<DtmHttpAnswer<T>>;
}

/**
 * Registers hooks that start a DTM server of the calling block's own (`name`: its run directory and
 * log, unique in the test run) before its tests and stop it after them (it starts in about 0.15 s).
 * For tests that count what DTM calls (a handler run once, the money a branch without a barrier
 * moved, the spans of the calls): on the shared server another file's /resetCronTime can have DTM's
 * cron call a branch of an unfinished transaction again meanwhile (DTM calls at least once).
 */
export function useOwnDtm(name: string): OwnDtm {
  let own: { info: DtmInfo; process: ManagedProcess } | undefined;
  beforeAll(async () => {
    own = await startDtm(runDirFrom(harness().runDir), { name });
  });
  afterAll(async () => {
    await own?.process.stop();
  });
  const info = (): DtmInfo => {
    if (!own) throw new Error(`useOwnDtm(${name}): read inside a test or hook, after beforeAll`);
    return own.info;
  };
  return {
    get info() { return info(); },
    config: () => ({ serverUrl: info().serverUrl, grpcServer: info().grpcAddress }),
    queryTrans: (gid) => queryTrans(gid, info().serverUrl),
    triggerCron: () => triggerCron(info().serverUrl),
    waitForTransStatus: (gid, status, timeoutMs) => waitForTransStatus(gid, status, timeoutMs, info().serverUrl),
    cronUntilStatus: (gid, status, options) => cronUntilStatus(gid, status, { ...options, serverUrl: info().serverUrl }),
    dtmPost: (path, body) => dtmPost(path, body, info().serverUrl),
  };
}

/** How one of {@link raceOnFreshGid}'s two transactions ended: its outcome, or its error. */
export interface RaceOutcome {
  path: string;
  final?: FinalResult;
  error?: unknown;
}

/**
 * Two transactions of one step each (`/RaceA`, `/RaceB` of the recorder, each answering ONGOING
 * once, so that DTM retries them) started by `submitAndWait` on one fresh gid at the same time:
 * `build(gid, path)` gives each one's submitAndWait. Resolves the one whose branch DTM recorded
 * (`winner`) and the other (`loser`), once DTM finished the gid.
 */
export async function raceOnFreshGid(fx: DtmAppWithRecorder, build: (gid: string, path: string) => Promise<FinalResult>): Promise<{ gid: string; winner: RaceOutcome; loser: RaceOutcome }> {
  const gid = await fx.client.generateGid();
  fx.recorder.answer('/RaceA', 425, 200);
  fx.recorder.answer('/RaceB', 425, 200);
  const race = (path: string): Promise<RaceOutcome> =>
    build(gid, path).then(
      (final) => ({ path, final }),
      (error: unknown) => ({ path, error }),
    );
  const outcomes = await Promise.all([race('/RaceA'), race('/RaceB')]);
  const recorded = (await fx.client.waitForFinal(gid)).branches.find((b) => b.op === 'action')!.url;
  const winner = outcomes.find((o) => fx.target(o.path) === recorded)!;
  return { gid, winner, loser: outcomes.find((o) => o !== winner)! };
}

/**
 * `calls` (what a branch received, mapped to what a test compares) each once, in the order DTM first made them.
 * DTM calls a branch at least once: a cron pass that takes a transaction while its submit's pass still runs
 * (another test file's /resetCronTime on the shared DTM made it due) calls the branches it finds prepared
 * again, in the same order; a call missing, out of order, of another kind or answered otherwise still shows.
 * `keyOf` says which calls are the same (by default, equal as JSON).
 */
export function firstCalls<T>(calls: readonly T[], keyOf: (call: T) => string = (call) => JSON.stringify(call)): T[] {
  const seen = new Set<string>();
  return calls.filter((call) => {
    const key = keyOf(call);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** A transaction's branches as DTM recorded them, one `branchId op status` line each, in storage order. */
export function branchLines(record: { branches: BranchRecord[] }): string[] {
  return record.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`);
}

/**
 * Whether the harness's DTM answers a finished saga's or message's `steps` (and `payloads`): boltdb
 * only. DTM's SQL stores keep none; its Redis store writes them with the new transaction, then
 * clears them on the object it goes on saving (storage/redis MaySaveNewTrans), so they are gone at
 * its first status change. Tests read the branches (URL, op, payload) on every store.
 */
export function dtmKeepsSteps(): boolean {
  return harness().dtm.store === 'boltdb';
}

/** `branchId op url` of each branch DTM holds, in storage order: the targets DTM made of the steps, on every store. */
export function branchTargets(record: { branches: BranchRecord[] }): string[] {
  return record.branches.map((b) => `${b.branchId} ${b.op} ${b.url ?? ''}`);
}

export { sleep } from './services/process.js';

/**
 * What `run` settled to within `ms`: its value (or `fulfilled`, when given) when it resolved, its
 * error when it rejected, or `'still waiting'`. The timer is cleared either way: one left running
 * would keep the jest worker alive.
 */
export async function settledWithin(run: Promise<unknown>, ms: number, ...fulfilled: [unknown?]): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise((resolve) => (timer = setTimeout(() => resolve('still waiting'), ms)));
  try {
    return await Promise.race([run.then((value) => (fulfilled.length > 0 ? fulfilled[0] : value), (e: unknown) => e), waited]);
  } finally {
    clearTimeout(timer);
  }
}

/** A latch: `wait()` (what the held side awaits) resolves once `open()` is called; `reached` resolves once something waits. */
export function latch(): { open: () => void; reached: Promise<void>; wait: () => Promise<void> } {
  let open!: () => void;
  let entered!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (entered = resolve));
  return { open, reached, wait: () => (entered(), gate) };
}

/**
 * How many TCP connections this process holds open to `port` (established, its client side): the
 * sockets of its file descriptors, read from Linux's /proc (keep-alive sockets a pool unref'd and
 * gRPC's HTTP/2 sessions included, which Node's list of active handles leaves out).
 */
export function connectionsTo(port: number): number {
  return connectionsListTo(port).length;
}

/**
 * The connections {@link connectionsTo} counts, each as `local -> remote (inode)` with /proc's hex
 * addresses: for an assertion whose failure should show which sockets they were.
 */
export function connectionsListTo(port: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
    } catch {
      // closed meanwhile (the fd of readdir itself)
    }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const found: string[] = [];
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode: 01 is ESTABLISHED
      if (fields[2]?.endsWith(`:${hexPort}`) && fields[3] === '01' && inodes.has(fields[9]!)) found.push(`${fields[1]} -> ${fields[2]} (${fields[9]})`);
    }
  }
  return found;
}

/**
 * Another test file's /resetCronTime on the shared DTM server can have DTM resume a pending workflow
 * at any moment. `execute` (an execution of that workflow), run again (at most twice more) while it
 * answers pending: an execution joins the resume running in this process, which can have met its
 * step's ONGOING just before the test let the step succeed.
 */
export async function untilNotPending<T>(execute: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await execute();
    } catch (e) {
      if (!(e instanceof DtmWorkflowPendingError) || attempt === 3) throw e;
    }
  }
}
