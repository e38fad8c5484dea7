import type { DtmConfig } from '../config/dtm-config.types.js';
import type { FinalResult, WaitOptions } from '../client/dtm-client.types.js';
import type { DtmHttp } from '../client/dtm-http.js';

/** What a transaction builder needs from the client that made it (internal). */
export interface TransactionRuntime {
  readonly config: DtmConfig;
  readonly http: DtmHttp;
  /** Headers to pass on to branches from the request being served (none outside a request). */
  passThroughHeaders(): Record<string, string>;
  waitForFinal(gid: string, options?: WaitOptions): Promise<FinalResult>;
}
