import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { DtmBranchExplorer } from './branches/branch.explorer.js';
import { DtmBranchRegistry } from './branches/branch.registry.js';
import { DtmGrpcIntegration } from './branches/grpc/dtm-grpc.integration.js';
import { DtmHttpIntegration } from './branches/http/dtm-http.integration.js';
import { HttpBranchLocator } from './branches/http/http-branch.locator.js';
import { DtmClient } from './client/dtm.client.js';
import { DtmHealthIndicator } from './health/dtm-health.indicator.js';
import { DtmStartupChecks } from './diagnostics/startup-checks.js';
import type { BarrierConnection } from './barrier/barrier.types.js';
import type { DtmModuleOptions } from './dtm.module-options.js';
import type { DtmConfig } from './config/dtm-config.types.js';
import { closest, resolveDtmConfig } from './config/resolve-dtm-config.js';
import { DTM_CONFIG_KEYS } from './config/dtm-config.keys.js';
import { DTM_CONTRACTS, DTM_BARRIER_CONNECTIONS, DTM_BRANCH_RESOLVER, DTM_BRANCH_RUNTIME, DTM_CONFIG, DTM_GRPC_CODECS, DTM_WORKFLOW_ENVIRONMENT, DTM_XA_CONNECTIONS } from './dtm.constants.js';
import { GrpcCodecs } from './transport/grpc/grpc-codecs.js';
import { loadGrpc } from './transport/grpc/grpc-runtime.js';
import type { DtmBranchRuntime } from './branches/branch-call.js';
import type { XaDatabase } from './xa/xa.types.js';
import { DTM_ASYNC_OPTIONS_TYPE, DTM_MODULE_OPTIONS, DTM_OPTIONS_TYPE, DtmConfigurableModule } from './dtm.module-definition.js';
import { TransactionHelper } from './client/transaction.helper.js';
import type { WorkflowEnvironment } from './workflow/workflow.engine.js';
import { DtmWorkflowRegistry } from './workflow/workflow.registry.js';
import { DtmManifestController } from './branches/branch-manifest.controller.js';
import { DtmWorkflowResumeController, WORKFLOW_RESUME_METHOD, WORKFLOW_RESUME_PATH, WORKFLOW_SERVICE } from './branches/workflow-resume.js';
import { DtmConfigError, type DtmConfigProblem } from './errors/dtm-config.error.js';
import { DtmUsageError } from './errors/dtm-usage.error.js';
import { MESSAGES } from './dtm.messages.js';
import { isRemoteBranch, type RemoteBranch } from './contracts/branch-contract.js';
import { DtmInstrumentation } from './observability/dtm-instrumentation.js';

/**
 * The module's options, checked to be an object before anything reads them: every provider below
 * injects this, not `DTM_MODULE_OPTIONS` (a forRootAsync factory that forgot its `return` gives undefined).
 */
const DTM_CHECKED_OPTIONS = Symbol('DTM_CHECKED_OPTIONS');

/** The configuration and the gRPC codecs, resolved together ({@link resolveModule}). */
const DTM_RESOLVED = Symbol('DTM_RESOLVED');

