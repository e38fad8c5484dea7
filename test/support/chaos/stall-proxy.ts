// A TCP proxy in front of a database that can stall: while stalled it moves no byte in either
// direction and opens no connection to the database, then delivers everything it held, in order.
// To the app behind it, the database stops answering for a while (a stalled disk, a long GC pause,
// a network partition that heals): its statements wait, and the locks its open transactions hold
// on the server stay held. The database itself keeps serving everyone else, so a test can stall
// one app's database without pausing a server other tests share.
import net from 'node:net';

/** A running stall proxy. */
export interface StallProxy {
  /** The database URL `url` rewritten to go through the proxy (same user, password, database). */
  readonly url: string;
  /** Whether it is stalled now. */
  readonly stalled: boolean;
  /** Bytes that arrived (from either side) while it was stalled, and were held. */
  readonly heldBytes: number;
  /** Connections a stall held: bytes of theirs held, or opened while stalled. */
  readonly heldConnections: number;
  /** Stops moving bytes until {@link resume}. */
  stall(): void;
  /**
   * Stalls (as {@link stall}) as soon as a client sends bytes holding every one of `markers` (one
   * command, e.g. a Redis script's text and a gid), those bytes held; until then bytes move. With
   * `cutOthers`, every other connection is cut then (as {@link cut}): a client's next try takes a new
   * connection, which the stall holds, not another idle one. Armed once: {@link resume} disarms it.
   */
  stallWhenSent(markers: string[], options?: { cutOthers?: boolean }): void;
  /** Delivers what it held and moves bytes again. */
  resume(): void;
  /** Cuts every open connection now (a reset on both sides: what is in flight is lost); returns how many. New connections are taken as before. */
  cut(): number;
  close(): Promise<void>;
}

/** One proxied connection: both sockets, and the bytes held for the other side while stalled. */
interface Pair {
  client: net.Socket;
  server?: net.Socket;
  /** Bytes from the client not yet written to the server (held while stalled or connecting). */
  toServer: Buffer[];
  /** Bytes from the server not yet written to the client (held while stalled). */
  toClient: Buffer[];
  /** The end of what the client sent, while {@link StallProxy.stallWhenSent} is armed (a marker split across chunks). */
  sentTail: string;
}

/** How many of the last bytes a client sent are kept to find a marker split across chunks. */
const SENT_TAIL = 4096;

/** Starts a stall proxy on 127.0.0.1 for the database at `url` (its host and port). */
export async function startStallProxy(url: string): Promise<StallProxy> {
  const target = new URL(url);
  const pairs = new Set<Pair>();
  let stalled = false;
  let stallMarkers: string[] | undefined;
  let cutOthers = false;
  let heldBytes = 0;
  const held = new WeakSet<Pair>();
  let heldConnections = 0;
  const caught = (pair: Pair): void => {
    if (held.has(pair)) return;
    held.add(pair);
    heldConnections++;
  };
  const hold = (pair: Pair, queue: Buffer[], chunk: Buffer): void => {
    if (stalled) {
      heldBytes += chunk.length;
      caught(pair);
    }
    queue.push(chunk);
  };
  const flush = (pair: Pair): void => {
    if (stalled) return;
    if (pair.server && !pair.server.connecting) for (const chunk of pair.toServer.splice(0)) pair.server.write(chunk);
    for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
  };
  const connect = (pair: Pair): void => {
    const server = net.connect(Number(target.port), target.hostname);
    pair.server = server;
    server.on('connect', () => flush(pair));
    server.on('data', (chunk: Buffer) => {
      hold(pair, pair.toClient, chunk);
      flush(pair);
    });
    const end = () => {
      pairs.delete(pair);
      pair.client.destroy();
      server.destroy();
    };
    server.on('error', end);
    server.on('close', end);
  };
  /** Cuts the open connections `which` picks (a reset on both sides); returns how many. */
  const cutPairs = (which: (pair: Pair) => boolean): number => {
    const open = [...pairs].filter(which);
    for (const pair of open) {
      pairs.delete(pair);
      pair.client.resetAndDestroy();
      if (pair.server && !pair.server.destroyed) pair.server.resetAndDestroy();
    }
    return open.length;
  };
  const proxy = net.createServer((client) => {
    const pair: Pair = { client, toServer: [], toClient: [], sentTail: '' };
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (stallMarkers && !stalled) {
        const sent = pair.sentTail + chunk.toString('latin1');
        if (stallMarkers.every((marker) => sent.includes(marker))) {
          stallMarkers = undefined;
          stalled = true;
          if (cutOthers) cutPairs((other) => other !== pair);
        }
        pair.sentTail = sent.slice(-SENT_TAIL);
      }
      hold(pair, pair.toServer, chunk);
      flush(pair);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      pair.server?.destroy();
    };
    client.on('error', end);
    client.on('close', end);
    if (stalled) caught(pair);
    else connect(pair);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const through = new URL(url);
  through.hostname = '127.0.0.1';
  through.port = String((proxy.address() as net.AddressInfo).port);
  return {
    url: through.toString(),
    get stalled() {
      return stalled;
    },
    get heldBytes() {
      return heldBytes;
    },
    get heldConnections() {
      return heldConnections;
    },
    stall: () => {
      stalled = true;
    },
    stallWhenSent: (markers: string[], options: { cutOthers?: boolean } = {}) => {
      for (const pair of pairs) pair.sentTail = '';
      stallMarkers = markers;
      cutOthers = options.cutOthers ?? false;
    },
    resume: () => {
      stalled = false;
      stallMarkers = undefined;
      for (const pair of pairs) {
        if (!pair.server) connect(pair);
        else flush(pair);
      }
    },
    cut: () => cutPairs(() => true),
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.server?.destroy();
      }
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
