// A real DTM server for an app's tests: found (DTM_BINARY, PATH, the cache) or built with Go, started
// on free ports with a boltdb store in a temp directory, stopped with SIGINT.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dump } from 'js-yaml';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { messageOf } from '../errors/text-of.js';

/** The DTM server version nestjs-dtm is tested against, and the one {@link startDtmServer} runs. */
export const DTM_SERVER_VERSION = 'v1.19.0';

/** The `docker run` line that starts the same DTM server (HTTP on 36789, gRPC on 36790), published on the host's loopback only. */
export const DTM_DOCKER_RUN = 'docker run --rm -p 127.0.0.1:36789:36789 -p 127.0.0.1:36790:36790 yedf/dtm:1.19.0';

/** No DTM server binary was found and none could be built; the message lists every way to get one. */
export class DtmServerNotFoundError extends DtmUsageError {
  /** Where the binary was looked for. */
  readonly searched: readonly string[];

  constructor(searched: string[], why: string, buildDisabled = false) {
    super(
      `No DTM server ${DTM_SERVER_VERSION} binary for the tests (${why}). Looked at: ${searched.join(', ')}. Any one of these fixes it:\n` +
        `  - set DTM_BINARY to a dtm ${DTM_SERVER_VERSION} binary (a release from https://github.com/dtm-labs/dtm/releases/tag/${DTM_SERVER_VERSION});\n` +
        `  - put that binary on PATH as "dtm";\n` +
        (buildDisabled
          ? `  - with Go 1.24 or newer, build it once into ${dtmCachedBinaryPath()} (a few minutes): node -e "require('nestjs-dtm/testing').buildDtmServer()", or drop build: false and the first start builds it;\n`
          : `  - install Go 1.24 or newer: the first start builds it into ${dtmCachedBinaryPath()} (a few minutes, once);\n`) +
        `  - or run DTM in Docker and point your tests at it instead of starting one: ${DTM_DOCKER_RUN}  (server_url http://127.0.0.1:36789/api/dtmsvr; branches on the host are reached from the container at host.docker.internal, add --add-host=host.docker.internal:host-gateway on Linux)`,
    );
    this.searched = searched;
  }
}

/** Where nestjs-dtm caches what it builds (`$XDG_CACHE_HOME/nestjs-dtm`, default `~/.cache/nestjs-dtm`). */
export function nestjsDtmCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'nestjs-dtm');
}

/** Where a DTM server binary built with Go is cached: `~/.cache/nestjs-dtm/dtm-v1.19.0/dtm`. */
export function dtmCachedBinaryPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(nestjsDtmCacheDir(env), `dtm-${DTM_SERVER_VERSION}`, 'dtm');
}

/** Where a DTM server binary was found, and through which of the ways. */
export interface DtmBinary {
  path: string;
  from: 'option' | 'DTM_BINARY' | 'PATH' | 'cache' | 'built';
}

/**
 * The DTM server binary, in this order: `DTM_BINARY` (which must then exist), `dtm` on PATH, the
 * cache ({@link dtmCachedBinaryPath}). Undefined when none is there.
 */
export function findDtmServerBinary(env: NodeJS.ProcessEnv = process.env): DtmBinary | undefined {
  if (env.DTM_BINARY) {
    if (!isExecutable(env.DTM_BINARY)) throw new DtmServerNotFoundError([`DTM_BINARY=${env.DTM_BINARY}`], 'DTM_BINARY names no executable file');
    return { path: env.DTM_BINARY, from: 'DTM_BINARY' };
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    if (isExecutable(join(dir, 'dtm'))) return { path: join(dir, 'dtm'), from: 'PATH' };
  }
  const cached = dtmCachedBinaryPath(env);
  return isExecutable(cached) ? { path: cached, from: 'cache' } : undefined;
}

/** The places {@link findDtmServerBinary} looks at, for messages. */
function searchedPlaces(env: NodeJS.ProcessEnv): string[] {
  return ['DTM_BINARY (unset)', '"dtm" on PATH', dtmCachedBinaryPath(env)];
}

