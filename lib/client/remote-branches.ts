// The caller's side of branches by name across services: the manifests of the services configured
// under lynx.dtm.services, fetched on first use (or at start-up for the module's contracts), kept,
// refetched at the next use once `refresh` seconds old or after a call to one of their targets
// failed as if it had moved; a service that does not answer keeps being used from what was fetched
// before. Every address comes from the app's own configuration and the manifest of a configured
// service, never from a request the app serves.
import { Logger } from '@nestjs/common';
import type { DtmConfig, DtmServiceConfig } from '../config/dtm-config.types.js';
import type { RemoteBranch, RemoteBranchKind } from '../contracts/branch-contract.js';
import { BRANCH_NAME_RULE, MANIFEST_FORMAT, MANIFEST_GRPC_METHOD, MANIFEST_PATH, REQUIRED_OPS, type ManifestBranch } from '../contracts/branch-manifest.js';
import { MESSAGES } from '../dtm.messages.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { DtmRemoteBranchError, type DtmRemoteBranchProblem } from '../errors/dtm-remote-branch.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { escapeControls, redactText, redactUrl, shownCallerValue } from '../redact.js';
import { parseAddress } from '../transport/branch-target.js';
import { loadGrpc } from '../transport/grpc/grpc-runtime.js';
import { messageOf, textOf } from '../errors/text-of.js';

/** gRPC NOT_FOUND, UNIMPLEMENTED: the method is not served there. */
const NOT_SERVED_CODES = new Set([5, 12]);
/** gRPC RESOURCE_EXHAUSTED, with grpc-js's words for an answer over `grpc.max_receive_message_length`. */
const RESOURCE_EXHAUSTED = 8;
const TOO_LARGE = 'Received message larger than max';

/** A service's manifest as the caller keeps it. */
interface Fetched {
  /** By name: one branch per kind (a service may have a saga step and a TCC branch of one name). */
  branches: Map<string, ManifestBranch[]>;
  /** When it was fetched (ms). */
  at: number;
  /** A call to one of its targets failed as if the service had moved: refetch at the next use. */
  stale: boolean;
}

/** The targets of a remote branch for a transaction, by op (`action`, `compensate`, `try`, ...). */
export type RemoteTargets = Record<string, string>;

/** Resolves branches of other services by name, from their manifests. */
export class RemoteBranchDirectory {
  private readonly logger = new Logger('DtmBranch');
  private readonly fetched = new Map<string, Fetched>();
  private readonly fetching = new Map<string, Promise<Fetched>>();

  constructor(private readonly config: DtmConfig) {}

  /**
   * The targets of `ref` for a `kind` step or branch of a transaction on `protocol`: gRPC targets
   * when the branch has them and the transaction is on gRPC, else HTTP ones. Throws
   * {@link DtmRemoteBranchError} for an unknown service or branch, a kind or transport mismatch,
   * and `DtmUnavailableError` when the manifest was never fetched and cannot be.
   */
  async resolve(ref: RemoteBranch, kind: RemoteBranchKind, protocol: DtmProtocol): Promise<RemoteTargets> {
    const branch = await this.branch(ref, kind);
    if (branch.kind !== kind) throw error(ref, 'kind', MESSAGES.remoteWrongKind(ref.service, ref.branch, branch.kind, kind));
    const targets: RemoteTargets = {};
    for (const [op, where] of Object.entries(branch.ops)) {
      const target = protocol === 'grpc' ? (where?.grpc ?? where?.http) : where?.http;
      if (target) targets[op] = target;
      // an op published without any target: never dropped (a compensation would be lost without a word)
      else if (!where?.grpc) throw error(ref, 'manifest', MESSAGES.remoteManifestMissingOp(ref.service, ref.branch, op));
      else if (REQUIRED_OPS[kind].includes(op) || op === 'compensate') throw error(ref, 'transport', MESSAGES.remoteWrongTransport(ref.service, ref.branch));
    }
    for (const op of REQUIRED_OPS[kind]) if (!targets[op]) throw error(ref, 'manifest', MESSAGES.remoteManifestMissingOp(ref.service, ref.branch, op));
    return targets;
  }

