import { Inject, Injectable, Logger, Optional, type OnApplicationBootstrap } from '@nestjs/common';
import type { BarrierConnection } from '../barrier/barrier.types.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { isLoopbackHost, urlHostname } from '../config/dtm-config.keys.js';
import { DTM_BARRIER_CONNECTIONS, DTM_CONFIG, DTM_XA_CONNECTIONS } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { DtmBranchRegistryError } from '../errors/dtm-branch-registry.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { XaDatabase } from '../xa/xa.types.js';
import { isRedisConnection } from './branch-handler.binding.js';
import { declaredBranchHandlers, type GrpcMethodMetadata, type PayloadParameter } from './branch-metadata.accessor.js';
import type { BranchKind, BranchResolver } from '../transport/dtm.types.js';
import { BRANCH_DECORATOR, type SagaActionOptions, type XaBranchOptions } from './branch.types.js';
import { DtmGrpcIntegration } from './grpc/dtm-grpc.integration.js';
import { HttpBranchLocator, type HttpBranchRoute } from './http/http-branch.locator.js';
import { MANIFEST_FORMAT, MANIFEST_OP, type BranchManifest, type ManifestBranch, type ManifestTargets } from '../contracts/branch-manifest.js';
import { messageOf } from '../errors/text-of.js';

/** The kinds of branch a transaction adds by name (a saga's add(), a TCC's or XA's callBranch(), a message's add() and back-check). */
const BY_NAME: ReadonlySet<BranchKind> = new Set<BranchKind>(['saga-action', 'tcc-try', 'xa', 'msg', 'msg-query-prepared']);

/** A decorated handler as the explorer found it: where DTM reaches it over HTTP and / or gRPC. */
export interface BranchRoute {
  kind: BranchKind;
  name: string;
  options: SagaActionOptions & XaBranchOptions;
  /** `Controller.method`, for messages. */
  handler: string;
  /** Its HTTP route, when it is one. */
  http?: HttpBranchRoute;
  /** Its `@GrpcMethod`, when it is one. */
  grpc?: GrpcMethodMetadata;
  /** The barrier connection it runs with, if any. */
  barrier?: string;
  /** Its whole payload's parameter (`@Body()` / `@Payload()`), when typed with a class (a DTO): the class and the pipes of the handler, its controller and the parameter. */
  payload?: PayloadParameter;
  /** A start-up problem of this route, if any (e.g. path parameters). */
  problem?: string;
}

/**
 * The decorated branches of this app, filled once at start-up by the explorer: turns branch names
 * into the targets DTM must call. A branch may be served over HTTP and over gRPC (one handler
 * that is both a route and a `@GrpcMethod`, or one handler each): a gRPC transaction calls its
 * gRPC method, an HTTP transaction its route.
 */
