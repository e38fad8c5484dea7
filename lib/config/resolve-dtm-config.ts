import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { load, YAMLException } from 'js-yaml';
import { DtmConfigError, type DtmConfigProblem } from '../errors/dtm-config.error.js';
import { isBarrierTableName } from '../barrier/barrier.sql.js';
import { BranchAuth, MIN_AUTH_KEY_LENGTH } from '../auth/branch-auth.js';
import { redactUrl } from '../redact.js';
import { MESSAGES } from '../dtm.messages.js';
import { DTM_CONFIG_KEYS, defaultDtmConfig, isForbiddenBranchHeader, type DtmConfigKey } from './dtm-config.keys.js';
import type { DtmConfig, DtmConfigSource } from './dtm-config.types.js';

const SECTION = 'lynx.dtm';
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g;
const WHOLE_PLACEHOLDER = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}$/;

/**
 * Reads, merges and validates the module's configuration once: defaults, then the `lynx.dtm`
 * section of `configFile` (with `${VAR}` / `${VAR:default}` taken from `env`), then the inline
 * `config`. Throws one {@link DtmConfigError} listing every problem with its path and fix.
 */
export function resolveDtmConfig(options: DtmConfigSource = {}, env: NodeJS.ProcessEnv = process.env): DtmConfig {
  const problems: DtmConfigProblem[] = [];
  const config = defaultDtmConfig();
  const sources: string[] = [];
  if (options.configFile !== undefined) {
    sources.push(`file ${options.configFile}`);
    const section = readSection(options.configFile, env, problems);
    if (section) applySection(config, section, 'yaml', problems);
  }
  if (options.config !== undefined) {
    sources.push('inline config');
    if (!isPlainObject(options.config)) {
      problems.push({ path: 'config', message: MESSAGES.configNotAnObject(describe(options.config)) });
    } else {
      applySection(config, options.config as Record<string, unknown>, 'camel', problems);
    }
  }
  if (problems.length > 0) throw new DtmConfigError(problems, sources.join(' + ') || 'defaults');
  return config;
}

function readSection(file: string, env: NodeJS.ProcessEnv, problems: DtmConfigProblem[]): Record<string, unknown> | undefined {
  const path = resolve(file);
  if (!existsSync(path)) {
    problems.push({ path: 'configFile', message: MESSAGES.configFileMissing(file, path) });
    return undefined;
  }
  let document: unknown;
  try {
    document = load(readFileSync(path, 'utf8'));
  } catch (err) {
    if (err instanceof YAMLException) {
      const line = err.mark ? err.mark.line + 1 : undefined;
      const column = err.mark ? err.mark.column + 1 : undefined;
      problems.push({ path: 'configFile', message: MESSAGES.configYamlSyntax(path, err.reason ?? err.message, line, column) });
      return undefined;
    }
    throw err;
  }
  const lynx = isPlainObject(document) ? document.lynx : undefined;
  const section = isPlainObject(lynx) ? lynx.dtm : undefined;
  if (section === undefined || section === null) {
    problems.push({ path: SECTION, message: MESSAGES.configSectionMissing(path) });
    return undefined;
  }
  if (!isPlainObject(section)) {
    problems.push({ path: SECTION, message: MESSAGES.configSectionNotMapping(describe(section)) });
    return undefined;
  }
  return substituteEnv(section, SECTION, env, problems) as Record<string, unknown>;
}

/** Replaces `${VAR}` / `${VAR:default}` in every string; a value that is only a placeholder takes the YAML type of what it becomes. */
function substituteEnv(value: unknown, path: string, env: NodeJS.ProcessEnv, problems: DtmConfigProblem[]): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(value);
    const replaced = value.replace(PLACEHOLDER, (_match, name: string, fallback: string | undefined) => {
      const fromEnv = env[name];
      if (fromEnv !== undefined) return fromEnv;
      if (fallback !== undefined) return fallback;
      problems.push({ path, message: MESSAGES.configEnvMissing(name) });
      return '';
    });
    if (!whole) return replaced;
    try {
      const typed = load(replaced);
      return typed === null || typed === undefined ? replaced : typed;
    } catch {
      return replaced;
    }
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, `${path}[${i}]`, env, problems));
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, `${path}.${k}`, env, problems)]));
  }
  return value;
}

