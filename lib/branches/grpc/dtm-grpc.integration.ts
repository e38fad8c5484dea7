import { Inject, Injectable, Logger, Optional, type OnModuleDestroy } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import type { Subscription } from 'rxjs';
import { loadGrpc } from '../../transport/grpc/grpc-runtime.js';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { checkTraceContext, dtmContext, passThroughAllowList } from '../../context/dtm-context.js';
import { DTM_CONFIG, DTM_GRPC_CODECS } from '../../dtm.constants.js';
import type { GrpcCodecs } from '../../transport/grpc/grpc-codecs.js';
import { MESSAGES } from '../../dtm.messages.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import type { GrpcMethodMetadata } from '../branch-metadata.accessor.js';
import { loadRpcException, RAW_REQUEST, type MetadataLike } from './grpc-branch.transport.js';
import { messageOf } from '../../errors/text-of.js';

/** `@nestjs/microservices`' `Transport.GRPC`. */
const GRPC_TRANSPORT_ID = 4;

type ProcessingStartHook = (transportId: unknown, context: { metadata?: MetadataLike }, done: () => unknown) => unknown;

/** A Nest gRPC server (`ServerGrpc` of `@nestjs/microservices`, Nest 11 and 12), as the module uses it. */
interface GrpcServerLike {
  transportId: unknown;
  url: string;
  options?: {
    package?: string | string[];
    protoPath?: string | string[];
    packageDefinition?: Record<string, unknown>;
    loader?: object;
    /** grpc-js `ServerCredentials` (insecure when not given). */
    credentials?: { _isSecure?: () => boolean };
    onLoadPackageDefinition?: (definition: Record<string, unknown>, server: unknown) => void;
  };
  onProcessingStartHook: ProcessingStartHook;
  setOnProcessingStartHook(hook: ProcessingStartHook): void;
}

function isGrpcServer(server: unknown): server is GrpcServerLike {
  const s = server as Partial<GrpcServerLike> | undefined;
  return s?.transportId === GRPC_TRANSPORT_ID && typeof s.setOnProcessingStartHook === 'function' && typeof s.url === 'string';
}

/** Where DTM reaches a gRPC branch: `host:port` and the fully qualified service. */
export interface GrpcBranchAddress {
  address: string;
  service: string;
  /** The rpc as the proto declares it (the one Nest binds the handler to). */
  rpc: string;
  /** Set when the address is the server's listening address (no `grpc_app_address`). */
  fromListen?: boolean;
}

/**
 * What the module adds to the app's gRPC servers (each `ServerGrpc` Nest creates, hybrid app or
 * pure microservice; Nest announces them through its RPC target registry): a processing-start hook
 * that runs each call inside the module's AsyncLocalStorage, with the call's allow-listed metadata
 * (`pass_through_headers`, W3C trace context) as the headers passed on to the transactions it
 * starts, and the mark that makes a branch handler's `undefined` an empty message. It also knows
 * the servers' packages and addresses, to turn a `@GrpcMethod` into the target DTM calls.
 */
