import type { LoggerService } from '@nestjs/common';

/** A Nest logger that keeps what an app logs, as `<level> <message>` lines (debug and verbose dropped). */
export class RecordingLogger implements LoggerService {
  lines: string[] = [];
  log(message: unknown) {
    this.lines.push(`log ${String(message)}`);
  }
  warn(message: unknown) {
    this.lines.push(`warn ${String(message)}`);
  }
  error(message: unknown) {
    this.lines.push(`error ${String(message)}`);
  }
  debug() {}
  verbose() {}
  /** The error lines. */
  get errors(): string[] {
    return this.lines.filter((l) => l.startsWith('error '));
  }
}
