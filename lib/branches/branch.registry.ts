import { Inject, Injectable, Logger, Optional, type OnApplicationBootstrap } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { isRedisConnection } from './local-transaction.binding.js';
import type { BarrierConnection, DtmConfig } from '../config/dtm-config.types.js';
import { DTM_BARRIER_CONNECTIONS, DTM_CONFIG, DTM_XA_CONNECTIONS } from '../dtm.constants.js';
import type { XaDatabase } from '../xa/xa.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmBranchRegistryError } from '../errors/dtm-branch-registry.error.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { BranchKind, BranchResolver, SagaActionOptions, XaBranchOptions } from './branch.types.js';

/** A decorated handler as the explorer found it. */
export interface BranchRoute {
  kind: BranchKind;
  name: string;
  options: SagaActionOptions & XaBranchOptions;
  /** `Controller.method`, for messages. */
  handler: string;
  /** HTTP method of the route. */
  method: string;
  /** Full path: global prefix, module path, URI version, controller and method paths. */
  path: string;
  /** The barrier connection it runs with, if any. */
  barrier?: string;
  /** A start-up problem of this route, if any (e.g. path parameters). */
  problem?: string;
}

const DECORATOR: Record<BranchKind, string> = {
  'saga-action': '@SagaAction',
  'saga-compensate': '@SagaCompensate',
  'tcc-try': '@TccTry',
  'tcc-confirm': '@TccConfirm',
  'tcc-cancel': '@TccCancel',
  xa: '@XaBranch',
  msg: '@MsgBranch',
  'msg-query-prepared': '@MsgQueryPrepared',
};

/**
 * The decorated branches of this app, filled once at start-up by the explorer: turns branch names
 * into the URLs DTM must call (`app_url`, or the address the app listens on, plus the route).
 */
@Injectable()
export class DtmBranchRegistry implements BranchResolver, OnApplicationBootstrap {
  private readonly logger = new Logger('DtmBranch');
  private readonly routes = new Map<string, BranchRoute>();

  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
    @Optional() @Inject(DTM_BARRIER_CONNECTIONS) private readonly barrierConnections?: Map<string, BarrierConnection>,
    @Optional() @Inject(DTM_XA_CONNECTIONS) private readonly xaConnections?: Map<string, XaDatabase>,
  ) {}

  /** Every registered branch. */
  get all(): BranchRoute[] {
    return [...this.routes.values()];
  }

  /** Registers the explorer's findings; throws one {@link DtmBranchRegistryError} naming every misfit. */
  register(routes: BranchRoute[]): void {
    const problems: string[] = routes.filter((r) => r.problem).map((r) => r.problem!);
    const byKey = new Map<string, BranchRoute[]>();
    for (const route of routes) byKey.set(key(route.kind, route.name), [...(byKey.get(key(route.kind, route.name)) ?? []), route]);
    for (const [, same] of byKey) {
      if (same.length > 1) problems.push(MESSAGES.duplicateBranch(`${DECORATOR[same[0].kind]}('${same[0].name}')`, same.map((r) => r.handler)));
    }
    const has = (kind: BranchKind, name: string) => byKey.has(key(kind, name));
    for (const route of routes) {
      const decl = `${DECORATOR[route.kind]}('${route.name}') on ${route.handler}`;
      const barrierProblem = this.barrierProblem(route, decl);
      if (barrierProblem) problems.push(barrierProblem);
      if (route.kind === 'saga-action') {
        const wantsCompensation = route.options.compensate !== false;
        if (wantsCompensation && !has('saga-compensate', route.name)) problems.push(MESSAGES.sagaWithoutCompensation(decl, route.name));
        if (!wantsCompensation && has('saga-compensate', route.name)) problems.push(MESSAGES.sagaCompensationStated(decl, route.name));
      }
      if (route.kind === 'saga-compensate' && !has('saga-action', route.name)) problems.push(MESSAGES.compensationWithoutAction(decl, route.name));
      if (route.kind === 'tcc-try') {
        const missing = (['tcc-confirm', 'tcc-cancel'] as const).filter((k) => !has(k, route.name)).map((k) => `${DECORATOR[k]}('${route.name}')`);
        if (missing.length > 0) problems.push(MESSAGES.tccIncomplete(decl, missing));
      }
      if ((route.kind === 'tcc-confirm' || route.kind === 'tcc-cancel') && !has('tcc-try', route.name)) problems.push(MESSAGES.tccWithoutTry(decl, route.name));
    }
    if (problems.length > 0) throw new DtmBranchRegistryError(problems);
    for (const [k, same] of byKey) this.routes.set(k, same[0]);
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
   * The target DTM calls for the branch `name` of `kind`, in a transaction on `protocol`: its URL
   * (`app_url`, or the address the app listens on, plus the route). Throws `DtmUsageError` for an unknown name.
   */
  target(kind: BranchKind, name: string, _protocol: DtmProtocol): string {
    const route = this.routes.get(key(kind, name));
    if (!route) {
      const known = this.all.filter((r) => r.kind === kind).map((r) => r.name);
      throw new DtmUsageError(MESSAGES.unknownBranch(DECORATOR[kind], name, known));
    }
    return `${this.baseUrl(name)}${route.path}`;
  }

  /** Whether a branch `name` of `kind` exists. */
  has(kind: BranchKind, name: string): boolean {
    return this.routes.has(key(kind, name));
  }

  /** Warns once the app listens, when branch URLs fall back to the listening address. */
  onApplicationBootstrap(): void {
    if (this.config.appUrl || this.routes.size === 0 || !this.adapterHost) return;
    this.adapterHost.listen$.subscribe(() => {
      const url = this.listenUrl();
      if (url) this.logger.warn(MESSAGES.appUrlFromListen(url));
    });
  }

  private baseUrl(name: string): string {
    const url = this.config.appUrl ?? this.listenUrl();
    if (!url) throw new DtmUsageError(MESSAGES.noAppUrl(name));
    return url;
  }

  private listenUrl(): string | undefined {
    const server = this.adapterHost?.httpAdapter?.getHttpServer?.() as (HttpsServer & { address(): AddressInfo | string | null }) | undefined;
    const address = server?.address?.();
    if (!address || typeof address === 'string') return undefined;
    const host = address.address === '::' || address.address === '0.0.0.0' ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const scheme = typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function' ? 'https' : 'http';
    return `${scheme}://${host}:${address.port}`;
  }
}

function key(kind: BranchKind, name: string): string {
  return `${kind}:${name}`;
}
