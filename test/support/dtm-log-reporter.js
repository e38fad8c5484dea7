// Jest reporter: when a test file fails, prints what the DTM server logged while that file ran
// (with parallel workers the section can include lines of other files). Plain JS: jest loads
// reporters without transforming them.
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';

const MAX_LINES = 120;
const MAX_LINE_LENGTH = 600;
// Read no more than this of the log's end: the shared log reaches hundreds of MB (DTM logs whole
// payloads, lines of 15 MB), and one string of it blocks jest's main process or passes V8's limit.
const MAX_BYTES = 4 * 1024 * 1024;
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
    const { text, skipped } = readFrom(log, from);
    const lines = text
      .trimEnd()
      .split('\n')
      .filter((line) => line && !NOISE.test(line))
      .map((line) => (line.length > MAX_LINE_LENGTH ? `${line.slice(0, MAX_LINE_LENGTH)} …` : line));
    const shown = lines.slice(-MAX_LINES);
    const part = skipped > 0 ? ` of its last ${MAX_BYTES / 1024 / 1024} MiB (${skipped} bytes before them left out)` : '';
    process.stderr.write(
      `\n--- DTM server log while ${test.path} ran (${shown.length} of ${lines.length} lines${part}, /query calls left out; whole log: ${log}, copied to .test-logs/ at the end) ---\n` +
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

/** What `file` holds from `offset`, its last MAX_BYTES at most (from a line's start): the text, and how many bytes were left out before it. */
function readFrom(file, offset) {
  const size = sizeOf(file);
  if (size <= offset) return { text: '', skipped: 0 };
  const start = Math.max(offset, size - MAX_BYTES);
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(size - start);
    readSync(fd, buffer, 0, buffer.length, start);
    if (start === offset) return { text: buffer.toString('utf8'), skipped: 0 };
    const cut = buffer.indexOf(10); // the first line is likely a piece: from the next one
    return { text: cut < 0 ? '' : buffer.subarray(cut + 1).toString('utf8'), skipped: start - offset + (cut < 0 ? buffer.length : cut + 1) };
  } finally {
    closeSync(fd);
  }
}
