// Jest reporter: when a test file fails, prints what the DTM server logged while that file ran
// (with parallel workers the section can include lines of other files). Plain JS: jest loads
// reporters without transforming them.
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';

const MAX_LINES = 120;
const MAX_LINE_LENGTH = 600;
// The tests poll /query; those lines only repeat the state and drown the rest.
const NOISE = /GET \/api\/dtmsvr\/query\?/;

export default class DtmLogReporter {
  constructor() {
    this.offsets = new Map();
  }

  logFile() {
    const file = process.env.NESTJS_DTM_HARNESS;
    if (!file) return undefined;
    try {
      return JSON.parse(readFileSync(file, 'utf8')).dtm.logFile;
    } catch {
      return undefined;
    }
  }

  onTestFileStart(test) {
    const log = this.logFile();
    if (log) this.offsets.set(test.path, sizeOf(log));
  }

  onTestFileResult(test, result) {
    if (!(result.numFailingTests > 0 || result.testExecError)) return;
    const log = this.logFile();
    if (!log) return;
    const from = this.offsets.get(test.path) ?? 0;
    const lines = readFrom(log, from)
      .trimEnd()
      .split('\n')
      .filter((line) => line && !NOISE.test(line))
      .map((line) => (line.length > MAX_LINE_LENGTH ? `${line.slice(0, MAX_LINE_LENGTH)} …` : line));
    const shown = lines.slice(-MAX_LINES);
    process.stderr.write(
      `\n--- DTM server log while ${test.path} ran (${shown.length} of ${lines.length} lines, /query calls left out; whole log: ${log}, copied to .test-logs/ at the end) ---\n` +
        `${shown.join('\n')}\n--- end of DTM server log ---\n`,
    );
  }
}

function sizeOf(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readFrom(file, offset) {
  const size = sizeOf(file);
  if (size <= offset) return '';
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(size - offset);
    readSync(fd, buffer, 0, buffer.length, offset);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}
