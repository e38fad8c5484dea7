import { Injectable, RequestMethod, VersioningType, type OnModuleInit, type Type } from '@nestjs/common';
import { ApplicationConfig, DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import { RoutePathFactory } from '@nestjs/core/router/route-path-factory.js';
import { DTM_BRANCH_METADATA } from '../dtm.constants.js';
import { DtmBranchGuard } from './branch.guard.js';
import { localTransactionOf } from './local-transaction.binding.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmBranchRegistry, type BranchRoute } from './branch.registry.js';
import type { BranchMetadata } from './branch.types.js';

// Nest's own route metadata keys (the same in Nest 11 and 12)
const PATH_METADATA = 'path';
const METHOD_METADATA = 'method';
const VERSION_METADATA = '__version__';
const MODULE_PATH = '__module_path__';

/**
 * Finds the decorated branch handlers once, at start-up, and registers each with its full route
 * as Nest builds it (global prefix and its exclusions, RouterModule path, URI version, controller
 * and method paths), using Nest's own RoutePathFactory.
 */
@Injectable()
export class DtmBranchExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly appConfig: ApplicationConfig,
    private readonly modules: ModulesContainer,
    private readonly registry: DtmBranchRegistry,
  ) {}

  onModuleInit(): void {
    const routes: BranchRoute[] = [];
    for (const wrapper of this.discovery.getControllers()) {
      const { instance, metatype } = wrapper;
      if (!instance || !metatype) continue;
      const prototype = Object.getPrototypeOf(instance) as Record<string, unknown>;
      // the guard, instantiated in the controller's module, carries what wrapped handlers need
      const guard = wrapper.host?.injectables.get(DtmBranchGuard)?.instance as DtmBranchGuard | undefined;
      for (const methodName of this.scanner.getAllMethodNames(prototype)) {
        const handler = prototype[methodName] as object;
        const branch = Reflect.getMetadata(DTM_BRANCH_METADATA, handler) as BranchMetadata | undefined;
        if (!branch) continue;
        const route = this.route(metatype as Type, handler, methodName, branch, wrapper.host?.metatype);
        if (!route.problem && localTransactionOf(handler) && !guard?.runtime) route.problem = MESSAGES.noBranchRuntime(route.handler);
        routes.push(route);
      }
    }
    this.registry.register(routes);
  }

  private route(controller: Type, handler: object, methodName: string, branch: BranchMetadata, hostModule: Type | undefined): BranchRoute {
    const where = `${controller.name}.${methodName}`;
    const bound = localTransactionOf(handler); // what the decorators (and @UseBarrier) made the handler run in
    const barrier = bound && 'barrier' in bound ? bound.barrier : undefined;
    const base = { kind: branch.kind, name: branch.name, options: branch.options, handler: where, barrier };
    const requestMethod = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
    const methodPath = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
    if (requestMethod === undefined || methodPath === undefined) {
      return { ...base, method: '', path: '', problem: MESSAGES.branchNotRoute(where) };
    }
    const versioning = this.appConfig.getVersioning();
    const ctrlPath = first(Reflect.getMetadata(PATH_METADATA, controller) as string | string[] | undefined) ?? '/';
    const modulePath = hostModule
      ? ((Reflect.getMetadata(MODULE_PATH + this.modules.applicationId, hostModule) ?? Reflect.getMetadata(MODULE_PATH, hostModule)) as string | undefined)
      : undefined;
    const paths = new RoutePathFactory(this.appConfig).create(
      {
        ctrlPath,
        methodPath: first(methodPath),
        globalPrefix: this.appConfig.getGlobalPrefix(),
        modulePath,
        controllerVersion: versioning ? (Reflect.getMetadata(VERSION_METADATA, controller) ?? versioning.defaultVersion) : undefined,
        methodVersion: Reflect.getMetadata(VERSION_METADATA, handler),
        versioningOptions: versioning,
      },
      requestMethod,
    );
    const path = paths[0];
    const method = RequestMethod[requestMethod];
    if (/\/:|\*/.test(path)) {
      return { ...base, method, path, problem: MESSAGES.branchPathParameters(where, path) };
    }
    if (versioning && versioning.type !== VersioningType.URI && (Reflect.getMetadata(VERSION_METADATA, handler) || Reflect.getMetadata(VERSION_METADATA, controller))) {
      return { ...base, method, path, problem: MESSAGES.branchNotUriVersioned(where, VersioningType[versioning.type]) };
    }
    return { ...base, method, path };
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
