import { harness } from './harness.js';
import { startDtm, type DtmInfo } from './services/dtm.js';
import { runDirFrom } from './services/process.js';

/**
 * A DTM server on a MariaDB store for one test file: the harness's own when it already runs on one
 * (DTM_STORE=mysql: DTM's schema script would drop its tables), else one of its own named `name`.
 * `stop()` stops only a server of its own.
 */
export async function sqlStoreDtm(name: string): Promise<{ info: DtmInfo; stop: () => Promise<void> }> {
  if (harness().dtm.store === 'mysql') return { info: harness().dtm, stop: async () => undefined };
  const own = await startDtm(runDirFrom(harness().runDir), { name, store: 'mysql', mariadb: harness().mariadb! });
  return { info: own.info, stop: async () => void (await own.process.stop()) };
}
