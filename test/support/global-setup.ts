import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HARNESS_ENV } from './harness.js';
import type { DtmStore } from './services/dtm.js';
import { startStack, type Stack } from './services/stack.js';

/** Jest global setup: starts the DTM server and the databases once per run (see test/support/README.md). */
export default async function globalSetup(): Promise<void> {
  const store = (process.env.DTM_STORE ?? 'boltdb') as DtmStore;
  if (!['boltdb', 'redis', 'mysql'].includes(store)) throw new Error(`DTM_STORE must be "boltdb", "redis" or "mysql", got "${store}"`);
  const started = Date.now();
  const stack = await startStack({ dtmStore: store });
  const file = join(stack.info.runDir, 'harness.json');
  writeFileSync(file, JSON.stringify(stack.info, null, 2));
  process.env[HARNESS_ENV] = file;
  (globalThis as { __NESTJS_DTM_STACK__?: Stack }).__NESTJS_DTM_STACK__ = stack;
  process.stdout.write(
    `\n[harness] DTM ${stack.info.dtm!.version} (${store}) at ${stack.info.dtm!.serverUrl}, ` +
      `postgres :${stack.info.postgres?.port}, mariadb :${stack.info.mariadb?.port}, redis :${stack.info.redis?.port} ` +
      `started in ${Date.now() - started} ms\n`,
  );
}
