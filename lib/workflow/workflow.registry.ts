import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { DTM_WORKFLOW_METADATA } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmBranchRegistryError } from '../errors/dtm-branch-registry.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { declaredWorkflowHandlers, type WorkflowMetadata } from './workflow.decorator.js';
import type { WorkflowFunction, WorkflowOptions } from './workflow.types.js';

/** A workflow as the app declared it. */
export interface WorkflowDefinition {
  name: string;
  options: WorkflowOptions;
  /** The method, bound to its provider instance. */
  run: WorkflowFunction;
  /** `Provider.method`, for messages. */
  handler: string;
}

/** The app's workflows by name, found once at start-up on its providers (`@DtmWorkflow`). */
@Injectable()
export class DtmWorkflowRegistry implements OnModuleInit {
  private readonly workflows = new Map<string, WorkflowDefinition>();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
  ) {}

  onModuleInit(): void {
    const { found, problems, origins } = this.scan();
    for (const definition of found) {
      const same = found.filter((d) => d.name === definition.name);
      if (same.length > 1 && same[0] === definition) {
        // one declaration, on a provider two modules list (an instance each), is not two workflows
        const classes = new Set(same.map((d) => origins.get(d)?.metatype));
        if (classes.size === 1 && new Set(same.map((d) => d.handler)).size === 1) problems.push(MESSAGES.workflowProviderTwice(definition.name, definition.handler, same.map((d) => origins.get(d)?.module ?? '?')));
        else problems.push(MESSAGES.duplicateWorkflow(definition.name, same.map((d) => d.handler)));
      }
      this.workflows.set(definition.name, definition);
    }
    if (problems.length > 0) throw new DtmBranchRegistryError(problems);
  }

  /** The `@DtmWorkflow` methods of the app's providers and controllers now, and those that cannot run (not of the default scope). */
  private scan(): { found: WorkflowDefinition[]; problems: string[]; origins: Map<WorkflowDefinition, { metatype: unknown; module?: string }> } {
    const found: WorkflowDefinition[] = [];
    const problems: string[] = [];
    const origins = new Map<WorkflowDefinition, { metatype: unknown; module?: string }>();
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.metatype) continue;
      const prototype = Object.getPrototypeOf(instance) as Record<string, unknown>;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const fn = prototype[method];
        const meta = typeof fn === 'function' ? (Reflect.getMetadata(DTM_WORKFLOW_METADATA, fn) as WorkflowMetadata | undefined) : undefined;
        if (!meta) continue;
        const handler = `${instance.constructor.name}.${method}`;
        // the instance discovery sees of a request-scoped or transient provider was never constructed (its dependencies undefined)
        if (wrapper.isTransient || !wrapper.isDependencyTreeStatic()) {
          problems.push(MESSAGES.workflowNotStatic(meta.name, handler, wrapper.isTransient ? 'transient' : 'request-scoped'));
          continue;
        }
        const definition: WorkflowDefinition = { name: meta.name, options: meta.options, run: (fn as WorkflowFunction).bind(instance), handler };
        found.push(definition);
        origins.set(definition, { metatype: wrapper.metatype, module: wrapper.host?.name });
      }
    }
    return { found, problems, origins };
  }

  /** The workflow `name`; `DtmUsageError` for an unknown one. */
  get(name: string): WorkflowDefinition {
    const found = this.workflows.get(name);
    if (found) return found;
    // declared in a module loaded after start-up (LazyModuleLoader): not served, as DTM may resume it on an instance that never loaded it
    const late = this.scan().found.find((d) => d.name === name);
    if (late) throw new DtmUsageError(MESSAGES.workflowLoadedLate(name, late.handler));
    throw new DtmUsageError(MESSAGES.unknownWorkflow(name, [...this.workflows.keys()], declaredWorkflowHandlers(name)));
  }

  /** Whether the app has a workflow `name`. */
  has(name: string): boolean {
    return this.workflows.has(name);
  }
}