const providers: Provider[] = [
  { provide: DTM_CHECKED_OPTIONS, useFactory: checkedOptions, inject: [DTM_MODULE_OPTIONS] },
  // resolved and validated once, when the app starts: a bad configuration fails start-up with every problem listed
  { provide: DTM_RESOLVED, useFactory: resolveModule, inject: [DTM_CHECKED_OPTIONS] },
  { provide: DTM_CONFIG, useFactory: (resolved: ResolvedModule) => resolved.config, inject: [DTM_RESOLVED] },
  {
    provide: DTM_XA_CONNECTIONS,
    useFactory: (options: DtmModuleOptions) => new Map(Object.entries(options.xaConnections ?? {})),
    inject: [DTM_CHECKED_OPTIONS],
  },
  {
    provide: DTM_BARRIER_CONNECTIONS,
    useFactory: (options: DtmModuleOptions) => new Map(Object.entries(options.barrierConnections ?? {})),
    inject: [DTM_CHECKED_OPTIONS],
  },
  {
    provide: DTM_BRANCH_RUNTIME,
    useFactory: (config: DtmConfig, barrierConnections: Map<string, BarrierConnection>, xaDatabases: Map<string, XaDatabase>, dtm: DtmClient, instrumentation: DtmInstrumentation, registry: DtmBranchRegistry): DtmBranchRuntime => ({
      config,
      barrierConnections,
      xaDatabases,
      query: (gid) => dtm.query(gid),
      xaLocalTransaction: (branch, db, business) => dtm.xaLocalTransaction(branch, db, business),
      instrumentation,
      isHttpRoutePath: (path) => registry.isHttpRoutePath(path),
    }),
    inject: [DTM_CONFIG, DTM_BARRIER_CONNECTIONS, DTM_XA_CONNECTIONS, DtmClient, DtmInstrumentation, DtmBranchRegistry],
  },
  // the instrumentation seam: hooks, OpenTelemetry, debug log (one per module)
  { provide: DtmInstrumentation, useFactory: (options: DtmModuleOptions) => new DtmInstrumentation(options.instrumentation), inject: [DTM_CHECKED_OPTIONS] },
  {
    provide: DTM_CONTRACTS,
    useFactory: (options: DtmModuleOptions) => contractBranches(options.contracts),
    inject: [DTM_CHECKED_OPTIONS],
  },
  // the app's gRPC protos, loaded at start-up (a bad path fails it), only when it gives any
  { provide: DTM_GRPC_CODECS, useFactory: (resolved: ResolvedModule) => resolved.codecs, inject: [DTM_RESOLVED] },
  { provide: DTM_BRANCH_RESOLVER, useExisting: DtmBranchRegistry },
  {
    provide: DTM_WORKFLOW_ENVIRONMENT,
    useFactory: (
      registry: DtmWorkflowRegistry,
      http: HttpBranchLocator,
      grpc: DtmGrpcIntegration,
      barrierConnections: Map<string, BarrierConnection>,
      xaDatabases: Map<string, XaDatabase>,
    ): WorkflowEnvironment => ({
      registry,
      barrierConnections,
      xaDatabases,
      resumeTarget: (protocol) => {
        // a gRPC server of this app without the workflow proto would answer DTM's every resume UNIMPLEMENTED
        if (protocol === 'grpc' && grpc.serves(WORKFLOW_SERVICE, 'workflow resume') === false) throw new DtmUsageError(MESSAGES.noWorkflowProto());
        try {
          return protocol === 'http'
            ? http.target({ method: 'POST', path: WORKFLOW_RESUME_PATH }, 'workflow resume')
            : `${grpc.locate({ service: WORKFLOW_SERVICE, rpc: 'Execute' }, 'workflow resume').address}${WORKFLOW_RESUME_METHOD}`;
        } catch (err) {
          throw new DtmUsageError(MESSAGES.noWorkflowResume(protocol), { cause: err });
        }
      },
    }),
    inject: [DtmWorkflowRegistry, HttpBranchLocator, DtmGrpcIntegration, DTM_BARRIER_CONNECTIONS, DTM_XA_CONNECTIONS],
  },
  DtmWorkflowRegistry,
  DtmClient,
  DtmHealthIndicator,
  DtmStartupChecks,
  TransactionHelper,
  DtmBranchRegistry,
  DtmBranchExplorer,
  HttpBranchLocator,
  DtmHttpIntegration,
  DtmGrpcIntegration,
];
// the branch runtime too: the branch guard is instantiated in the modules of the controllers using it
const exported = [DTM_CONFIG, DTM_BRANCH_RUNTIME, DtmClient, DtmHealthIndicator, TransactionHelper, DtmBranchRegistry, DtmInstrumentation];

/**
 * The DTM module: `DtmModule.forRoot({ configFile: 'config.yaml' })` reads the file's `lynx.dtm`
 * section (inline `config` overrides it), provides `DtmClient` and `TransactionHelper`, and serves
 * the app's decorated branch handlers (`@SagaAction`, `@TccTry`, ...) with DTM's branch protocol.
 */
@Module({})
export class DtmModule extends DtmConfigurableModule {
  /** Configures the module from a YAML file (`configFile`) and/or inline `config`. */
  static forRoot(options: typeof DTM_OPTIONS_TYPE = {}): DynamicModule {
    return withProviders(super.forRoot(options));
  }

  /**
   * Configures the module from a factory, e.g. one that reads `@nestjs/config`'s `ConfigService`.
   * The factory must return the options (a `DtmConfigError` at `options` when it returns nothing).
   */
  static forRootAsync(options: typeof DTM_ASYNC_OPTIONS_TYPE): DynamicModule {
    const definition = withProviders(super.forRootAsync(options));
    const factory = options?.useFactory ? undefined : (options?.useClass ?? options?.useExisting);
    if (factory === undefined) return definition;
    // useClass / useExisting: Nest calls the provider's create(); one without it (plain JavaScript) failed with a TypeError of Nest's
    const path = options.useClass ? 'options.useClass' : 'options.useExisting';
    const created = { provide: DTM_MODULE_OPTIONS, useFactory: (provider: unknown) => createdOptions(provider, path), inject: [factory] };
    definition.providers = definition.providers?.map((p) => (typeof p === 'object' && 'provide' in p && p.provide === DTM_MODULE_OPTIONS ? created : p));
    return definition;
  }
}