  /**
   * A call to a target of `service` failed: when the failure says the target is gone (unreachable,
   * HTTP 404, gRPC UNIMPLEMENTED / NOT_FOUND), its manifest is refetched at the next use.
   */
  failed(service: string, err: unknown): void {
    const entry = this.fetched.get(service);
    if (!entry) return;
    const status = (err as { status?: number; protocol?: DtmProtocol }).status;
    const protocol = (err as { protocol?: DtmProtocol }).protocol;
    const moved = err instanceof DtmUnavailableError || (err instanceof DtmServerError && (protocol === 'grpc' ? NOT_SERVED_CODES.has(status ?? -1) : status === 404));
    if (moved) entry.stale = true;
  }

  /**
   * The start-up check of the module's contracts: every entry must name a configured service that
   * has a branch of that name and kind. A service that does not answer is checked on first use
   * instead (a warning), so that a participant briefly down does not stop its callers. The services
   * are asked at once (a start-up waits for the slowest, at most `timeout`, not for each in turn);
   * the problems are listed in the order of `refs`.
   */
  async check(refs: readonly RemoteBranch[]): Promise<void> {
    const found: DtmRemoteBranchError['problems'][number][][] = refs.map(() => []);
    const byService = new Map<string, number[]>();
    refs.forEach((ref, i) => {
      const indexes = byService.get(ref.service);
      if (indexes) indexes.push(i);
      else byService.set(ref.service, [i]);
    });
    const checkService = async (indexes: number[]): Promise<void> => {
      // one service's entries in turn: the first fetches its manifest, the others read the kept one
      for (const i of indexes) {
        const ref = refs[i];
        try {
          const branch = await this.branch(ref, ref.kind);
          if (ref.kind && branch.kind !== ref.kind) found[i].push({ service: ref.service, branch: ref.branch, problem: 'kind', message: MESSAGES.remoteWrongKind(ref.service, ref.branch, branch.kind, ref.kind) });
        } catch (err) {
          if (err instanceof DtmRemoteBranchError) found[i].push(...err.problems);
          else {
            this.logger.warn(MESSAGES.remoteCheckDeferred(ref.service, redactText(messageOf(err))));
            return; // its other entries are checked on first use too
          }
        }
      }
    };
    await Promise.all([...byService.values()].map(checkService));
    const problems = found.flat();
    if (problems.length > 0) throw new DtmRemoteBranchError(problems);
  }

  /** The branch `ref` names: the one of `kind` when the service has branches of several kinds by that name. */
  private async branch(ref: RemoteBranch, kind: RemoteBranchKind | undefined): Promise<ManifestBranch> {
    const service = this.config.services[ref.service];
    if (!service || !Object.hasOwn(this.config.services, ref.service)) {
      throw error(ref, 'unknown-service', MESSAGES.remoteUnknownService(ref.service, ref.branch, Object.keys(this.config.services)));
    }
    const manifest = await this.manifest(ref.service, service);
    const named = manifest.branches.get(ref.branch);
    if (!named) throw error(ref, 'unknown-branch', MESSAGES.remoteUnknownBranch(ref.service, ref.branch, [...manifest.branches.values()].flat().map((b) => escapeControls(`${b.name} (${b.kind})`)).sort()));
    return named.find((b) => b.kind === kind) ?? named[0];
  }

