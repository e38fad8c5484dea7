import { dtmPost, harness } from './harness.js';
import type { CallHandler } from './recorder.js';

/**
 * A recorder handler standing in for an XA resource manager as DTM's Go SDK runs one. The action
 * registers its branch with the DTM server at `serverUrl` (the harness's by default; phase 2 at the
 * call's `phase2_url`), as after XA PREPARE, and answers 200 (500 when DTM refused the
 * registration); with `fail` it answers 409 "insufficient balance" and registers nothing. Phase 2
 * (commit, rollback) is answered by `phase2`, or 200.
 */
export function xaResourceManager(options: { fail?: boolean; phase2?: CallHandler; serverUrl?: string } = {}): CallHandler {
  const serverUrl = options.serverUrl ?? harness().dtm.serverUrl;
  return async (call) => {
    if (call.query.op !== 'action') return options.phase2 ? options.phase2(call) : 200;
    if (options.fail) return { status: 409, body: { message: 'insufficient balance' } };
    const registration = { gid: call.query.gid, trans_type: 'xa', branch_id: call.query.branch_id, url: call.query.phase2_url };
    return (await dtmPost('/registerBranch', registration, serverUrl)).status === 200 ? 200 : 500;
  };
}