/** What the `create()` of a forRootAsync `useClass` / `useExisting` provider returns; a `DtmConfigError` at `path` when it has none. */
async function createdOptions(provider: unknown, path: string): Promise<unknown> {
  const create = (provider as { create?: unknown } | null | undefined)?.create;
  if (typeof create === 'function') return (await create.call(provider)) as unknown;
  throw new DtmConfigError([{ path, message: MESSAGES.moduleOptionsFactoryNoCreate(nameOf(provider), methodsOf(provider)) }], 'options');
}

/** The class name of `value` (or its type). */
function nameOf(value: unknown): string {
  const name = (value as { constructor?: { name?: unknown } } | null | undefined)?.constructor?.name;
  return typeof name === 'string' && name !== '' && name !== 'Object' ? name : `the provider (${value === null ? 'null' : typeof value})`;
}

/** The methods `value` has (its class's, and its own function properties), at most 10. */
function methodsOf(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const names = new Set<string>();
  for (let o: object | null = value; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (name !== 'constructor' && typeof (value as Record<string, unknown>)[name] === 'function') names.add(name);
    }
  }
  return [...names].slice(0, 10);
}

/** Every option `DtmModuleOptions` has: any other key would be silently ignored. */
const MODULE_OPTION_KEYS: readonly (keyof DtmModuleOptions)[] = ['configFile', 'section', 'config', 'barrierConnections', 'xaConnections', 'grpcProtos', 'contracts', 'instrumentation'];

/**
 * `options` when it is an object of known options; else a `DtmConfigError` at path `options` saying
 * what to give, or at `options.<key>` for each key the module does not know (a `lynx.dtm` setting
 * given beside `config`, `isGlobal` returned by a factory, a typo), listed with the problems of the
 * configuration the known options give: not the defaults, silently, nor one start-up per problem.
 */
function checkedOptions(options: unknown): DtmModuleOptions {
  if (typeof options === 'object' && options !== null && !Array.isArray(options)) {
    const unknown = Object.keys(options).filter((key) => !(MODULE_OPTION_KEYS as readonly string[]).includes(key));
    const instrumentation = instrumentationProblems((options as DtmModuleOptions).instrumentation);
    if (unknown.length === 0 && instrumentation.length === 0) return options as DtmModuleOptions;
    const problems: DtmConfigProblem[] = unknown.map((key) => {
      const setting = DTM_CONFIG_KEYS.find((k) => k.camel === key || k.yaml === key);
      const message = setting
        ? MESSAGES.moduleOptionIsSetting(setting.camel, setting.yaml)
        : key === 'isGlobal'
          ? MESSAGES.moduleOptionIsGlobal()
          : MESSAGES.moduleOptionUnknown(MODULE_OPTION_KEYS, closest(key, [...MODULE_OPTION_KEYS]));
      return { path: `options.${key.slice(0, 60)}`, message };
    });
    problems.push(...instrumentation);
    // and what the known options' configuration has wrong: every problem in one start-up
    const known = Object.fromEntries(Object.entries(options).filter(([key]) => !unknown.includes(key))) as DtmModuleOptions;
    let source = 'options';
    try {
      resolveModule(known);
    } catch (err) {
      if (!(err instanceof DtmConfigError)) throw err;
      problems.push(...err.problems);
      source += ` + ${err.source}`;
    }
    throw new DtmConfigError(problems, source);
  }
  const got = options === undefined || options === null ? String(options) : Array.isArray(options) ? 'a list' : `${typeof options} ${String(options).slice(0, 50)}`;
  throw new DtmConfigError([{ path: 'options', message: MESSAGES.moduleOptionsNotObject(got) }], 'options');
}

/** Every key of `DtmModuleOptions['instrumentation']`. */
const INSTRUMENTATION_KEYS = ['hooks', 'openTelemetry', 'debugLogs'] as const;

/**
 * The problems of the `instrumentation` option, each at `options.instrumentation[.<key>]`: not a
 * mapping, a key it does not have (a typo: `debugLog`), a flag that is not a boolean (`'false'`
 * from the environment would turn nothing off), hooks that are not a mapping. The hooks' own
 * entries are checked by {@link DtmInstrumentation}.
 */
