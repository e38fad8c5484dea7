/** Spec files run first, in this order, when jest has no timing of them (slow-first-sequencer.js). */
export const SLOW_FIRST: string[];

/** A test file as jest's sequencer sees it. */
export interface SequencedTest {
  path: string;
  duration?: number;
  context: { config: { rootDir: string; cache: boolean; cacheDirectory: string; id: string; haste: object }; hasteFS: { getSize(path: string): number | null } };
}

/** The jest sequencer of slow-first-sequencer.js: jest's order, with SLOW_FIRST's files first when jest has no timing of them. */
export default class SlowFirstSequencer {
  constructor(options: object);
  /** The files in the order they start. */
  sort(tests: SequencedTest[]): SequencedTest[];
  /** Records each file's run time and outcome (jest calls it after a run), in `cacheDirectory`. */
  cacheResults(tests: SequencedTest[], results: { testResults: { testFilePath: string; numFailingTests: number; perfStats: { runtime: number } }[] }): void;
}
