import { DtmError } from './dtm-error.js';

/** One problem in the `lynx.dtm` configuration: where (YAML path), what is wrong, how to fix it. */
export interface DtmConfigProblem {
  /** e.g. `lynx.dtm.server_url`, or `config.serverUrl` for inline options. */
  path: string;
  message: string;
}

/** The `lynx.dtm` configuration is invalid; lists every problem found, each with its path and fix. */
export class DtmConfigError extends DtmError {
  readonly problems: readonly DtmConfigProblem[];
  /** Where the configuration came from: `file config.yaml`, `section`, `inline config`, `options`, joined by ` + `. */
  readonly source: string;

  constructor(problems: DtmConfigProblem[], source: string) {
    super(
      `Invalid DTM configuration (${source}), ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n` +
        problems.map((p) => `  - ${p.path}: ${p.message}`).join('\n'),
    );
    this.problems = problems;
    this.source = source;
  }
}
