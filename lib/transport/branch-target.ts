// What a transaction step, a TCC branch or an XA branch points at, parsed once.
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';

/** A target DTM (or the module) can call. `value` is what DTM stores. */
export type BranchTarget =
  /** `http://...` / `https://...`: called over HTTP, whatever the transaction's protocol. */
  | { kind: 'http'; value: string }
  /** `host:port/package.Service/Method`: called over gRPC (only in a gRPC transaction). */
  | { kind: 'grpc'; value: string; server: string; method: string }
  /** `topic://name`: every subscriber of the topic (msg branches). */
  | { kind: 'topic'; value: string }
  /** The empty string: nothing to call, DTM records the step as done. */
  | { kind: 'none'; value: '' };

/** A parsed target, or the name of a decorated branch still to be resolved. */
export type ParsedTarget = BranchTarget | { kind: 'name'; name: string };

const GRPC_TARGET = /^((?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5})(\/[A-Za-z_][\w.]*\/[A-Za-z_]\w*)$/;
const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
/** What no target DTM can call holds: spaces and control characters (a CR / LF would end DTM's request line). */
const SPACE_OR_CONTROL = /[\x00-\x20\x7f]/;

/**
 * Reads a target: an `http(s)://` URL, a gRPC `host:port/package.Service/Method`, `topic://name`,
 * `''` (nothing to call), or else the name of a decorated branch. A scheme is taken in any case and
 * written in lower case in `value` (`HTTP://Host/x` → `http://Host/x`), the only spelling DTM reads.
 * A URL of another scheme (DTM's Go drivers' `etcd://`, `discovery://`, ...) is refused: neither
 * DTM's default driver nor this module calls it.
 */
export function parseTarget(target: string, gid?: string): ParsedTarget {
  if (typeof target !== 'string') throw new DtmUsageError(MESSAGES.targetNotString(target), { gid });
  if (target === '') return { kind: 'none', value: '' };
  if (SPACE_OR_CONTROL.test(target)) throw new DtmUsageError(MESSAGES.targetControl(target), { gid });
  // the usual step, without a regex: a lower-case http(s) URL
  if (target.startsWith('http://') || target.startsWith('https://')) return { kind: 'http', value: target };
  const scheme = SCHEME.exec(target)?.[1].toLowerCase();
  // DTM compares http://, https:// and topic:// case-sensitively: the value it stores and the module calls has the scheme in lower case
  if (scheme === 'http' || scheme === 'https') return { kind: 'http', value: scheme + target.slice(scheme.length) };
  if (scheme === 'topic') return { kind: 'topic', value: scheme + target.slice(scheme.length) };
  if (scheme) throw new DtmUsageError(MESSAGES.targetScheme(target), { gid });
  const grpc = GRPC_TARGET.exec(target);
  if (grpc) return { kind: 'grpc', value: target, server: grpc[1], method: grpc[2] };
  if (target.includes('/')) throw new DtmUsageError(MESSAGES.targetMalformed(target), { gid });
  return { kind: 'name', name: target };
}

/**
 * Refuses (`DtmUsageError`) a step or branch (`what()` names it) whose ops (`targets`, by op) are called over
 * different transports (gRPC and HTTP): DTM stores one payload per saga step and per TCC branch and
 * sends those bytes to each of its ops, so they can be encoded for one transport only. Empty
 * targets (nothing to call) do not count.
 */
export function assertOneTransport(what: () => string, targets: Record<string, BranchTarget | undefined>, gid?: string): void {
  let kind: BranchTarget['kind'] | undefined;
  for (const op in targets) {
    const target = targets[op];
    if (!target || target.kind === 'none') continue;
    if (kind === undefined) kind = target.kind;
    else if (target.kind !== kind) {
      const called = Object.entries(targets).filter(([, t]) => t && t.kind !== 'none') as [string, BranchTarget][];
      throw new DtmUsageError(MESSAGES.mixedTransports(what(), called.map(([o, t]) => [o, t.value])), { gid });
    }
  }
}

/** Reads a target that must not be a branch name (a resolved name, a phase-2 URL, ...). */
export function parseAddress(target: string, gid?: string): BranchTarget {
  const parsed = parseTarget(target, gid);
  if (parsed.kind === 'name') throw new DtmUsageError(MESSAGES.targetMalformed(target), { gid });
  return parsed;
}