  /** The manifest of `name`: the kept one while fresh, else fetched (one fetch at a time per service); a failed refetch keeps the old one. */
  private async manifest(name: string, service: DtmServiceConfig): Promise<Fetched> {
    const kept = this.fetched.get(name);
    if (kept && !kept.stale && Date.now() - kept.at < service.refresh * 1000) return kept;
    let pending = this.fetching.get(name);
    if (!pending) {
      pending = this.fetch(name, service).finally(() => this.fetching.delete(name));
      this.fetching.set(name, pending);
    }
    try {
      const fresh = await pending;
      this.fetched.set(name, fresh);
      return fresh;
    } catch (err) {
      // any failed refetch, a 404 or an answer that is no manifest too (an ingress or a maintenance page during a deploy): the kept one worked
      if (!kept) throw err;
      this.logger.warn(MESSAGES.remoteManifestStale(name, redactText(messageOf(err))));
      // tried again at the next refresh (or after another call to its targets failed as if it had
      // moved), not on every use while the service is down: stale no more, as a fresh one
      kept.at = Date.now();
      kept.stale = false;
      return kept;
    }
  }

  private async fetch(name: string, service: DtmServiceConfig): Promise<Fetched> {
    const endpoint = service.url ? `${service.url}${MANIFEST_PATH}` : `${service.grpc}${MANIFEST_GRPC_METHOD}`;
    const shown = redactUrl(endpoint);
    const text = service.url ? await this.fetchHttp(name, endpoint, shown) : await this.fetchGrpc(name, service.grpc!, shown);
    return { branches: readManifest(name, shown, text), at: Date.now(), stale: false };
  }

  /**
   * GET the manifest: at most `max_answer_bytes` read (a larger one is refused as soon as it passes
   * the bound, from its Content-Length when it gives one), the whole answer within `timeout`; a
   * connection that breaks or stalls while the body arrives is a `DtmUnavailableError` as one
   * never made.
   */
  private async fetchHttp(name: string, endpoint: string, shown: string): Promise<string> {
    const timeout = this.config.timeout;
    const signal = AbortSignal.timeout(Math.ceil(timeout * 1000));
    const unreachable = (err: unknown) => {
      // fetch's own text may repeat the URL whole (a TypeError for one with credentials): redacted
      const why = signal.aborted ? `no complete answer within ${timeout} s` : redactText(err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : textOf(err));
      return new DtmUnavailableError(MESSAGES.remoteManifestUnreachable(name, shown, why), { endpoint: shown, protocol: 'http' });
    };
    let answer: Response;
    try {
      // a redirect is not followed (the manifest names where the app's calls go): answered as the status it is
      answer = await fetch(endpoint, { redirect: 'manual', signal });
    } catch (err) {
      throw unreachable(err);
    }
    const max = this.config.maxAnswerBytes;
    const tooLarge = () => error({ service: name, branch: '' }, 'manifest', MESSAGES.remoteManifestBad(name, shown, `over ${max} bytes`));
    const refuse = async (err: Error): Promise<never> => {
      await answer.body?.cancel().catch(() => undefined);
      throw err;
    };
    if (answer.status === 404) return refuse(error({ service: name, branch: '' }, 'manifest', MESSAGES.remoteManifestNotPublished(name, shown)));
    if (answer.status !== 200) {
      const why = answer.status >= 300 && answer.status < 400 ? `HTTP ${answer.status}, a redirect, not followed` : `HTTP ${answer.status}`;
      return refuse(new DtmUnavailableError(MESSAGES.remoteManifestUnreachable(name, shown, why), { endpoint: shown, protocol: 'http', status: answer.status }));
    }
    if (Number(answer.headers.get('content-length')) > max) return refuse(tooLarge());
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      // leaving the loop (the bound passed) cancels the body: the rest is never read
      for await (const chunk of answer.body ?? []) {
        size += chunk.byteLength;
        if (size > max) throw tooLarge();
        chunks.push(chunk);
      }
    } catch (err) {
      throw err instanceof DtmRemoteBranchError ? err : unreachable(err);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private fetchGrpc(name: string, address: string, shown: string): Promise<string> {
    const { grpc } = loadGrpc();
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.enable_http_proxy': 0, 'grpc.max_receive_message_length': this.config.maxAnswerBytes });
    const identity = (b: Buffer) => b;
    return new Promise<string>((resolve, reject) => {
      client.makeUnaryRequest(MANIFEST_GRPC_METHOD, identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + this.config.timeout * 1000 }, (err, reply) => {
        client.close();
        if (!err) return resolve(stringField1(reply ?? Buffer.alloc(0)));
        if (NOT_SERVED_CODES.has(err.code)) return reject(error({ service: name, branch: '' }, 'manifest', MESSAGES.remoteManifestNotPublished(name, shown)));
        if (err.code === RESOURCE_EXHAUSTED && err.details?.startsWith(TOO_LARGE)) return reject(error({ service: name, branch: '' }, 'manifest', MESSAGES.remoteManifestBad(name, shown, `over ${this.config.maxAnswerBytes} bytes`)));
        reject(new DtmUnavailableError(MESSAGES.remoteManifestUnreachable(name, shown, redactText(err.details || err.message)), { endpoint: shown, protocol: 'grpc', status: err.code }));
      });
    });
  }
}

