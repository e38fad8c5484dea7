import { DtmUsageError } from './dtm-usage.error.js';

/** Why a branch of another service could not be used by name. */
export type DtmRemoteBranchProblem = 'unknown-service' | 'unknown-branch' | 'kind' | 'transport' | 'manifest' | 'payload';

/**
 * A branch of another service, added by name (`saga.add(Bank.withdraw, ...)`), does not resolve:
 * the service is not in `lynx.dtm.services`, its manifest has no such branch (the message lists the
 * ones it has), the branch is of another kind, it is not served over the transaction's transport,
 * the service's manifest is unusable, or the payload does not pass the contract entry's schema. Nothing
 * was sent to DTM.
 */
export class DtmRemoteBranchError extends DtmUsageError {
  /** Every problem found (one, except for the start-up check of the module's `contracts`). */
  readonly problems: readonly { service: string; branch?: string; problem: DtmRemoteBranchProblem; message: string }[];

  constructor(problems: { service: string; branch?: string; problem: DtmRemoteBranchProblem; message: string }[]) {
    super(problems.length === 1 ? problems[0].message : `${problems.length} branches of other services do not resolve:\n${problems.map((p) => `  - ${p.message}`).join('\n')}`);
    this.problems = problems;
  }

  /** The service of the first problem. */
  get service(): string {
    return this.problems[0].service;
  }

  /** The kind of the first problem. */
  get problem(): DtmRemoteBranchProblem {
    return this.problems[0].problem;
  }
}
