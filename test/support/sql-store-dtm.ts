import { afterAll, beforeAll, beforeEach } from '@jest/globals';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDtmApp, type DtmTestApp } from './dtm-app.js';
import { harness } from './harness.js';
import { startRecorder, type Recorder } from './recorder.js';
import { startDtm, type DtmInfo } from './services/dtm.js';
import { runDirFrom } from './services/process.js';

/**
 * A DTM server on a MariaDB store for one test file: the harness's own when it already runs on one
 * (DTM_STORE=mysql: DTM's schema script would drop its tables), else one of its own named `name`.
 * DTM's schema script drops and creates the tables of the database `dtm` (a name it hard-codes),
 * so two such servers cannot run at once: a file waits until the other file's server stopped (a
 * lock directory in the run's directory). `stop()` stops only a server of its own, and lets the next one start.
 */
export async function sqlStoreDtm(name: string): Promise<{ info: DtmInfo; stop: () => Promise<void> }> {
  if (harness().dtm.store === 'mysql') return { info: harness().dtm, stop: async () => undefined };
  const lock = join(harness().runDir, 'sql-store-dtm.lock');
  for (const deadline = Date.now() + 120_000; ; ) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    const own = await startDtm(runDirFrom(harness().runDir), { name, store: 'mysql', mariadb: harness().mariadb! });
    return {
      info: own.info,
      stop: async () => {
        await own.process.stop();
        rmSync(lock, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(lock, { recursive: true, force: true });
    throw err;
  }
}

/** What {@link useSqlStoreDtmApp} gives a test file: filled in its `beforeAll`. */
export interface SqlStoreDtmApp {
  /** The DTM server on a MariaDB store. */
  dtm: DtmInfo;
  /** An app whose module talks HTTP to that server. */
  app: DtmTestApp;
  /** The branches' recorder, reset before each test. */
  recorder: Recorder;
}

/** For a test file: a DTM server on a MariaDB store ({@link sqlStoreDtm} named `name`), an app talking HTTP to it and a recorder, stopped after the file. */
export function useSqlStoreDtmApp(name: string): SqlStoreDtmApp {
  const fx = {} as SqlStoreDtmApp;
  let sqlStore: Awaited<ReturnType<typeof sqlStoreDtm>> | undefined;
  beforeAll(async () => {
    sqlStore = await sqlStoreDtm(name);
    fx.dtm = sqlStore.info;
    fx.recorder = await startRecorder();
    fx.app = await startDtmApp({ config: { serverUrl: fx.dtm.serverUrl, protocol: 'http' } });
  });
  afterAll(async () => {
    await fx.app?.close();
    await fx.recorder?.close();
    await sqlStore?.stop();
  });
  beforeEach(() => fx.recorder.reset());
  return fx;
}
