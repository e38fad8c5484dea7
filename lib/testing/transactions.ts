// What DTM recorded for a transaction, read the way a test asserts on it.
import { DtmClient } from '../client/dtm.client.js';
import { resolveDtmConfig } from '../config/resolve-dtm-config.js';
import { DtmConfigError } from '../errors/dtm-config.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { FinalResult, TransactionRecord, WaitOptions } from '../transport/dtm.types.js';

/**
 * `use` with a client of the DTM server at `serverUrl` for tests (no Nest app needed), closed after
 * it: DTM never closes an idle keep-alive connection, so each call would leave one open for good.
 */
async function withClient<T>(fn: string, serverUrl: string, use: (client: DtmClient) => Promise<T>): Promise<T> {
  let config: ReturnType<typeof resolveDtmConfig>;
  try {
    config = resolveDtmConfig({ config: { serverUrl } }, {});
  } catch (err) {
    // a bad argument, not a configuration of the app's: said as the call the test made
    if (!(err instanceof DtmConfigError)) throw err;
    throw new DtmUsageError(`${fn}(serverUrl, gid): serverUrl ${err.problems.map((p) => p.message).join('; ')} (startDtmServer() gives it as serverUrl, not httpUrl)`);
  }
  const client = new DtmClient(config);
  try {
    return await use(client);
  } finally {
    client.onModuleDestroy();
  }
}

/**
 * Waits until DTM has finished transaction `gid` (`succeed` or `failed`) and returns its final status,
 * rollback reason and branches (by branch id and op, with their statuses). Throws `DtmOngoingError`
 * after `timeout` seconds (default 60).
 */
export function waitForTransaction(serverUrl: string, gid: string, options?: WaitOptions): Promise<FinalResult> {
  return withClient('waitForTransaction', serverUrl, (client) => client.waitForFinal(gid, options));
}

/** What DTM has recorded for `gid` now (its status and branches), or null when it does not know it. */
export function queryTransaction(serverUrl: string, gid: string): Promise<TransactionRecord | null> {
  return withClient('queryTransaction', serverUrl, (client) => client.query(gid));
}
