import { SetMetadata } from '@nestjs/common';
import { DTM_WORKFLOW_METADATA } from '../dtm.constants.js';
import type { WorkflowOptions } from './workflow.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';

/** What `@DtmWorkflow` records on its method. */
export interface WorkflowMetadata {
  name: string;
  options: WorkflowOptions;
}

/**
 * Declares a workflow named `name` on a method of a provider: `async (wf: WorkflowContext<Input>)
 * => result`. Every instance of the app knows it (DTM may resume it on any replica); a name is
 * unique per app. Changing a workflow's steps: give it a new name (`transfer.v2`).
 */
export const DtmWorkflow = (name: string, options: WorkflowOptions = {}): MethodDecorator => {
  if (typeof name !== 'string' || !/^[^\x00-\x1f\x7f]{1,128}$/.test(name)) throw new DtmUsageError(MESSAGES.badWorkflowName(name));
  if (typeof options !== 'object' || options === null) throw new DtmUsageError(MESSAGES.notAnObject(`the options of @DtmWorkflow(${JSON.stringify(name)})`, options));
  const unknown = Object.keys(options).filter((key) => !WORKFLOW_OPTIONS.has(key));
  if (unknown.length > 0) throw new DtmUsageError(MESSAGES.unknownWorkflowOptions(name, unknown));
  const metadata = SetMetadata(DTM_WORKFLOW_METADATA, { name, options } satisfies WorkflowMetadata);
  return (target, key, descriptor) => {
    const where = `${(target as { constructor: { name: string } }).constructor.name}.${String(key)}`;
    const list = declaredWorkflows.get(name);
    if (!list) declaredWorkflows.set(name, [where]);
    else if (!list.includes(where)) list.push(where);
    return metadata(target, key, descriptor);
  };
};

/** The methods `@DtmWorkflow` was put on (`Class.method`), by name: read only to explain an unknown name. */
const declaredWorkflows = new Map<string, string[]>();

/** The methods decorated `@DtmWorkflow(name)` in this process, whether or not a module lists their class. */
export function declaredWorkflowHandlers(name: string): readonly string[] {
  return declaredWorkflows.get(name) ?? [];
}

/** The keys of {@link WorkflowOptions}. */
const WORKFLOW_OPTIONS: ReadonlySet<string> = new Set(['compensateFailedStep', 'transaction']);
