// Why a transaction did not finish in time: its unfinished branches from DTM's record, each with
// the cause the module could find (the failure its handler in this process answered, or a probe).
import { redactUrl, withoutTrailingSlashes } from '../redact.js';
import type { TransactionRecord } from '../transport/dtm.types.js';
import { recordedBranchFailure } from './branch-failures.js';
import { hostPortOf, probeConnect, probeGrpc, probeOwnRoute, type ProbeResult } from './probe.js';
import { answerMessage } from './failure-reason.js';
import { BRANCH_KEYS_MISSING, MESSAGES } from '../dtm.messages.js';
import { shownBranchId } from '../auth/branch-auth.js';

/** An unfinished branch of a transaction that did not finish in time, as `DtmOutcomeUnknownError.unfinished` lists it. */
export interface UnfinishedBranch {
  /** As DTM records it; a TCC branch id of authenticated calls without its token (`01-<token>`). */
  branchId: string;
  /** The op DTM is still calling (`action`, `compensate`, `confirm`, ...). */
  op: string;
  /** The branch's name: its decorator's name for a branch of this app, else the last part of its target. */
  name: string;
  /** Its target as DTM stores it (credentials redacted). */
  target: string;
  /** Why it does not finish, when the module could find out. */
  cause?: string;
}

/** One of this app's decorated HTTP branch routes, found by its URL. */
export interface OwnRoute {
  name: string;
  /** `Controller.method`. */
  handler: string;
  /** The route's HTTP method (`POST`, `GET`, `ALL`, ...). */
  method: string;
}

/** What the diagnosis may use. */
export interface DiagnosisScope {
  /** This app's decorated route at `url`, if it is one (probed with a keyless request). */
  ownRoute(url: string): OwnRoute | undefined;
  /** Other targets this process put into the transaction (probed with a bare connection). */
  targets: ReadonlySet<string>;
  /** How long one probe may take, in ms. */
  probeMs: number;
}

const FORWARD = new Set(['action', 'try', 'confirm', 'commit', 'msg']);
const UNDO = new Set(['compensate', 'cancel', 'rollback']);
/** Most branches named in one error. */
const MAX_NAMED = 5;
/** What DTM sends a message's back-check: nothing (so it calls it with GET). */
const EMPTY = new Uint8Array(0);

/** The branches DTM is still working on in `record`, each with what the module found out about it. */
export async function diagnoseUnfinished(record: TransactionRecord, scope: DiagnosisScope): Promise<UnfinishedBranch[]> {
  const undo = record.status === 'aborting';
  let pending: { branchId: string; op: string; url?: string; data: Uint8Array }[];
  // a prepared message: DTM calls none of its branches before its back-check says the local transaction committed
  if (record.transType === 'msg' && record.status === 'prepared') pending = record.queryPrepared ? [{ branchId: '00', op: 'msg', url: record.queryPrepared, data: EMPTY }] : [];
  else pending = record.branches.filter((b) => b.status === 'prepared' && (undo ? UNDO : FORWARD).has(b.op) && b.url);
  // a saga without concurrency runs its actions in order: the first unfinished one holds the rest up. DTM reads a
  // saga's concurrency from its custom data (the top-level concurrent, which the gRPC API lacks, is for messages)
  if (record.transType === 'saga' && !undo && (record.customData as { concurrent?: unknown } | null | undefined)?.concurrent !== true) pending = pending.slice(0, 1);
  pending = pending.slice(0, MAX_NAMED);
  const probes = new Map<string, Promise<ProbeResult | undefined>>();
  const probe = (url: string, method: 'GET' | 'POST') => {
    const key = `${method} ${url}`;
    let p = probes.get(key);
    if (!p) probes.set(key, (p = probeTarget(url, method, scope).catch(() => undefined)));
    return p;
  };
  return Promise.all(
    pending.map(async (b) => {
      const url = b.url!;
      const own = scope.ownRoute(url);
      // a TCC branch id as logs show it, without its token (`01-<token>`); the record of its failure is kept under the whole id
      const target = redactUrl(url); // named from it too: a URL without a path would name the branch with its credentials
      const branch: UnfinishedBranch = { branchId: shownBranchId(b.branchId), op: b.op, name: own?.name ?? nameOf(target), target };
      const recorded = recordedBranchFailure(record.gid, b.branchId, b.op);
      // DTM calls POST when the stored payload is not empty (and always for XA), else GET
      const method = b.data.length > 0 || record.transType === 'xa' ? 'POST' : 'GET';
      if (recorded) {
        branch.cause = `${recorded.handler} failed (${record.protocol === 'grpc' && !/^https?:/i.test(url) ? 'gRPC status' : 'HTTP'} ${recorded.status}): ${recorded.message}`;
        return branch;
      }
      const result = own || scope.targets.has(url) ? await probe(url, method) : undefined;
      if (result) branch.cause = describeProbe(result, method, own);
      return branch;
    }),
  );
}

