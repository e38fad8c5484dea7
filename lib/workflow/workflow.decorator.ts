import { SetMetadata } from '@nestjs/common';
import { DTM_WORKFLOW_METADATA } from '../dtm.constants.js';
import type { WorkflowOptions } from './workflow.types.js';

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
export const DtmWorkflow = (name: string, options: WorkflowOptions = {}): MethodDecorator => SetMetadata(DTM_WORKFLOW_METADATA, { name, options } satisfies WorkflowMetadata);
