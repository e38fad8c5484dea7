/** The jest reporter of dtm-log-reporter.js: prints what the DTM server logged while a failing test file ran. */
export default class DtmLogReporter {
  /** Notes where the DTM log stands when `test` starts. */
  onTestFileStart(test: { path: string }): void;
  /** For a failing file, prints the DTM log's lines written while it ran (from its last 4 MiB at most). */
  onTestFileResult(test: { path: string }, result: { numFailingTests: number; testExecError?: unknown }): void;
}