/** A keyless request to an own route; a bare connection to any other target. */
async function probeTarget(url: string, method: 'GET' | 'POST', scope: DiagnosisScope): Promise<ProbeResult | undefined> {
  if (scope.ownRoute(url)) return probeOwnRoute(url, method, scope.probeMs);
  const where = hostPortOf(url);
  if (!where) return undefined;
  // a gRPC target (host:port/package.Service/Method): also whether what listens there speaks HTTP/2
  return /^https?:/i.test(url) ? probeConnect(where.host, where.port, scope.probeMs) : probeGrpc(where.host, where.port, scope.probeMs);
}

/** The sentence a probe's result gives. */
export function describeProbe(result: ProbeResult, method: string, own: OwnRoute | undefined): string | undefined {
  switch (result.kind) {
    case 'dns':
      return `its host ${result.host} does not resolve here (${result.code}); if DTM cannot resolve it either, set lynx.dtm.app_url to an address DTM can reach`;
    case 'refused':
      return `connection refused at ${result.address}: nothing listens there (is the app up, and is app_url's port the one it listens on?)`;
    case 'timeout':
      return `no answer from ${result.address} within ${result.ms} ms`;
    case 'unreachable':
      return `${result.address} cannot be reached (${result.code})`;
    case 'connected':
      return undefined;
    case 'not-grpc':
      return MESSAGES.grpcTargetNotGrpc(result.address);
    case 'answered': {
      const message = answerMessage(result.body).slice(0, 300);
      if (result.status === 400 && result.body.includes(BRANCH_KEYS_MISSING)) {
        return `${own?.handler ?? 'the route'} is reachable and answers ${method}; the cause is in the handler or in DTM's log`;
      }
      if (result.status === 403 || result.status === 401) {
        return MESSAGES.probeRefusedBeforeHandler(method, result.status, own?.handler ?? 'the handler', message);
      }
      if (result.status === 404) {
        return `404 for ${method}: no route serves ${method} at this path${own ? ` (${own.handler} is @${titleCase(own.method)}; DTM calls POST when the payload is not empty, GET when it is)` : ''}; check app_url, the global prefix and the route's method`;
      }
      if (result.status === 405) return `405 for ${method}: the route does not serve ${method} (DTM calls POST when the payload is not empty, GET when it is)`;
      return `${method} answered ${result.status}: ${message}`;
    }
  }
}

function titleCase(method: string): string {
  return method.charAt(0) + method.slice(1).toLowerCase();
}

/** The last part of a target: `http://bank/api/withdraw` → `withdraw`, `host:1/bank.Bank/Withdraw` → `Withdraw`. */
function nameOf(target: string): string {
  const path = withoutTrailingSlashes(target.replace(/[?#].*$/, ''));
  return path.slice(path.lastIndexOf('/') + 1) || target;
}

/** The error message's list of unfinished branches, a sentence of its own after the message it ends. */
export function describeUnfinished(branches: readonly UnfinishedBranch[]): string {
  if (branches.length === 0) return '';
  const lines = branches.map((b) => `branch ${b.branchId} "${b.name}" (op ${b.op}, ${b.target})${b.cause ? `: ${b.cause}` : ''}`);
  return `. Unfinished: ${lines.join('; ')}`;
}