@Injectable()
export class DtmGrpcIntegration implements OnModuleDestroy {
  private readonly servers: GrpcServerLike[] = [];
  private readonly subscription?: Subscription;
  private readonly allowList: readonly string[];
  private readonly services = new Map<GrpcServerLike, Map<string, Map<string, string>>>();
  private readonly definitions = new Map<GrpcServerLike, Record<string, unknown>>();
  private branchMethods: readonly GrpcMethodMetadata[] = [];

  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    @Optional() modules?: ModulesContainer,
    @Optional() @Inject(DTM_GRPC_CODECS) codecs?: GrpcCodecs,
  ) {
    this.allowList = passThroughAllowList(config);
    // object payloads for this app's own gRPC methods are encoded with the protos its servers load
    codecs?.useServerProtos(() => this.servers.map((server) => this.loadableDefinitionOf(server)).filter((d): d is Record<string, unknown> => d !== undefined));
    this.subscription = modules?.getRpcTargetRegistry?.().subscribe((server: unknown) => {
      if (isGrpcServer(server)) this.install(server);
    });
  }

  /** Whether the app has a gRPC server. */
  get hasServers(): boolean {
    return this.servers.length > 0;
  }

  /** The address of the app's gRPC server serving `method` when it has TLS credentials, which DTM (dialing branches without TLS) cannot call; else undefined. */
  tlsServerOf(method: GrpcMethodMetadata, where: string): string | undefined {
    try {
      const server = this.serverOf(method, where);
      return server && usesTls(server) ? server.url : undefined;
    } catch {
      return undefined; // no server to tell (locate says why)
    }
  }

  /** Whether the app has several gRPC servers (then `grpc_app_address` names one of them, see {@link locate}). */
  get hasSeveralServers(): boolean {
    return this.servers.length > 1;
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  /**
   * Where DTM reaches `method`: `grpc_app_address` (or the listening address of the server that
   * serves it) and its fully qualified service. Throws `DtmUsageError` when it cannot be told.
   */
  locate(method: GrpcMethodMetadata, where: string): GrpcBranchAddress {
    const served = this.served(method, where);
    const notServed = served ? undefined : this.notServed(method, where);
    if (notServed) throw new DtmUsageError(notServed);
    const server = this.serverOf(method, where);
    const service = served?.service ?? (method.service.includes('.') || !server ? method.service : this.qualify(server, method.service, where));
    const rpc = served?.rpc ?? method.rpc;
    if (this.config.grpcAppAddress) return { address: this.appAddressOf(server, this.config.grpcAppAddress, where), service, rpc };
    if (!server) throw new DtmUsageError(MESSAGES.noGrpcAppAddress(where));
    // DTM dials branches without TLS: it can never call the listening address of a server with TLS credentials
    if (usesTls(server)) throw new DtmUsageError(MESSAGES.grpcServerTls(where, server.url));
    // port 0: the port grpc-js picks when it binds, which Nest does not tell; no target can name it
    if (/:0+$/.test(server.url)) throw new DtmUsageError(MESSAGES.grpcPortZero(where, server.url));
    return { address: reachable(server.url), service, rpc, fromListen: true };
  }

  /**
   * Where DTM reaches `server` given `grpc_app_address` (`address`): the address itself, unless the
   * app has gRPC servers on several ports and `server` is not the one at its port; then its host at
   * `server`'s own port, when the address's port is one of the servers' (so not mapped in front of
   * the app). A port of none of them (a port mapped in front of the app) names the one server
   * serving decorated branches if there is one (the others, e.g. a health server, serve none);
   * when decorated branches are on servers on several ports it cannot be told: `DtmUsageError`
   * (DTM would call a server that does not serve the method: UNIMPLEMENTED, retried forever).
   */
  private appAddressOf(server: GrpcServerLike | undefined, address: string, where: string): string {
    if (!server || this.servers.length <= 1) return address;
    const port = portOf(server.url);
    const ports = [...new Set(this.servers.map((s) => portOf(s.url)))];
    const separator = address.lastIndexOf(':');
    const appPort = address.slice(separator + 1).replace(/^0+(?=\d)/, '');
    if (port === undefined || ports.length <= 1 || appPort === port) return address;
    if (ports.includes(appPort)) return `${address.slice(0, separator)}:${port}`;
    const branchPorts = this.branchServerPorts(where);
    if (branchPorts.length <= 1) return address;
    throw new DtmUsageError(MESSAGES.grpcAppAddressOfOtherServer(where, address, port, branchPorts));
  }

  /** The ports of the app's gRPC servers that serve a decorated branch ({@link useBranchMethods}). */
  private branchServerPorts(where: string): string[] {
    const ports = new Set<string>();
    for (const method of this.branchMethods) {
      try {
        const port = portOf(this.serverOf(method, where)?.url ?? '');
        if (port !== undefined) ports.add(port);
      } catch {
        // a method whose server cannot be told: locate says why when it is used
      }
    }
    return [...ports];
  }

  /** The `@GrpcMethod`s of the app's decorated branches (the registry gives them at start-up). */
  useBranchMethods(methods: readonly GrpcMethodMetadata[]): void {
    this.branchMethods = methods;
  }

  /**
   * Whether one of the app's gRPC servers serves `service` (fully qualified); `undefined` when the
   * app has no gRPC server to ask (grpc_app_address may point at another process), or one whose
   * protos do not load (Nest fails to start it, naming its proto).
   */
  serves(service: string, where: string): boolean | undefined {
    // no server, or one whose protos do not load (it fails to start, saying why): nothing to tell
    if (this.servers.length === 0 || this.servers.some((server) => this.loadableDefinitionOf(server) === undefined)) return undefined;
    return this.servers.some((server) => this.servicesOf(server, where).has(service));
  }

  /**
   * Why none of the app's gRPC servers serves `method` (the message), or `undefined` when one does,
   * or when the app has no gRPC server to ask. Nest binds a `@GrpcMethod` only to an rpc of a
   * service of the packages its options list (named relative to its package or in full), and
   * answers every other call UNIMPLEMENTED, which DTM retries forever.
   */
  unserved(method: GrpcMethodMetadata, where: string): string | undefined {
    return this.served(method, where) ? undefined : this.notServed(method, where);
  }

  /** {@link unserved}'s message for a `method` {@link served} found no server for; `undefined` when no server can tell. */
  private notServed(method: GrpcMethodMetadata, where: string): string | undefined {
    // no server, or one whose protos do not load (it fails to start, saying why): nothing to tell
    if (this.servers.length === 0 || this.servers.some((server) => this.loadableDefinitionOf(server) === undefined)) return undefined;
    const served = [...new Set(this.servers.flatMap((server) => [...this.servicesOf(server, where).keys()]))];
    if (this.streamingRpc(method)) return MESSAGES.grpcMethodOnStreamingRpc(where, method.service, method.rpc);
    return MESSAGES.grpcMethodNotServed(where, method.service, method.rpc, served);
  }

  /** Whether `method` names a client-streaming rpc of the app's gRPC servers (as the proto declares it, or by its originalName). */
  private streamingRpc(method: GrpcMethodMetadata): boolean {
    for (const server of this.servers) {
      const definition = this.loadableDefinitionOf(server) as Record<string, Record<string, { originalName?: unknown; requestStream?: unknown }> | undefined> | undefined;
      for (const service of [method.service, ...packagesOf(server).filter((p) => p).map((p) => `${p}.${method.service}`)]) {
        const methods = definition?.[service];
        if (methods && typeof methods === 'object' && Object.entries(methods).some(([name, m]) => (name === method.rpc || m?.originalName === method.rpc) && m?.requestStream === true)) return true;
      }
    }
    return false;
  }

  /**
   * The gRPC target DTM calls for `method`: `host:port/package.Service/Method`, the path of the
   * method Nest binds it to (the service in full and the rpc as the proto declares them, however
   * `@GrpcMethod` names them) when the app's gRPC servers tell.
   */
  target(method: GrpcMethodMetadata, where: string): string {
    const { address, service, rpc } = this.locate(method, where);
    return `${address}/${service}/${rpc}`;
  }

  /**
   * The service (in full) and rpc (as declared) of the method of the app's gRPC servers Nest binds
   * `method` to, if any: Nest matches the service named relative to a listed package or in full,
   * and the rpc as declared or as proto-loader's `originalName` (lower camel case).
   */
  private served(method: GrpcMethodMetadata, where: string): { service: string; rpc: string } | undefined {
    for (const server of this.servers) {
      if (this.loadableDefinitionOf(server) === undefined) continue;
      const services = this.servicesOf(server, where);
      for (const service of [method.service, ...packagesOf(server).filter((p) => p).map((p) => `${p}.${method.service}`)]) {
        const rpc = services.get(service)?.get(method.rpc);
        if (rpc) return { service, rpc };
      }
    }
    return undefined;
  }

  private install(server: GrpcServerLike): void {
    // what @BranchContext() refuses a call on a gRPC method without a branch decorator with (see grpcBranchTransport.failureException)
    loadRpcException().catch((err: unknown) => new Logger('DtmBranch').error(MESSAGES.rpcExceptionUnavailable(messageOf(err))));
    const previous = server.onProcessingStartHook.bind(server);
    const allowList = this.allowList;
    server.setOnProcessingStartHook((transportId, context, done) => {
      let headers: Record<string, string> | undefined;
      const metadata = context?.metadata;
      if (metadata && typeof metadata.get === 'function') {
        for (const name of allowList) {
          const values = metadata.get(name);
          if (values.length > 0) (headers ??= {})[name] = values.map(String).join(', ');
        }
        if (headers) headers = checkTraceContext(headers);
      }
      // as on HTTP: the context is entered only when there is something to pass on (see dtmContext)
      return headers ? dtmContext.run({ headers }, () => previous(transportId, context, done)) : previous(transportId, context, done);
    });
    if (this.config.branchAuthKeys && server.options) keepRequestBytes(server.options);
    this.servers.push(server);
  }

  /** The server whose packages include `method`'s service (with one server: that one). */
  private serverOf(method: GrpcMethodMetadata, where: string): GrpcServerLike | undefined {
    if (this.servers.length <= 1) return this.servers[0];
    const matching = this.servers.filter((s) => [...this.servicesOf(s, where).keys()].some((q) => q === method.service || q.endsWith(`.${method.service}`)));
    if (matching.length !== 1) throw new DtmUsageError(MESSAGES.grpcServiceAmbiguous(where, method.service, matching.length));
    return matching[0];
  }

  /** `service` qualified with the one package of `server` that declares it. */
  private qualify(server: GrpcServerLike, service: string, where: string): string {
    const packages = packagesOf(server);
    if (packages.length === 1) return packages[0] ? `${packages[0]}.${service}` : service;
    const known = this.servicesOf(server, where);
    const matches = packages.filter((p) => known.has(`${p}.${service}`));
    if (matches.length !== 1) throw new DtmUsageError(MESSAGES.grpcServiceAmbiguous(where, service, matches.length));
    return `${matches[0]}.${service}`;
  }

  /**
   * The fully qualified services `server` serves, each with its rpc names: those of its protos
   * (loaded once, as the server loads them) in the packages of its `package` option, the only ones
   * Nest binds handlers to (a service of a proto in `protoPath` whose package is not listed answers
   * UNIMPLEMENTED).
   */
  private servicesOf(server: GrpcServerLike, where: string): Map<string, Map<string, string>> {
    let services = this.services.get(server);
    if (!services) {
      const definition = this.definitionOf(server, where);
      const packages = server.options?.package === undefined ? [''] : packagesOf(server);
      // Nest looks each package up from the root (none, or '': every service)
      const listed = (name: string) => packages.some((p) => !p || name.startsWith(`${p}.`));
      services = new Map(
        Object.entries(definition ?? {})
          .filter(([k, v]) => v && typeof v === 'object' && !('format' in v) && listed(k))
          .map(([k, v]) => [k, rpcNames(v as Record<string, { originalName?: unknown }>)]),
      );
      this.services.set(server, services);
    }
    return services;
  }

  /** `server`'s package definition: the one it was given, or its protos loaded as it loads them (once). */
  private definitionOf(server: GrpcServerLike, where: string): Record<string, unknown> | undefined {
    let definition = this.definitions.get(server) ?? server.options?.packageDefinition;
    if (!definition && server.options?.protoPath) {
      try {
        definition = loadGrpc().protoLoader.loadSync(server.options.protoPath, server.options.loader as never) as Record<string, unknown>;
      } catch (err) {
        const protoPath = [server.options.protoPath].flat().join(', ');
        throw new DtmUsageError(MESSAGES.grpcServerProtosUnreadable(where, server.url, protoPath, messageOf(err)), { cause: err });
      }
      this.definitions.set(server, definition);
    }
    return definition;
  }

  /** {@link definitionOf}, or nothing when its protos cannot be loaded (the server itself then fails to start, saying why). */
  private loadableDefinitionOf(server: GrpcServerLike): Record<string, unknown> | undefined {
    try {
      return this.definitionOf(server, 'encoding a payload');
    } catch {
      return undefined;
    }
  }
}

