import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** The size of `file` now: pass it to {@link logLines} to read only what is written after it. */
export function logEnd(file: string): number {
  const fd = openSync(file, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/**
 * The lines of `file` from byte `from` on (0: the whole file; a {@link logEnd} taken earlier: what
 * was written since) that hold `needle`, read as bytes and decoded only when they hold it. The shared
 * DTM server's log reaches hundreds of MB (it logs whole payloads, some of 4 MiB, at each query of
 * them): read whole as one string it blocked the test's event loop for seconds (the app under test
 * too: its calls to DTM timed out) and would pass V8's longest string.
 */
export function logLines(file: string, from: number, needle: string): string[] {
  const fd = openSync(file, 'r');
  try {
    const bytes = Buffer.alloc(Math.max(0, fstatSync(fd).size - from));
    let read = 0;
    while (read < bytes.length) {
      const n = readSync(fd, bytes, read, bytes.length - read, from + read);
      if (n === 0) break;
      read += n;
    }
    const wanted = Buffer.from(needle);
    const lines: string[] = [];
    for (let at = bytes.indexOf(wanted, 0); at >= 0 && at < read; ) {
      const start = bytes.lastIndexOf(10, at) + 1;
      let end = bytes.indexOf(10, at);
      if (end < 0 || end > read) end = read;
      lines.push(bytes.toString('utf8', start, end));
      at = bytes.indexOf(wanted, end);
    }
    return lines;
  } finally {
    closeSync(fd);
  }
}

/** The last `max` bytes of `file` (all of it when smaller), as text: the end of a log that may be too large to read whole. */
export function logEndText(file: string, max: number): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const bytes = Buffer.alloc(Math.min(size, max));
    const read = readSync(fd, bytes, 0, bytes.length, size - bytes.length);
    return bytes.toString('utf8', 0, read);
  } finally {
    closeSync(fd);
  }
}
