import { Inject, Injectable, Optional, RequestMethod, VERSION_NEUTRAL, VersioningType, type Type } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core';
import { RoutePathFactory } from '@nestjs/core/router/route-path-factory.js';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { isLoopbackHost, urlHostname } from '../../config/dtm-config.keys.js';
import { DTM_CONFIG } from '../../dtm.constants.js';
import { MESSAGES } from '../../dtm.messages.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import { routeMetadataOf } from '../branch-metadata.accessor.js';
import { redactUrl } from '../../redact.js';

/** Nest's module path metadata key (RouterModule; the same in Nest 11 and 12). */
const MODULE_PATH = '__module_path__';

/** A decorated handler's HTTP route. */
export interface HttpBranchRoute {
  /** HTTP method of the route. */
  method: string;
  /** Full path: global prefix, module path, URI version, controller and method paths; what is not ASCII percent-encoded (UTF-8). */
  path: string;
}

/**
 * Where DTM reaches HTTP branches: each decorated route's full path as Nest builds it (global
 * prefix and its exclusions, RouterModule path, URI version, controller and method paths, with
 * Nest's own RoutePathFactory), and the base URL before it (`app_url`, or the address the app
 * listens on).
 */
@Injectable()
export class HttpBranchLocator {
  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    private readonly appConfig: ApplicationConfig,
    private readonly modules: ModulesContainer,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {}

  /** The route of `handler`; `undefined` when it is not a route, a `problem` when DTM could not call it. */
  locate(controller: Type, handler: object, where: string, hostModule: Type | undefined): { route?: HttpBranchRoute; problem?: string } {
    const meta = routeMetadataOf(controller, handler);
    if (!meta) return {};
    const versioning = this.appConfig.getVersioning();
    const modulePath = hostModule
      ? ((Reflect.getMetadata(MODULE_PATH + this.modules.applicationId, hostModule) ?? Reflect.getMetadata(MODULE_PATH, hostModule)) as string | undefined)
      : undefined;
    const paths = new RoutePathFactory(this.appConfig).create(
      {
        ctrlPath: first(meta.controllerPath) ?? '/',
        methodPath: first(meta.methodPath),
        globalPrefix: this.appConfig.getGlobalPrefix(),
        modulePath,
        controllerVersion: versioning ? ((meta.controllerVersion ?? versioning.defaultVersion) as never) : undefined,
        methodVersion: meta.methodVersion as never,
        versioningOptions: versioning,
      },
      meta.requestMethod,
    );
    // as it goes on the wire: DTM (Go) percent-encodes what is not ASCII, Fastify routes it decoded, and the module compares and signs it encoded
    const route = { method: RequestMethod[meta.requestMethod], path: paths[0].replace(/[^\x21-\x7e]+/g, encodeURIComponent) };
    if (/\/:|\*/.test(route.path)) return { route, problem: MESSAGES.branchPathParameters(where, route.path) };
    if (meta.httpCode !== undefined && meta.httpCode !== 200) return { route, problem: MESSAGES.branchHttpCode(where, meta.httpCode) };
    if (meta.host !== undefined) {
      // Nest answers 404 to a call of a host-bound controller's route whose Host it does not serve; DTM's calls go to app_url's host
      const hosts = Array.isArray(meta.host) ? meta.host : [meta.host];
      const called = urlHostname(this.config.appUrl);
      if (called === undefined || !hosts.some((host) => hostPattern(host).test(called))) {
        return { route, problem: MESSAGES.branchHostBound(where, hosts.map(String), called) };
      }
    }
    if (versioning && versioning.type !== VersioningType.URI) {
      // Nest's version filter: a route of a version answers only calls naming it (DTM's name none); a neutral one answers any
      const version = (meta.methodVersion ?? meta.controllerVersion ?? (versioning as { defaultVersion?: unknown }).defaultVersion) as unknown;
      const neutral = version === VERSION_NEUTRAL || (versioning.type !== VersioningType.CUSTOM && Array.isArray(version) && version.includes(VERSION_NEUTRAL));
      if (version !== undefined && !neutral) {
        const byDefault = meta.methodVersion === undefined && meta.controllerVersion === undefined;
        return { route, problem: MESSAGES.branchNotUriVersioned(where, VersioningType[versioning.type], byDefault) };
      }
    }
    return { route };
  }

  /** The URL DTM calls for `route`: `app_url` (or the listening address) plus its path; `DtmUsageError` before the app listens without `app_url`. */
  target(route: HttpBranchRoute, name: string): string {
    const base = this.config.appUrl ?? this.listenUrl();
    if (!base) throw new DtmUsageError(MESSAGES.noAppUrl(name));
    return `${base}${route.path}`;
  }

  /**
   * Calls `warn` once the app listens, when branch URLs fall back to the listening address, or `app_url` names this host's loopback at another port than the app's;
   * at once when `app_url` ends with the app's global prefix, which each route's path holds already.
   */
  warnOnAppUrl(warn: (message: string) => void): void {
    if (!this.adapterHost) return;
    const appUrl = this.config.appUrl;
    if (appUrl) {
      // app_url copied with the global prefix (http://orders:3000/api): DTM would call /api/api/... and get 404
      const prefix = prefixAtEnd(appUrl, this.appConfig.getGlobalPrefix());
      if (prefix) warn(MESSAGES.appUrlWithGlobalPrefix(redactUrl(appUrl), prefix));
      // app_url on this host's loopback at a port the app does not listen on: nothing of this app answers there
      const local = loopbackPortOf(appUrl);
      if (local === undefined) return;
      this.adapterHost.listen$.subscribe(() => {
        const url = this.listenUrl();
        const port = url ? Number(new URL(url).port) : undefined;
        if (port !== undefined && port !== local) warn(MESSAGES.appUrlLoopbackOtherPort(redactUrl(appUrl), local, port));
      });
      return;
    }
    this.adapterHost.listen$.subscribe(() => {
      const url = this.listenUrl();
      if (url) warn(MESSAGES.appUrlFromListen(url));
    });
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

/** The global prefix as a path (`/api`) when the path of `url` ends with it; else undefined. */
function prefixAtEnd(url: string, globalPrefix: string): string | undefined {
  const prefix = `/${globalPrefix.replace(/^\/+|\/+$/g, '')}`;
  if (prefix === '/') return undefined;
  try {
    return new URL(url).pathname.replace(/\/+$/, '').endsWith(prefix) ? prefix : undefined;
  } catch {
    return undefined;
  }
}

/** The port of `url` when its host is this host's loopback (`localhost`, `127.x.x.x`, `[::1]`), the scheme's default when it names none; else undefined. */
function loopbackPortOf(url: string): number | undefined {
  try {
    const parsed = new URL(url);
    if (!isLoopbackHost(parsed.hostname.toLowerCase())) return undefined;
    return parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
  } catch {
    return undefined;
  }
}


/** A controller's `host` as Nest matches it: a RegExp as it is; a string whole, case-insensitively, each `:param` any text, `{...}` optional. */
function hostPattern(host: string | RegExp): RegExp {
  if (host instanceof RegExp) return host;
  const source = host
    .replace(/[.+?^$|[\]\\()*]/g, '\\$&')
    .replace(/:[A-Za-z_$][\w$]*/g, '.+?')
    .replace(/\{/g, '(?:')
    .replace(/\}/g, ')?');
  return new RegExp(`^${source}$`, 'i');
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