const KEPT = Symbol('nestjs-dtm:keeps-request-bytes');

type MethodDefinition = { requestDeserialize?: (bytes: Buffer) => unknown; [KEPT]?: true };

/**
 * With authenticated branch calls: every request message of the server's methods keeps the bytes
 * it was decoded from (under the module's symbol {@link RAW_REQUEST}: no key list or JSON of the message shows it), so that a branch call's token can
 * be checked against the exact payload DTM stored. Installed through Nest's own
 * `onLoadPackageDefinition` option (the app's hook, if any, still runs).
 */
function keepRequestBytes(options: NonNullable<GrpcServerLike['options']>): void {
  const previous = options.onLoadPackageDefinition;
  options.onLoadPackageDefinition = (definition, server) => {
    for (const service of Object.values(definition)) {
      if (!service || typeof service !== 'object' || 'format' in service) continue;
      for (const method of Object.values(service as Record<string, MethodDefinition>)) {
        const decode = method?.requestDeserialize;
        if (typeof decode !== 'function' || method[KEPT]) continue;
        method.requestDeserialize = (bytes: Buffer) => {
          const message = decode(bytes);
          // a WeakMap cost ~5 µs per call, a non-enumerable property ~2.6; a symbol no other code knows, not in keys or JSON
          if (message !== null && typeof message === 'object') (message as { [RAW_REQUEST]?: Buffer })[RAW_REQUEST] = bytes;
          return message;
        };
        method[KEPT] = true;
      }
    }
    previous?.(definition, server);
  };
}

