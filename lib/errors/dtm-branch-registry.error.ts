import { DtmUsageError } from './dtm-usage.error.js';

/** Decorated branches (or `@DtmWorkflow`s) that do not fit together, found at start-up; a branch name no handler has, used in a transaction, is a plain `DtmUsageError`. */
export class DtmBranchRegistryError extends DtmUsageError {
  /** Every problem, each naming the handlers involved and the fix. */
  readonly problems: readonly string[];

  constructor(problems: string[]) {
    super(
      problems.length === 1
        ? problems[0]
        : `DTM branch declarations have ${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.problems = problems;
  }
}
