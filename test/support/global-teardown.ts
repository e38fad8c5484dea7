import { join } from 'node:path';
import type { Stack } from './services/stack.js';

/** Jest global teardown: stops everything the global setup started and keeps the server logs in `.test-logs/`. */
export default async function globalTeardown(): Promise<void> {
  const holder = globalThis as { __NESTJS_DTM_STACK__?: Stack };
  const stack = holder.__NESTJS_DTM_STACK__;
  holder.__NESTJS_DTM_STACK__ = undefined;
  await stack?.stop({ keepLogsIn: join(process.cwd(), '.test-logs') });
}
