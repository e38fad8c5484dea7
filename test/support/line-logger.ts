// A Nest logger that keeps every line, as `level [context] message`, for assertions on what the
// module logs (its contexts: DtmTrace, DtmBranch, DtmStartup, ...).
import type { LoggerService } from '@nestjs/common';

/** Keeps every line logged, with its level and context. */
export class LineLogger implements LoggerService {
  lines: string[] = [];
  log(message: unknown, context?: string) {
    this.lines.push(`log [${context}] ${String(message)}`);
  }
  warn(message: unknown, context?: string) {
    this.lines.push(`warn [${context}] ${String(message)}`);
  }
  error(message: unknown, ...rest: unknown[]) {
    this.lines.push(`error [${String(rest[rest.length - 1])}] ${String(message)}`);
  }
  debug(message: unknown, context?: string) {
    this.lines.push(`debug [${context}] ${String(message)}`);
  }
  verbose() {}
}