@Injectable()
export class DtmBranchRegistry implements BranchResolver, OnApplicationBootstrap {
  private readonly logger = new Logger('DtmBranch');
  private readonly routes = new Map<string, { http?: BranchRoute; grpc?: BranchRoute }>();
  /** The paths of the decorated HTTP routes by their length, each with its methods (`ALL` for `@All()`). */
  private readonly httpPaths = new Map<number, { path: string; methods: Set<string> }[]>();

  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    private readonly httpLocator: HttpBranchLocator,
    private readonly grpcLocator: DtmGrpcIntegration,
    @Optional() @Inject(DTM_BARRIER_CONNECTIONS) private readonly barrierConnections?: Map<string, BarrierConnection>,
    @Optional() @Inject(DTM_XA_CONNECTIONS) private readonly xaConnections?: Map<string, XaDatabase>,
  ) {}

  /** Every registered branch handler. */
  get all(): BranchRoute[] {
    const all = new Set<BranchRoute>();
    for (const { http, grpc } of this.routes.values()) for (const route of [http, grpc]) if (route) all.add(route);
    return [...all];
  }

  /** Registers the explorer's findings; throws one {@link DtmBranchRegistryError} naming every misfit. */
  register(routes: BranchRoute[]): void {
    const problems: string[] = routes.filter((r) => r.problem).map((r) => r.problem!);
    const byKey = new Map<string, BranchRoute[]>();
    for (const route of routes) byKey.set(key(route.kind, route.name), [...(byKey.get(key(route.kind, route.name)) ?? []), route]);
    const served = new Map<string, { http?: BranchRoute; grpc?: BranchRoute }>();
    for (const [k, same] of byKey) {
      const decl = `${BRANCH_DECORATOR[same[0].kind]}('${same[0].name}')`;
      const overHttp = same.filter((r) => r.http);
      const overGrpc = same.filter((r) => r.grpc);
      if (overHttp.length > 1) problems.push(MESSAGES.duplicateBranch(decl, overHttp.map((r) => r.handler), 'HTTP'));
      if (overGrpc.length > 1) problems.push(MESSAGES.duplicateBranch(decl, overGrpc.map((r) => r.handler), 'gRPC'));
      served.set(k, { http: overHttp[0], grpc: overGrpc[0] });
      if (overHttp.length === 1 && overGrpc.length === 1) this.logger.log(MESSAGES.branchOnBothTransports(decl, overHttp[0].handler, overGrpc[0].handler));
    }
    // two handlers on one route: Nest calls the first it registered for every call, the other's branch included
    const byPath = new Map<string, { method: string; handler: string }[]>();
    for (const { http, handler } of routes) {
      if (!http) continue;
      const same = byPath.get(http.path) ?? [];
      const clash = same.find((r) => r.handler !== handler && (r.method === http.method || r.method === 'ALL' || http.method === 'ALL'));
      if (clash) problems.push(MESSAGES.sharedBranchRoute(`${http.method} ${http.path}`, [clash.handler, handler]));
      byPath.set(http.path, [...same, { method: http.method, handler }]);
    }
    const has = (kind: BranchKind, name: string) => byKey.has(key(kind, name));
    for (const route of routes) {
      const decl = `${BRANCH_DECORATOR[route.kind]}('${route.name}') on ${route.handler}`;
      const barrierProblem = this.barrierProblem(route, decl);
      if (barrierProblem) problems.push(barrierProblem);
      if (route.kind === 'saga-action') {
        const wantsCompensation = route.options.compensate !== false;
        if (wantsCompensation && !has('saga-compensate', route.name)) problems.push(MESSAGES.sagaWithoutCompensation(decl, route.name));
        if (!wantsCompensation && has('saga-compensate', route.name)) problems.push(MESSAGES.sagaCompensationStated(decl, route.name));
      }
      if (route.kind === 'saga-compensate' && !has('saga-action', route.name)) problems.push(MESSAGES.compensationWithoutAction(decl, route.name));
      if (route.kind === 'tcc-try') {
        const missing = (['tcc-confirm', 'tcc-cancel'] as const).filter((k) => !has(k, route.name)).map((k) => `${BRANCH_DECORATOR[k]}('${route.name}')`);
        if (missing.length > 0) problems.push(MESSAGES.tccIncomplete(decl, missing));
      }
      if ((route.kind === 'tcc-confirm' || route.kind === 'tcc-cancel') && !has('tcc-try', route.name)) problems.push(MESSAGES.tccWithoutTry(decl, route.name));
    }
    if (problems.length > 0) throw new DtmBranchRegistryError(problems);
    this.grpcLocator.useBranchMethods(routes.filter((r) => r.grpc).map((r) => r.grpc!));
    for (const [k, entry] of served) this.routes.set(k, entry);
    for (const { http } of routes) {
      if (!http) continue;
      const sameLength = this.httpPaths.get(http.path.length) ?? [];
      this.httpPaths.set(http.path.length, sameLength);
      const known = sameLength.find((p) => p.path === http.path);
      if (known) known.methods.add(http.method);
      else sameLength.push({ path: http.path, methods: new Set([http.method]) });
    }
  }

  /** @internal Whether `path` (without a query) is the path of a decorated HTTP branch route, for any method. */
  isHttpRoutePath(path: string): boolean {
    return this.httpPaths.get(path.length)?.some((p) => p.path === path) ?? false;
  }

  /**
   * @internal Whether the first `pathLength` characters of `url` are the path of a decorated HTTP
   * branch route for `method` (the calls whose bodies the module reads itself). Called for every
   * request with a body and a query, so it compares in place instead of cutting the path out.
   */
  servesHttp(method: string, url: string, pathLength: number): boolean {
    const candidates = this.httpPaths.get(pathLength);
    if (candidates === undefined) return false;
    for (const { path, methods } of candidates) if (url.startsWith(path) && (methods.has(method) || methods.has('ALL'))) return true;
    return false;
  }

  private barrierProblem(route: BranchRoute, decl: string): string | undefined {
    const xaDb = route.options.db;
    if (xaDb && !this.xaConnections?.has(xaDb)) return MESSAGES.unknownXaDb(decl, xaDb, [...(this.xaConnections?.keys() ?? [])]);
    if (route.kind === 'xa' && route.options.barrier) return MESSAGES.barrierOnXa(decl);
    if (!route.barrier) return undefined;
    const connection = this.barrierConnections?.get(route.barrier);
    if (!connection) return MESSAGES.unknownBarrier(decl, route.barrier, [...(this.barrierConnections?.keys() ?? [])]);
    if (isRedisConnection(connection) && route.kind !== 'msg-query-prepared') {
      return MESSAGES.redisBarrierOnHandler(decl, route.barrier);
    }
    return undefined;
  }

  /**
   * The target DTM calls for the branch `name` of `kind`, in a transaction on `protocol`: its gRPC
   * method (`grpc_app_address/package.Service/Method`) in a gRPC transaction when it has one, else
   * its URL (`app_url`, or the address the app listens on, plus the route). Throws `DtmUsageError`
   * for an unknown name, and for a gRPC-only branch in an HTTP transaction.
   */
  target(kind: BranchKind, name: string, protocol: DtmProtocol): string {
    const entry = this.routes.get(key(kind, name));
    if (!entry) {
      const routes = [...this.routes.values()].map((e) => (e.http ?? e.grpc)!);
      const known = routes.filter((r) => r.kind === kind).map((r) => r.name);
      // the same name as a branch of another kind a transaction adds by name (a saga action given to a TCC, say)
      const otherKinds = routes.filter((r) => r.name === name && r.kind !== kind && BY_NAME.has(r.kind)).map((r) => BRANCH_DECORATOR[r.kind]);
      throw new DtmUsageError(MESSAGES.unknownBranch(BRANCH_DECORATOR[kind], name, known, declaredBranchHandlers(kind, name), otherKinds));
    }
    if (protocol === 'grpc' && entry.grpc) return this.grpcLocator.target(entry.grpc.grpc!, entry.grpc.handler);
    if (entry.http) return this.httpLocator.target(entry.http.http!, name);
    throw new DtmUsageError(MESSAGES.grpcBranchOverHttp(`${BRANCH_DECORATOR[kind]}('${name}')`, entry.grpc!.handler));
  }

  /**
   * @internal The handler DTM calls for this app's branch `name` of `kind` in a transaction on
   * `protocol` (the one {@link target} names) and its barrier: the `barrierConnections` name and what
   * it stores in (a SQL dialect, or `redis`); `undefined` when the app has no such branch.
   */
  barrierOf(kind: BranchKind, name: string, protocol: DtmProtocol): { handler: string; barrier?: string; store?: string } | undefined {
    const entry = this.routes.get(key(kind, name));
    const route = entry && (protocol === 'grpc' && entry.grpc ? entry.grpc : (entry.http ?? entry.grpc));
    if (!route) return undefined;
    if (!route.barrier) return { handler: route.handler };
    const connection = this.barrierConnections?.get(route.barrier);
    return { handler: route.handler, barrier: route.barrier, store: connection && (isRedisConnection(connection) ? 'redis' : connection.dialect) };
  }

  /**
   * The manifest of this app's branches (`publish_branches`): each branch callers can add by name,
   * with its ops and where DTM reaches each over HTTP and / or gRPC. Built when asked (not on any
   * branch call); a transport that cannot be located yet (no `app_url` before the app listens, no
   * gRPC server) is left out.
   */
  manifest(): BranchManifest {
    const branches = new Map<string, ManifestBranch>();
    for (const { http, grpc } of this.routes.values()) {
      const route = (http ?? grpc)!;
      const published = MANIFEST_OP[route.kind];
      if (!published) continue;
      const targets: ManifestTargets = {};
      try {
        if (http) targets.http = this.httpLocator.target(http.http!, route.name);
      } catch {
        // not reachable over HTTP yet
      }
      try {
        if (grpc) targets.grpc = this.grpcLocator.target(grpc.grpc!, grpc.handler);
      } catch {
        // no gRPC address to publish
      }
      if (!targets.http && !targets.grpc) continue;
      const key = `${published.kind}:${route.name}`;
      const branch = branches.get(key) ?? { name: route.name, kind: published.kind, ops: {} };
      branch.ops[published.op] = targets;
      branches.set(key, branch);
    }
    return { format: MANIFEST_FORMAT, branches: [...branches.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  }

  /** The decorated HTTP route whose target is `url` (`app_url` or the listening address, plus its path), if any; for diagnoses only. */
  routeAt(url: string): { name: string; handler: string; method: string } | undefined {
    for (const route of this.all) {
      if (!route.http) continue;
      try {
        if (this.httpLocator.target(route.http, route.name) === url) return { name: route.name, handler: route.handler, method: route.http.method };
      } catch {
        return undefined; // no base URL yet
      }
    }
    return undefined;
  }

  /** Whether a branch `name` of `kind` exists. */
  has(kind: BranchKind, name: string): boolean {
    return this.routes.has(key(kind, name));
  }

  /**
   * Warns once the app listens when HTTP branch URLs fall back to the listening address (no
   * `app_url`), and at start-up when gRPC branches have no `grpc_app_address` (or no gRPC server)
   * and for each `@GrpcMethod` branch the app's gRPC servers do not serve (or, with several of
   * them, whose server's address `grpc_app_address` does not tell);
   * not with `enabled: false`, where this app starts no transaction (as the other start-up checks).
   */
  onApplicationBootstrap(): void {
    if (!this.config.enabled) return;
    // 0.0.0.0 / [::] in app_url or grpc_app_address (copied from where the app listens): DTM would call its own host
    for (const [key, value] of [['app_url', this.config.appUrl], ['grpc_app_address', this.config.grpcAppAddress && `http://${this.config.grpcAppAddress}`]] as const) {
      const host = unspecifiedHost(value);
      if (host) this.logger.warn(MESSAGES.appAddressUnspecified(key, host));
    }
    // app_url or grpc_app_address on this host's loopback while DTM is another host (server_url's): DTM would call its own loopback
    const dtmHost = urlHostname(this.config.serverUrl);
    if (dtmHost && !isLoopbackHost(dtmHost)) {
      for (const [key, value] of [['app_url', this.config.appUrl], ['grpc_app_address', this.config.grpcAppAddress && `http://${this.config.grpcAppAddress}`]] as const) {
        const host = urlHostname(value);
        if (host && isLoopbackHost(host)) this.logger.warn(MESSAGES.appAddressLoopback(key, host, dtmHost));
      }
    }
    const all = this.all;
    if (all.some((r) => r.http)) this.httpLocator.warnOnAppUrl((message) => this.logger.warn(message));
    // a @GrpcMethod branch no gRPC server of the app serves: DTM's calls of it would answer UNIMPLEMENTED
    const unserved = new Set<BranchRoute>();
    for (const route of all.filter((r) => r.grpc)) {
      const problem = this.grpcLocator.unserved(route.grpc!, route.handler);
      if (problem === undefined) continue;
      unserved.add(route);
      this.logger.warn(problem);
    }
    const grpc = all.find((r) => r.grpc && !unserved.has(r));
    // DTM dials gRPC branches without TLS
    const tls = new Set(all.filter((r) => r.grpc && !unserved.has(r)).map((r) => this.grpcLocator.tlsServerOf(r.grpc!, r.handler)));
    for (const url of tls) if (url !== undefined) this.logger.warn(MESSAGES.grpcServerTlsAtStartup(url));
    // with several gRPC servers, grpc_app_address names one of them: a branch of another whose address cannot be told from it
    if (grpc && this.config.grpcAppAddress && this.grpcLocator.hasSeveralServers) {
      for (const route of all.filter((r) => r.grpc && !unserved.has(r))) {
        try {
          this.grpcLocator.locate(route.grpc!, route.handler);
        } catch (err) {
          this.logger.warn(messageOf(err));
        }
      }
    }
    if (grpc && !this.config.grpcAppAddress) {
      try {
        this.logger.warn(MESSAGES.grpcAppAddressFromListen(this.grpcLocator.locate(grpc.grpc!, grpc.handler).address));
      } catch (err) {
        this.logger.warn(messageOf(err));
      }
    }
  }
}

function key(kind: BranchKind, name: string): string {
  return `${kind}:${name}`;
}

/** The host of URL `url` when it is the unspecified address (0.0.0.0, [::]: one to listen on, not to call); else undefined. */
function unspecifiedHost(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const host = new URL(url).hostname;
    return host === '0.0.0.0' || host === '[::]' ? host : undefined;
  } catch {
    return undefined;
  }
}