function applySection(config: DtmConfig, section: Record<string, unknown>, naming: 'yaml' | 'camel', problems: DtmConfigProblem[]): void {
  const byName = new Map(DTM_CONFIG_KEYS.map((k) => [naming === 'yaml' ? k.yaml : k.camel, k]));
  const pathOf = (name: string) => (naming === 'yaml' ? `${SECTION}.${name}` : `config.${name}`);
  for (const [name, raw] of Object.entries(section)) {
    const key = byName.get(name);
    if (!key) {
      const suggestion = closest(name, [...byName.keys()]);
      problems.push({ path: pathOf(name), message: MESSAGES.configUnknownKey([...byName.keys()], suggestion) });
      continue;
    }
    if (raw === undefined) continue;
    const checked = checkValue(key, raw);
    if ('problem' in checked) problems.push({ path: pathOf(name), message: checked.problem });
    else (config as unknown as Record<string, unknown>)[key.camel] = checked.value;
  }
}

function checkValue(key: DtmConfigKey, raw: unknown): { value: unknown } | { problem: string } {
  const got = describe(raw);
  switch (key.kind) {
    case 'boolean':
      return typeof raw === 'boolean' ? { value: raw } : { problem: MESSAGES.configWant('true or false', got) };
    case 'http-url': {
      const want = `an http(s) URL such as ${key.example}`;
      if (typeof raw !== 'string') return { problem: MESSAGES.configWant(want, got) };
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return { problem: MESSAGES.configWant(want, got) };
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return { problem: MESSAGES.configWant(want, got) };
      return { value: raw.replace(/\/+$/, '') };
    }
    case 'host-port': {
      const match = typeof raw === 'string' ? /^(\[[^\]]+\]|[^:/\s]+):(\d+)$/.exec(raw) : null;
      const port = match ? Number(match[2]) : NaN;
      return match && port > 0 && port < 65536 ? { value: raw } : { problem: MESSAGES.configWant('host:port such as localhost:36790', got) };
    }
    case 'protocol':
      return raw === 'http' || raw === 'grpc' ? { value: raw } : { problem: MESSAGES.configWant('http or grpc', got) };
    case 'seconds':
    case 'whole-seconds': {
      if (typeof raw !== 'number' || !Number.isFinite(raw)) return { problem: MESSAGES.configWant('a number of seconds', got) };
      if (raw <= 0) return { problem: MESSAGES.configPositive(raw) };
      if (key.kind === 'whole-seconds' && !Number.isInteger(raw)) return { problem: MESSAGES.configWholeSeconds(raw) };
      return { value: raw };
    }
    case 'sql-table': {
      return isBarrierTableName(raw) ? { value: raw } : { problem: MESSAGES.configWant(`a table name or schema.name (letters, digits, _), such as ${key.example}`, got) };
    }
    case 'secret-list': {
      // never shows a value: only its position and length
      if (typeof raw === 'string') raw = [raw];
      if (!Array.isArray(raw)) return { problem: MESSAGES.configWant(`a list of keys, e.g. ${key.example}`, raw === null ? 'null' : typeof raw === 'object' ? 'a mapping' : typeof raw) };
      const keys = (raw as unknown[]).filter((k) => k !== '' && k !== null);
      const bad = keys.map((k, i) => (typeof k !== 'string' ? `#${i + 1}: ${typeof k} (quote it)` : k.length < MIN_AUTH_KEY_LENGTH ? `#${i + 1}: ${k.length} characters` : undefined)).filter((b) => b !== undefined);
      if (keys.length === 0) return { problem: MESSAGES.configAuthKeysEmpty() };
      if (bad.length > 0) return { problem: MESSAGES.configAuthKeysBad(bad, MIN_AUTH_KEY_LENGTH) };
      return { value: new BranchAuth(keys as string[]) };
    }
    case 'header-list': {
      if (!Array.isArray(raw)) return { problem: MESSAGES.configWant('a list of header names, e.g. [X-Request-ID]', got) };
      const bad = raw.filter((h) => typeof h !== 'string' || !HEADER_NAME.test(h));
      if (bad.length > 0) return { problem: MESSAGES.configBadHeaders(bad.map(describe)) };
      const forbidden = (raw as string[]).filter(isForbiddenBranchHeader);
      if (forbidden.length > 0) return { problem: MESSAGES.configForbiddenHeaders(forbidden) };
      return { value: [...new Set((raw as string[]).map((h) => h.toLowerCase()))] };
    }
  }
}

/** The known name closest to `name` (same letters ignoring case and `_`/`-`, or a small edit distance). */
function closest(name: string, known: string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const same = known.find((k) => squash(k) === squash(name));
  if (same) return same;
  let best: { key: string; distance: number } | undefined;
  for (const key of known) {
    const distance = editDistance(name.toLowerCase(), key.toLowerCase());
    if (!best || distance < best.distance) best = { key, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.key : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(redactUrl(value));
  if (Array.isArray(value)) return `a list (${JSON.stringify(value)})`;
  if (value === null) return 'null';
  if (typeof value === 'object') return `a mapping (${JSON.stringify(value)})`;
  return `${typeof value} ${String(value)}`;
}