/** Whether `server` was given secure (TLS) credentials: DTM v1.19 dials gRPC branches insecurely. */
function usesTls(server: GrpcServerLike): boolean {
  const credentials = server.options?.credentials;
  return typeof credentials?._isSecure === 'function' && credentials._isSecure() === true;
}

/** The port of a gRPC server's `url` (`host:port`), without leading zeros; undefined when it names none. */
function portOf(url: string): string | undefined {
  return /:0*(\d+)$/.exec(url)?.[1];
}

/** The packages of `server`'s `package` option, a list. */
function packagesOf(server: GrpcServerLike): string[] {
  return ([] as string[]).concat(server.options?.package ?? []);
}

/**
 * The rpc names a @GrpcMethod may give for the methods of `service` (a proto-loader service
 * definition), each with the method's name as declared: that name, and its `originalName` (lower
 * camel case), which Nest matches too.
 */
function rpcNames(service: Record<string, { originalName?: unknown; requestStream?: unknown }>): Map<string, string> {
  const names = new Map<string, string>();
  for (const [name, method] of Object.entries(service)) {
    // a client-streaming rpc: Nest binds no @GrpcMethod to it (only @GrpcStreamMethod / @GrpcStreamCall), and DTM calls unary
    if (method?.requestStream === true) continue;
    names.set(name, name);
    if (typeof method?.originalName === 'string' && !names.has(method.originalName)) names.set(method.originalName, name);
  }
  return names;
}

/** A listening address as a client on this host reaches it: `0.0.0.0` / `::` become loopback. */
function reachable(url: string): string {
  return url.replace(/^(0\.0\.0\.0|\[::\]|::)(?=:\d+$)/, '127.0.0.1');
}