/** The linker flags of DTM's release builds (so `/api/dtmsvr/version` answers the version). */
const LDFLAGS = `-s -w -X main.Version=${DTM_SERVER_VERSION}`;

/**
 * The Go module that pins the DTM server and its dependencies (shipped as dist/dtm-server; test/support/dtm-server in the repository),
 * looked for up to the package's root: the first package.json with a name (dist/cjs/package.json, which only sets the module type, is not one).
 */
function dtmServerModuleDir(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [join(dir, 'dist', 'dtm-server'), join(dir, 'test', 'support', 'dtm-server')]) {
      if (existsSync(join(candidate, 'go.sum'))) return candidate;
    }
    if (isPackageRoot(dir) || dirname(dir) === dir) return undefined;
    dir = dirname(dir);
  }
}

/** Whether `dir` holds a package.json naming a package (not one that only sets `type`, as dist/cjs's does). */
function isPackageRoot(dir: string): boolean {
  try {
    return typeof (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'string';
  } catch {
    return false;
  }
}

/** The stamp written next to a built binary: which module and flags built it (scripts/setup.sh writes and checks the same). */
export function dtmBuildStamp(moduleDir: string): string {
  const hash = createHash('sha256').update(readFileSync(join(moduleDir, 'go.mod'))).update(readFileSync(join(moduleDir, 'go.sum'))).digest('hex').slice(0, 16);
  return `${hash} ${LDFLAGS}`;
}

/**
 * Builds the DTM server with Go (1.24 or newer) into the cache and returns its path; throws
 * {@link DtmServerNotFoundError} when Go is missing or the build fails.
 */
export function buildDtmServer(env: NodeJS.ProcessEnv = process.env): string {
  const searched = searchedPlaces(env);
  const moduleDir = dtmServerModuleDir();
  if (!moduleDir) throw new DtmServerNotFoundError(searched, 'the package lacks its dtm-server Go module');
  let goVersion: string;
  try {
    goVersion = execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8', env }).trim();
  } catch {
    throw new DtmServerNotFoundError(searched, 'Go is not installed either, so it cannot be built');
  }
  const [major, minor] = goVersion.replace(/^go/, '').split('.').map(Number);
  if (major < 1 || (major === 1 && minor < 24)) throw new DtmServerNotFoundError(searched, `Go ${goVersion} is too old to build it (1.24 or newer)`);
  const binary = dtmCachedBinaryPath(env);
  mkdirSync(dirname(binary), { recursive: true });
  try {
    execFileSync('go', ['build', '-trimpath', '-ldflags', LDFLAGS, '-o', `${binary}.tmp`, 'github.com/dtm-labs/dtm'], {
      cwd: moduleDir,
      env: { ...env, CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n').slice(-10).join('\n');
    throw new DtmServerNotFoundError(searched, `building it with ${goVersion} failed:\n${stderr}\n`);
  }
  renameSync(`${binary}.tmp`, binary);
  writeFileSync(`${binary}.stamp`, dtmBuildStamp(moduleDir));
  return binary;
}

/** Options of {@link startDtmServer}. */
export interface StartDtmServerOptions {
  /** The server binary; default: {@link findDtmServerBinary}, else built with Go ({@link buildDtmServer}). */
  binary?: string;
  /** Build with Go when no binary is found (default true). */
  build?: boolean;
  /** Seconds DTM's cron sleeps when nothing is due (DTM's default 3; default here 1, so retries come soon). */
  cronIntervalSeconds?: number;
  /** More top-level keys of DTM's configuration file (e.g. `{ RequestTimeout: 5 }`). */
  extraConfig?: Record<string, unknown>;
  /** Milliseconds to wait for the server to answer, each request included (default 30 000). */
  startTimeoutMs?: number;
}

/** What each option of {@link StartDtmServerOptions} must be. */
const START_OPTIONS: Record<keyof StartDtmServerOptions, [check: (value: unknown) => boolean, expected: string]> = {
  binary: [(v) => typeof v === 'string' && v !== '', 'a path'],
  build: [(v) => typeof v === 'boolean', 'true or false'],
  cronIntervalSeconds: [(v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 3600, 'whole seconds from 1 to 3600'],
  extraConfig: [(v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'an object of DTM configuration keys'],
  startTimeoutMs: [(v) => typeof v === 'number' && v >= 1 && v <= 600_000, 'milliseconds from 1 to 600000'],
};

/** Every problem of `options` (unknown keys, values of the wrong kind), so that none is silently ignored. */
function startOptionsProblems(options: object): string[] {
  if (typeof options !== 'object' || Array.isArray(options)) return [`options must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const rule = START_OPTIONS[key as keyof StartDtmServerOptions];
    if (!rule) problems.push(`unknown option ${JSON.stringify(key)} (options: ${Object.keys(START_OPTIONS).join(', ')})`);
    else if (!rule[0](value)) problems.push(`${key} must be ${rule[1]}, got ${JSON.stringify(value) ?? typeof value}`);
  }
  return problems;
}

/** A DTM server started by {@link startDtmServer}. */
export interface DtmTestServer {
  /** `lynx.dtm.server_url`: `http://127.0.0.1:<port>/api/dtmsvr`. */
  serverUrl: string;
  /** `lynx.dtm.grpc_server`: `127.0.0.1:<port>`. */
  grpcAddress: string;
  /** The HTTP port's base URL, `http://127.0.0.1:<port>`. */
  httpUrl: string;
  /** What the server reports (`v1.19.0`). */
  version: string;
  /** The binary that runs, and where it was found. */
  binary: DtmBinary;
  /** The server's log (stdout and stderr), removed by `stop()`. */
  logFile: string;
  /** Stops the server (SIGINT, SIGKILL after 5 s) and removes its temp directory. */
  stop(): Promise<void>;
}

/** DTM's configuration file for a test server: free ports, a boltdb store in its working directory, a quick cron. */
export function dtmTestServerConfig(ports: { http: number; grpc: number }, options: Pick<StartDtmServerOptions, 'cronIntervalSeconds' | 'extraConfig'> & { store?: Record<string, unknown> } = {}): string {
  return dump({
    HttpPort: ports.http,
    GrpcPort: ports.grpc,
    TransCronInterval: options.cronIntervalSeconds ?? 1,
    // how soon a new topic subscription is seen by msg submits (DTM default 3 s)
    ConfigUpdateInterval: 1,
    LogLevel: 'info',
    Store: options.store ?? { Driver: 'boltdb' },
    ...options.extraConfig,
  });
}

/**
 * A free TCP port on 127.0.0.1, below the system's range of ephemeral ports where it can tell
 * (Linux): a port the system hands out to outgoing connections (and to `listen(0)`) can be taken by
 * one of them between this check and the caller's bind, and with many connections open (a test
 * suite's) it sometimes is. Elsewhere, or when no port is found there, one `listen(0)` gives. Never
 * a port it already gave in this process (until the caller binds one, it still looks free).
 */
export async function freeLocalPort(): Promise<number> {
  const below = ephemeralPortsStart();
  if (below !== undefined && below > 12_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = 10_000 + Math.floor(Math.random() * (below - 10_000));
      if (!handedOut.has(port) && (await canListen(port))) return handOut(port);
    }
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnce(0);
    if (!handedOut.has(port)) return handOut(port);
  }
  return listenOnce(0);
}

/**
 * The ports {@link freeLocalPort} gave in this process: a port given is not bound until its caller
 * binds it, so without this two calls in a row (a DTM server's HTTP and gRPC ports) could both get it.
 */
const handedOut = new Set<number>();

function handOut(port: number): number {
  handedOut.add(port);
  return port;
}

/** The first port of Linux's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`); undefined elsewhere. */
function ephemeralPortsStart(): number | undefined {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `port` on 127.0.0.1 can be listened on now. */
function canListen(port: number): Promise<boolean> {
  return listenOnce(port).then(
    () => true,
    () => false,
  );
}

/** Listens on `port` of 127.0.0.1 (0: any), closes, and gives the port it got. */
function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Waits until the DTM server at `httpUrl` answers `/api/ping`, then checks that `/api/dtmsvr/version`
 * is {@link DTM_SERVER_VERSION}; `exited` reports a server that ended meanwhile. Everything, each
 * request included, ends within `timeoutMs`: something on the port that accepts connections but
 * never answers is a `DtmUsageError` then, not a wait of minutes.
 */
export async function waitForDtmServer(httpUrl: string, timeoutMs: number, exited: () => string | undefined): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  /** Aborts a request when the time left runs out (at least 1 ms: AbortSignal.timeout wants a positive delay). */
  const timeLeft = () => AbortSignal.timeout(Math.max(1, deadline - Date.now()));
  const why = (err: unknown) => messageOf(err);
  let last = 'no answer yet';
  for (;;) {
    const ended = exited();
    if (ended !== undefined) throw new DtmUsageError(`the DTM server ended before answering (${ended})`);
    try {
      if ((await fetch(`${httpUrl}/api/ping`, { signal: timeLeft() })).ok) break;
    } catch (err) {
      last = why(err);
    }
    if (Date.now() >= deadline) throw new DtmUsageError(`the DTM server at ${httpUrl} did not answer within ${timeoutMs} ms (${last})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  let version: string;
  try {
    version = ((await (await fetch(`${httpUrl}/api/dtmsvr/version`, { signal: timeLeft() })).json()) as { version: string }).version;
  } catch (err) {
    throw new DtmUsageError(`the DTM server at ${httpUrl} answered /api/ping, but /api/dtmsvr/version gave no version within ${timeoutMs} ms in all (${why(err)})`);
  }
  if (version !== DTM_SERVER_VERSION) throw new DtmUsageError(`the DTM server reports ${version}, nestjs-dtm's tests want ${DTM_SERVER_VERSION}: point DTM_BINARY at a ${DTM_SERVER_VERSION} binary`);
  return version;
}

/**
 * Starts a real DTM server v1.19.0 for your tests, on free ports with a boltdb store in a temp
 * directory. Stop it with `stop()` (it is also killed when the process exits). Throws
 * {@link DtmServerNotFoundError} with every way to get a binary when there is none.
 */
export async function startDtmServer(options: StartDtmServerOptions = {}): Promise<DtmTestServer> {
  options ??= {};
  const problems = startOptionsProblems(options);
  if (problems.length > 0) throw new DtmUsageError(`startDtmServer(options): ${problems.join('; ')}`);
  let binary: DtmBinary | undefined = options.binary ? { path: options.binary, from: 'option' } : findDtmServerBinary();
  if (!binary) {
    if (options.build === false) throw new DtmServerNotFoundError(searchedPlaces(process.env), 'build: false', true);
    binary = { path: buildDtmServer(), from: 'built' };
  }
  const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-server-'));
  const [http, grpc] = [await freeLocalPort(), await freeLocalPort()];
  const configFile = join(dir, 'dtm.yml');
  writeFileSync(configFile, dtmTestServerConfig({ http, grpc }, options));
  const logFile = join(dir, 'dtm.log');
  const fd = openSync(logFile, 'a');
  // SIGINT to stop: a SIGTERM that arrives before DTM's main installed its handler is caught by a
  // dependency's (go-zero) graceful-shutdown handler, which re-raises it only 5.5 s later.
  const child = spawn(binary.path, ['-c', configFile], { cwd: dir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  // a server whose stop() is never called (a test hook that timed out while it started: the caller never got it) must not
  // keep the process alive: it is killed when the process exits (killOnExit)
  child.unref();
  let ended: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      ended = signal ?? `exit code ${code}`;
      resolve();
    });
    child.on('error', (err) => {
      ended = err.message;
      resolve();
    });
  });
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (ended === undefined) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const httpUrl = `http://127.0.0.1:${http}`;
  let version: string;
  try {
    version = await waitForDtmServer(httpUrl, options.startTimeoutMs ?? 30_000, () => ended);
  } catch (err) {
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-20).join('\n') : '';
    await stop();
    throw new DtmUsageError(`${(err as Error).message} (binary ${binary.path}, from ${binary.from})${log ? `\n--- the server's log ---\n${log}` : ''}`, { cause: err });
  }
  return { serverUrl: `${httpUrl}/api/dtmsvr`, grpcAddress: `127.0.0.1:${grpc}`, httpUrl, version, binary, logFile, stop };
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
