import type { BranchKind } from '../branches/branch.types.js';
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
  /** The URL of this app's decorated branch `name` of `kind` (throws for an unknown name). */
  branchUrl(kind: BranchKind, name: string): string;
  /** Whether this app has a decorated branch `name` of `kind`. */
  hasBranch(kind: BranchKind, name: string): boolean;
}

/** Whether `target` is a URL (`http://...`, `topic://...`) rather than the name of a decorated branch. */
export function isUrl(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(target);
}