function error(ref: Pick<RemoteBranch, 'service' | 'branch'>, problem: DtmRemoteBranchProblem, message: string): DtmRemoteBranchError {
  return new DtmRemoteBranchError([{ service: ref.service, ...(ref.branch ? { branch: ref.branch } : {}), problem, message }]);
}

/** The branches of a manifest's JSON, checked: every target must be an http(s) URL or a gRPC target. */
function readManifest(service: string, endpoint: string, text: string): Map<string, ManifestBranch[]> {
  const bad = (why: string) => error({ service, branch: '' }, 'manifest', MESSAGES.remoteManifestBad(service, endpoint, escapeControls(why)));
  let manifest: { format?: unknown; branches?: unknown };
  try {
    manifest = JSON.parse(text) as typeof manifest;
  } catch {
    throw bad('not JSON');
  }
  if (manifest?.format !== MANIFEST_FORMAT || !Array.isArray(manifest.branches)) throw bad(`not a ${MANIFEST_FORMAT} manifest`);
  const branches = new Map<string, ManifestBranch[]>();
  for (const raw of manifest.branches as ManifestBranch[]) {
    // what a manifest holds reaches errors and log lines: a name, kind or transport that is none is refused, shown as JSON
    if (typeof raw?.name !== 'string' || typeof raw.kind !== 'string' || !Object.hasOwn(REQUIRED_OPS, raw.kind) || typeof raw.ops !== 'object' || raw.ops === null) throw bad('a branch without name, kind or ops');
    if (!BRANCH_NAME_RULE.test(raw.name)) throw bad(`a branch name that is not one: ${shownCallerValue(raw.name)}`);
    for (const where of Object.values(raw.ops)) {
      for (const [transport, target] of Object.entries(where ?? {})) {
        const parsed = typeof target === 'string' ? safeParse(target) : undefined;
        if (parsed !== transport) throw bad(`branch ${JSON.stringify(raw.name)} has a ${shownCallerValue(transport)} target that is not one`);
      }
    }
    const named = branches.get(raw.name) ?? [];
    named.push({ name: raw.name, kind: raw.kind, ops: raw.ops });
    branches.set(raw.name, named);
  }
  return branches;
}

function safeParse(target: string): string | undefined {
  try {
    return parseAddress(target).kind;
  } catch {
    return undefined;
  }
}

/** Field 1 (a string) of a protobuf message: what `nestjs_dtm.BranchManifest` carries. */
function stringField1(bytes: Buffer): string {
  let at = 0;
  while (at < bytes.length) {
    const tag = bytes[at++];
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++];
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80 || at >= bytes.length) break;
    }
    if (tag === 0x0a) return bytes.subarray(at, at + length).toString('utf8');
    if ((tag & 7) !== 2) break; // BranchManifest has only field 1
    at += length;
  }
  return '';
}