function instrumentationProblems(instrumentation: unknown): DtmConfigProblem[] {
  if (instrumentation === undefined) return [];
  const path = 'options.instrumentation';
  const got = (value: unknown) => (typeof value === 'function' ? 'a function' : value === null ? 'null' : Array.isArray(value) ? 'a list' : `${typeof value} ${String(value).slice(0, 50)}`);
  if (typeof instrumentation !== 'object' || instrumentation === null || Array.isArray(instrumentation)) {
    return [{ path, message: MESSAGES.configWant('a mapping such as { debugLogs: true }', got(instrumentation)) }];
  }
  const problems: DtmConfigProblem[] = [];
  for (const [key, value] of Object.entries(instrumentation)) {
    const at = `${path}.${key.slice(0, 60)}`;
    if (!(INSTRUMENTATION_KEYS as readonly string[]).includes(key)) {
      problems.push({ path: at, message: MESSAGES.instrumentationOptionUnknown(INSTRUMENTATION_KEYS, closest(key, [...INSTRUMENTATION_KEYS])) });
    } else if (value === undefined) {
      continue;
    } else if (key === 'hooks') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) problems.push({ path: at, message: MESSAGES.configWant("a mapping of event names to listeners, such as { 'branch.call': (e) => ... }", got(value)) });
    } else if (typeof value !== 'boolean') {
      problems.push({ path: at, message: MESSAGES.configWant('true or false', got(value)) });
    }
  }
  return problems;
}

/** What {@link resolveModule} gives. */
interface ResolvedModule {
  config: DtmConfig;
  codecs: GrpcCodecs;
}

/**
 * The `lynx.dtm` configuration ({@link resolveDtmConfig}, {@link withGrpcLibraries}) and the codecs of
 * `grpcProtos`, or one `DtmConfigError` with the problems of both.
 */
function resolveModule(options: DtmModuleOptions): ResolvedModule {
  const problems: DtmConfigProblem[] = [];
  const sources: string[] = [];
  const collect = <T>(resolve: () => T): T | undefined => {
    try {
      return resolve();
    } catch (err) {
      if (!(err instanceof DtmConfigError)) throw err;
      problems.push(...err.problems);
      sources.push(err.source);
      return undefined;
    }
  };
  const config = collect(() => withGrpcLibraries(resolveDtmConfig(options), options));
  const codecs = collect(() => GrpcCodecs.load(options.grpcProtos));
  if (!config || !codecs) throw new DtmConfigError(problems, sources.join(' + '));
  return { config, codecs };
}

/**
 * `config`, checked to have what it talks to DTM with: `protocol: grpc` needs `@grpc/grpc-js` and
 * `@grpc/proto-loader` (optional peers), which are otherwise loaded only at the first call to DTM.
 * Without them, a `DtmConfigError` at the protocol's path saying what to install, at start-up.
 */
function withGrpcLibraries(config: DtmConfig, options: DtmModuleOptions): DtmConfig {
  if (!config.enabled || config.protocol !== 'grpc') return config;
  try {
    loadGrpc();
  } catch (err) {
    if (!(err instanceof DtmUsageError)) throw err;
    const inline = options.config?.protocol !== undefined;
    const source = inline ? 'inline config' : options.configFile !== undefined && options.section?.protocol === undefined ? `file ${options.configFile}` : 'section';
    throw new DtmConfigError([{ path: inline ? 'config.protocol' : 'lynx.dtm.protocol', message: err.message }], source);
  }
  return config;
}

/** Every branch of the module's `contracts`; a `DtmUsageError` for anything that is not a contract. */
function contractBranches(contracts: DtmModuleOptions['contracts']): RemoteBranch[] {
  const branches: RemoteBranch[] = [];
  for (const contract of contracts ?? []) {
    const entries = typeof contract === 'object' && contract !== null ? Object.values(contract) : [];
    if (entries.length === 0 || !entries.every(isRemoteBranch)) throw new DtmUsageError(MESSAGES.contractNotBranches(typeof contract));
    branches.push(...entries);
  }
  return branches;
}

function withProviders(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    // the gRPC endpoint DTM resumes workflows at (HTTP: a route on the adapter, DtmHttpIntegration)
    controllers: [...(definition.controllers ?? []), DtmWorkflowResumeController, DtmManifestController],
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), ...providers],
    exports: [...(definition.exports ?? []), ...exported],
  };
}
