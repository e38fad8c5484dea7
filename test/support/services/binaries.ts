import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { DTM_SERVER_VERSION, dtmCachedBinaryPath, nestjsDtmCacheDir } from 'nestjs-dtm/testing';

/** The DTM server version the harness runs (built by scripts/setup.sh from test/support/dtm-server). */
export const DTM_VERSION = DTM_SERVER_VERSION;


/** Path of the DTM server binary: `DTM_BINARY`, else the cache scripts/setup.sh (and nestjs-dtm/testing) builds into. */
export function dtmBinaryPath(): string {
  return process.env.DTM_BINARY || dtmCachedBinaryPath();
}

/** Directories searched after PATH; scripts/setup.sh searches the same list. */
function extraDirs(): string[] {
  const pg = '/usr/lib/postgresql';
  const pgDirs = existsSync(pg)
    ? readdirSync(pg)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => join(pg, v, 'bin'))
    : [];
  return [...pgDirs, '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
}

/** First of `names` found on PATH or in the usual server directories; throws naming what to install. */
export function findBinary(names: string[], installHint: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs()];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (isExecutable(candidate)) return candidate;
    }
  }
  throw new Error(`${names.join(' / ')} not found: ${installHint} (npm test installs it when run as root on Debian)`);
}

/** Whether `file` exists and may be executed. */
export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Path of the Go peer (test/support/go-peer, DTM's Go SDK): `GO_PEER_BINARY` (one built by hand from changed sources), else the one scripts/setup.sh builds. */
export function goPeerBinaryPath(): string {
  return process.env.GO_PEER_BINARY || join(nestjsDtmCacheDir(), 'go-peer', 'go-peer');
}
