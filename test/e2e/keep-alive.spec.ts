// The module keeps HTTP connections alive between calls (to DTM, and to the TCC / XA / workflow
// branches it calls itself). A peer may close an idle connection just as the module sends the next
// call on it (its keep-alive timeout passes at that moment): the call fails with ECONNRESET before
// any answer, although the peer never read it. Such a call is sent once more on a new connection;
// a reset on a new connection, or after an answer began, is an error as before.
// DTM's own HTTP client keeps its connections to an app's branches too, idle longer than Node's
// server does by default (5 s), and does not send a call reset that way again before its retry: the
// last describe pins both (why the Quick start sets keepAliveTimeout).
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DtmUnavailableError } from 'nestjs-dtm';
import { startDtmApp } from '../support/dtm-app.js';
import { cronUntilStatus, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startDtm, type DtmInfo } from '../support/services/dtm.js';
import { runDirFrom, sleep, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { mayHaveReachedDtm } from '../../lib/transport/dtm-transient.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

/** One request a {@link closingPeer} received: which connection (numbered from 1), its place on it, what it did. */
interface Seen {
  connection: number;
  nth: number;
  path: string;
  connectionHeader: string | undefined;
  outcome: 'answered' | 'closed' | 'cut mid-answer' | 'left unanswered';
}

/** A running {@link closingPeer}. */
interface ClosingPeer {
  url: string;
  seen: Seen[];
  /** Takes no new connection from now on (as a server that crashed). */
  stopListening(): void;
  close(): Promise<void>;
}

type Behaviour = (at: { connection: number; nth: number }, req: http.IncomingMessage, res: http.ServerResponse, peer: ClosingPeer) => Seen['outcome'];

/**
 * A local HTTP server that numbers its connections and the requests on each, and lets `behaviour`
 * answer, reset the connection (RST, as a peer closing it at that instant does) or cut an answer.
 */
async function closingPeer(behaviour: Behaviour): Promise<ClosingPeer> {
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  const counts = new WeakMap<net.Socket, { connection: number; requests: number }>();
  let connections = 0;
  const server = http.createServer((req, res) => {
    const count = counts.get(req.socket)!;
    count.requests += 1;
    const nth = count.requests;
    req.resume();
    req.on('end', () => seen.push({ connection: count.connection, nth, path: req.url ?? '', connectionHeader: req.headers.connection, outcome: behaviour({ connection: count.connection, nth }, req, res, peer) }));
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket) => {
    counts.set(socket, { connection: (connections += 1), requests: 0 });
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const peer: ClosingPeer = {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    stopListening: () => {
      server.close();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
  return peer;
}

/**
 * Two `generateGid()` calls of a module whose DTM is a {@link closingPeer} with `behaviour` (the
 * first opens the connection the second reuses), `timeout` seconds each: what each gave (a gid, or
 * the error), how long the second took, and what the peer saw.
 */
async function twoGids(behaviour: Behaviour, timeout = 2): Promise<{ first: unknown; second: unknown; secondMs: number; seen: [number, number, Seen['outcome']][] }> {
  const dtm = await closingPeer(behaviour);
  const app = await startDtmApp({ config: { serverUrl: `${dtm.url}/api/dtmsvr`, timeout } });
  try {
    const first = await app.client.generateGid().catch((e: unknown) => e);
    const started = Date.now();
    const second = await app.client.generateGid().catch((e: unknown) => e);
    return { first, second, secondMs: Date.now() - started, seen: dtm.seen.map((s) => [s.connection, s.nth, s.outcome]) };
  } finally {
    await app.close();
    await dtm.close();
  }
}

/** Answers 200 with `body` (JSON). */
function answer(res: http.ServerResponse, body: unknown): 'answered' {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  return 'answered';
}

/** Resets the request's connection without a byte of answer. */
function reset(req: http.IncomingMessage): 'closed' {
  req.socket.resetAndDestroy();
  return 'closed';
}

let recorder: Recorder;
beforeAll(async () => {
  recorder = await startRecorder();
});
afterAll(async () => {
  await recorder?.close();
});

describe('a call on a pooled connection the peer closed', () => {
  it('a TCC Try the module calls itself is sent again on a new connection, and the transaction succeeds', async () => {
    // every connection's second request is reset: the first Try opens a connection, the second reuses it
    const tryPeer = await closingPeer(({ nth }, req, res) => (nth === 2 ? reset(req) : answer(res, { tried: true })));
    const app = await startDtmApp();
    try {
      const gids: string[] = [];
      for (let i = 0; i < 2; i += 1) {
        const gid = await app.client.generateGid();
        gids.push(gid);
        const [answered] = await app.client.tccGlobalTransaction(gid, async (tcc) => [await tcc.callBranch({ i }, `${tryPeer.url}/Try`, recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'))]);
        expect(answered.body).toEqual({ tried: true });
      }
      expect(tryPeer.seen).toEqual([
        { connection: 1, nth: 1, path: expect.stringMatching(/^\/Try\?/), connectionHeader: 'keep-alive', outcome: 'answered' },
        { connection: 1, nth: 2, path: expect.stringContaining(`gid=${gids[1]}`), connectionHeader: 'keep-alive', outcome: 'closed' },
        { connection: 2, nth: 1, path: expect.stringContaining(`gid=${gids[1]}`), connectionHeader: 'close', outcome: 'answered' },
      ]);
      for (const gid of gids) {
        // DTM confirms after its answer to the submit: wait for its end, then read its record
        expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
        const { transaction, branches } = await queryTrans(gid);
        expect(transaction?.status).toBe('succeed');
        expect(branches.map((b) => `${b.op}:${b.status}`)).toEqual(['cancel:prepared', 'confirm:succeed']);
        await recorder.waitForCalls('/Confirm', 1, { gid });
        expect(recorder.callsTo('/Cancel', gid)).toEqual([]);
      }
    } finally {
      await app.close();
      await tryPeer.close();
    }
  });

  it.each([
    ['reset (RST: read ECONNRESET)', (req: http.IncomingMessage) => req.socket.resetAndDestroy()],
    ['closed (FIN: socket hang up)', (req: http.IncomingMessage) => req.socket.destroy()],
  ])('a call to DTM on a connection the peer %s is sent again on a new connection', async (_how, close) => {
    let gids = 0;
    const connectionHeaders: (string | undefined)[] = [];
    const run = await twoGids(({ nth }, req, res) => {
      connectionHeaders.push(req.headers.connection);
      if (nth === 1) return answer(res, { gid: `keepalive-gid-${(gids += 1)}` });
      close(req);
      return 'closed';
    });
    expect([run.first, run.second]).toEqual(['keepalive-gid-1', 'keepalive-gid-2']);
    expect(run.seen).toEqual([
      [1, 1, 'answered'],
      [1, 2, 'closed'],
      [2, 1, 'answered'],
    ]);
    expect(connectionHeaders).toEqual(['keep-alive', 'keep-alive', 'close']);
  });

  it('the retry gets what is left of the deadline, not a new one', async () => {
    // the first connection's second request is reset after 1100 ms; the second connection is never answered.
    // A 2 s timeout: the call ends at about 2000 ms, a retry given a new deadline at 3100 ms at the
    // earliest; the bound between them leaves 900 ms for a loaded machine, and the reset 900 ms to
    // come before the deadline
    const run = await twoGids(({ connection, nth }, req, res) => {
      if (connection > 1) return 'left unanswered';
      if (nth === 1) return answer(res, { gid: 'keepalive-gid-1' });
      setTimeout(() => req.socket.resetAndDestroy(), 1100);
      return 'closed';
    }, 2);
    expect(run.second).toBeInstanceOf(DtmUnavailableError);
    expect((run.second as Error).message).toMatch(/^no complete answer from http:\/\/127\.0\.0\.1:\d+\/api\/dtmsvr\/newGid within the timeout \(2 s\)/);
    expect(run.secondMs).toBeGreaterThanOrEqual(1950);
    expect(run.secondMs).toBeLessThan(2900);
    expect(run.seen).toEqual([
      [1, 1, 'answered'],
      [1, 2, 'closed'],
      [2, 1, 'left unanswered'],
    ]);
  });
});

describe('resets that are no keep-alive race are not sent again', () => {
  const firstAnswered = (res: http.ServerResponse) => answer(res, { gid: 'keepalive-gid-1' });
  it.each<[string, Behaviour, [number, number, Seen['outcome']][]]>([
    // both calls on a new connection (the first one's is gone): each sent once
    ['a reset on a new connection', (_at, req) => reset(req), [[1, 1, 'closed'], [2, 1, 'closed']]],
    [
      'a reset after the answer began, on a pooled connection',
      ({ nth }, req, res) => {
        if (nth === 1) return firstAnswered(res);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"gid":');
        setTimeout(() => req.socket.resetAndDestroy(), 50);
        return 'cut mid-answer';
      },
      [[1, 1, 'answered'], [1, 2, 'cut mid-answer']],
    ],
    ['the retry reset too (no loop)', ({ connection, nth }, req, res) => (connection === 1 && nth === 1 ? firstAnswered(res) : reset(req)), [[1, 1, 'answered'], [1, 2, 'closed'], [2, 1, 'closed']]],
    [
      // as a server that crashed after reading the request: the retry gets no connection, and the error is still the reset
      'the retry refused (the peer gone)',
      ({ nth }, req, res, peer) => {
        if (nth === 1) return firstAnswered(res);
        peer.stopListening();
        return reset(req);
      },
      [[1, 1, 'answered'], [1, 2, 'closed']],
    ],
  ])('%s: DtmUnavailableError that may have reached DTM, no more requests', async (_case, behaviour, seen) => {
    const run = await twoGids(behaviour);
    const error = run.second;
    expect(error).toBeInstanceOf(DtmUnavailableError);
    // never "nothing was sent": the request may have reached DTM, so a wait asks DTM what it holds
    expect(mayHaveReachedDtm(error)).toBe(true);
    if (seen.at(-1)![2] === 'closed') {
      expect((error as Error).message).toMatch(/\(ECONNRESET: the connection was reset, by the DTM server .*the request may or may not have reached the DTM server\)/);
    }
    expect(run.seen).toEqual(seen);
  });
});

describe("DTM's own calls of an app's branches (docs/errors-and-troubleshooting.md: keep idle connections longer than DTM)", () => {
  let dtm: { info: DtmInfo; process: ManagedProcess } | undefined;
  beforeAll(async () => {
    // a DTM of this test's own: the shared one's cron is moved by other files, and this test reads when DTM calls again
    dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-keep-alive' });
  });
  afterAll(async () => {
    await dtm?.process.stop();
  });

  it("DTM sends its next call, 6 s later, on the same connection (it keeps one idle longer than Node's 5 s); a call reset on it as the app closes it is made again only at DTM's retry", async () => {
    // the app keeps connections 60 s (closingPeer); the first connection's second request is reset, as Node
    // resets a request that arrives on a connection its keepAliveTimeout has just closed
    const branch = await closingPeer(({ connection, nth }, req, res) => (connection === 1 && nth === 2 ? reset(req) : answer(res, {})));
    const app = await startDtmApp({ config: { serverUrl: dtm!.info.serverUrl, grpcServer: dtm!.info.grpcAddress } });
    try {
      const first = await app.client.generateGid();
      await app.client.newMsg(first).add(`${branch.url}/In`, { n: 1 }).submit();
      expect((await waitForTransStatus(first, 'succeed', 10_000, dtm!.info.serverUrl)).transaction?.status).toBe('succeed');
      await sleep(6000);
      const second = await app.client.generateGid();
      await app.client.newMsg(second).add(`${branch.url}/In`, { n: 2 }).submit();
      await waitUntil('the second call reset', async () => branch.seen.length === 2, { timeoutMs: 10_000 });
      // DTM does not send the POST again at once: 2 s later it holds the message submitted, its branch not called again
      await sleep(2000);
      const held = await queryTrans(second, dtm!.info.serverUrl);
      expect([held.transaction?.status, held.branches.map((b) => `${b.op}:${b.status}`)]).toEqual(['submitted', ['action:prepared']]);
      expect(branch.seen.map((s) => [s.connection, s.nth, s.outcome])).toEqual([
        [1, 1, 'answered'],
        [1, 2, 'closed'],
      ]);
      // its retry (made due now, instead of after its retry interval) calls on a new connection
      expect((await cronUntilStatus(second, 'succeed', { serverUrl: dtm!.info.serverUrl, timeoutMs: 15_000 })).transaction?.status).toBe('succeed');
      expect(branch.seen.map((s) => [s.connection, s.nth, s.outcome, s.path.includes(`gid=${second}`)])).toEqual([
        [1, 1, 'answered', false],
        [1, 2, 'closed', true],
        [2, 1, 'answered', true],
      ]);
    } finally {
      await app.close();
      await branch.close();
    }
  });
});
