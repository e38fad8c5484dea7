import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { CORE_SCHEMA, load, mergeTag, YAMLException } from 'js-yaml';
import { DtmConfigError, type DtmConfigProblem } from '../errors/dtm-config.error.js';
import { isBarrierTableName } from '../barrier/barrier.sql.js';
import { BranchAuth, MIN_AUTH_KEY_LENGTH } from '../auth/branch-auth.js';
import { redactText, redactUrl, shorten, withoutTrailingSlashes } from '../redact.js';
import { MESSAGES } from '../dtm.messages.js';
import { DEFAULT_MANIFEST_REFRESH, DTM_CONFIG_KEYS, NODE_TIMER, NODE_TIMER_MAX_MS, defaultDtmConfig, isForbiddenBranchHeader, type DtmConfigKey } from './dtm-config.keys.js';
import type { DtmConfig, DtmConfigSource, DtmServiceConfig } from './dtm-config.types.js';
import { SERVICE_NAME } from '../contracts/branch-contract.js';
import { messageOf } from '../errors/text-of.js';

const SECTION = 'lynx.dtm';
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g;
/** Where the branch auth keys are: a placeholder there is never read as YAML. */
const SECRETS_PATH = 'lynx.dtm.branch_auth_keys';
const WHOLE_PLACEHOLDER = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}$/;
/** Spaces and control characters, which `new URL()` silently strips or encodes but a request line cannot carry. */
const URL_SPACES = /[\s\x00-\x1f\x7f]/;
/** Largest configuration file read (the file may hold the whole app's configuration). */
const MAX_FILE_BYTES = 1024 * 1024;
/**
 * Most values the `lynx.dtm` section may hold with its YAML aliases expanded. js-yaml shares an
 * aliased value instead of copying it, so a 2 KB file of aliases of aliases loads at once as a
 * graph of billions of paths; walking it as a tree (the `${VAR}` substitution, printing a value in
 * an error) would never end. The walk counts what it visits and stops there.
 */
const MAX_SECTION_VALUES = 10_000;
/**
 * The schema the file is read with: YAML 1.2's core schema plus merge keys (`<<: *defaults`), which
 * Go's yaml.v3 (the Go-Lynx side reading the same file) applies and js-yaml 5 no longer does by
 * default. A key given both ways takes the value given directly. Duplicate keys are still refused,
 * and js-yaml bounds the keys merged in one load (`maxTotalMergeKeys`, 10000).
 */
const FILE_SCHEMA = CORE_SCHEMA.withTags(mergeTag);

/**
 * Reads, merges and validates the module's configuration once: defaults, then the `lynx.dtm`
 * section of `configFile` (with `${VAR}` / `${VAR:default}` taken from `env`), then the inline
 * `config`. Throws one {@link DtmConfigError} listing every problem with its path and fix.
 */
export function resolveDtmConfig(options: DtmConfigSource = {}, env: NodeJS.ProcessEnv = process.env): DtmConfig {
  const problems: DtmConfigProblem[] = [];
  const config = defaultDtmConfig();
  const sources: string[] = [];
  if (options === null || typeof options !== 'object') {
    throw new DtmConfigError([{ path: 'options', message: MESSAGES.configWant('an object such as { configFile: "config.yaml" } or { config: { ... } }', describe(options)) }], 'options');
  }
  if (options.configFile !== undefined) {
    sources.push(`file ${options.configFile}`);
    const section = readSection(options.configFile, env, problems);
    if (section) applySection(config, section, 'yaml', problems);
  }
  if ('section' in options) {
    sources.push('section');
    const section = loadedSection(options.section, env, problems);
    if (section) applySection(config, section, 'yaml', problems);
  }
  if ('config' in options && options.config === undefined && sources.length === 0) {
    // config: undefined as the only source (ConfigService.get of a missing key): not the silent defaults
    sources.push('inline config');
    problems.push({ path: 'config', message: MESSAGES.configInlineUndefined() });
  } else if (options.config !== undefined) {
    sources.push('inline config');
    if (!isPlainObject(options.config)) {
      problems.push({ path: 'config', message: MESSAGES.configNotAnObject(describe(options.config)) });
    } else {
      applySection(config, options.config as Record<string, unknown>, 'camel', problems);
    }
  }
  if ('configFile' in options && options.configFile === undefined && !('section' in options) && options.config === undefined) {
    // configFile: undefined with nothing else (a path read from a variable that is not set): not the silent defaults
    sources.push('configFile');
    problems.push({ path: 'configFile', message: MESSAGES.configFileUndefined() });
  }
  if (config.branchAuthCheckActions && !config.branchAuthKeys) problems.push({ path: `${SECTION}.branch_auth_check_actions`, message: MESSAGES.configCheckActionsWithoutKeys() });
  // the manifest (GET /dtm/branches, nestjs_dtm.Branches/Manifest) is served to anyone without credentials, with app_url in every HTTP target
  if (config.publishBranches && config.appUrl !== undefined && hasCredentials(config.appUrl)) problems.push({ path: `${SECTION}.app_url`, message: MESSAGES.configPublishedAppUrlCredentials(describe(config.appUrl)) });
  if (problems.length > 0) throw new DtmConfigError(problems, sources.join(' + ') || 'defaults');
  return config;
}

function readSection(file: string, env: NodeJS.ProcessEnv, problems: DtmConfigProblem[]): Record<string, unknown> | undefined {
  if (typeof file !== 'string' || file === '') {
    problems.push({ path: 'configFile', message: MESSAGES.configWant('the path of a YAML file', describe(file)) });
    return undefined;
  }
  const path = resolve(file);
  const text = readConfigFile(file, path, problems);
  if (text === undefined) return undefined;
  let document: unknown;
  try {
    document = load(text, { schema: FILE_SCHEMA });
  } catch (err) {
    if (err instanceof YAMLException) {
      const line = err.mark ? err.mark.line + 1 : undefined;
      const column = err.mark ? err.mark.column + 1 : undefined;
      problems.push({ path: 'configFile', message: MESSAGES.configYamlSyntax(path, redactText(err.reason ?? err.message), line, column) });
      return undefined;
    }
    throw err;
  }
  const lynx = isPlainObject(document) ? document.lynx : undefined;
  const section = isPlainObject(lynx) ? lynx.dtm : undefined;
  if (section === undefined || section === null) {
    // `dtm:` with nothing under it (every key commented out) is there, and null
    problems.push({ path: SECTION, message: section === null ? MESSAGES.configSectionEmpty(path) : MESSAGES.configSectionMissing(path) });
    return undefined;
  }
  if (!isPlainObject(section)) {
    problems.push({ path: SECTION, message: MESSAGES.configSectionNotMapping(describe(section)) });
    return undefined;
  }
  return expandSection(section, env, problems);
}

/** The `lynx.dtm` section given as an object (`section`), checked and expanded as a file's is. */
function loadedSection(section: unknown, env: NodeJS.ProcessEnv, problems: DtmConfigProblem[]): Record<string, unknown> | undefined {
  if (section === undefined || section === null) {
    problems.push({ path: SECTION, message: section === null ? MESSAGES.configSectionNull() : MESSAGES.configSectionUndefined(String(section)) });
    return undefined;
  }
  if (!isPlainObject(section)) {
    problems.push({ path: SECTION, message: MESSAGES.configSectionNotMapping(describe(section)) });
    return undefined;
  }
  return expandSection(section, env, problems);
}

/** The section with its aliases expanded and `${VAR}` replaced; undefined when the walk gave up. */
function expandSection(section: Record<string, unknown>, env: NodeJS.ProcessEnv, problems: DtmConfigProblem[]): Record<string, unknown> | undefined {
  const walk: Walk = { env, problems, left: MAX_SECTION_VALUES, ancestors: new Set(), stopped: false };
  const expanded = expand(section, SECTION, walk) as Record<string, unknown>;
  return walk.stopped ? undefined : expanded;
}

/** The text of the configuration file, or a problem naming its path and what is wrong with it. */
function readConfigFile(file: string, path: string, problems: DtmConfigProblem[]): string | undefined {
  const unreadable = (why: string): undefined => {
    problems.push({ path: 'configFile', message: MESSAGES.configFileUnreadable(file, path, why) });
    return undefined;
  };
  try {
    const stat = statSync(path);
    if (stat.isDirectory()) return unreadable('is a directory');
    if (!stat.isFile()) return unreadable('is not a regular file (a device, a pipe or a socket)');
    if (stat.size > MAX_FILE_BYTES) return unreadable(`has ${stat.size} bytes, over the ${MAX_FILE_BYTES} a configuration file may have`);
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') problems.push({ path: 'configFile', message: MESSAGES.configFileMissing(file, path) });
    else if (code === 'EACCES' || code === 'EPERM') unreadable('cannot be read: permission denied');
    else unreadable(`cannot be read (${code ?? messageOf(err)})`);
    return undefined;
  }
}

/** The state of one walk of the `lynx.dtm` section. */
interface Walk {
  env: NodeJS.ProcessEnv;
  problems: DtmConfigProblem[];
  /** How many more values the walk may visit. */
  left: number;
  /** The lists and mappings on the path from the section to the value visited (a recursive alias comes back to one). */
  ancestors: Set<object>;
  /** Set when the walk gave up (too many values, a recursive alias): the section is not used. */
  stopped: boolean;
}

/**
 * A copy of the section as a tree: aliases expanded (at most {@link MAX_SECTION_VALUES} values, no
 * recursion), and `${VAR}` / `${VAR:default}` replaced in every string (a value that is only a
 * placeholder takes the YAML type of what it becomes; one that becomes empty is left out).
 */
function expand(value: unknown, path: string, walk: Walk): unknown {
  if (walk.stopped) return undefined;
  if (--walk.left < 0) {
    walk.stopped = true;
    walk.problems.push({ path: SECTION, message: MESSAGES.configAliasBomb(MAX_SECTION_VALUES) });
    return undefined;
  }
  if (typeof value === 'string') return substituteEnv(value, path, walk);
  if (typeof value !== 'object' || value === null || value instanceof Date) return value;
  if (walk.ancestors.has(value)) {
    walk.stopped = true;
    walk.problems.push({ path, message: MESSAGES.configAliasRecursive() });
    return undefined;
  }
  walk.ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((item, i) => expand(item, `${path}[${i}]`, walk)).filter((item) => item !== undefined);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v, `${path}.${shorten(redactUrl(k))}`, walk)]));
  } finally {
    walk.ancestors.delete(value);
  }
}

/**
 * `value` with `${VAR}` / `${VAR:default}` replaced; a value that is only a placeholder takes the
 * YAML type of what it becomes (a number, a boolean, a list; text stays exactly as the environment
 * gave it, and `branch_auth_keys` are always text), and is not set (undefined) when it becomes the empty string.
 */
function substituteEnv(value: string, path: string, walk: Walk): unknown {
  const whole = WHOLE_PLACEHOLDER.exec(value);
  const replaced = value.replace(PLACEHOLDER, (_match, name: string, fallback: string | undefined) => {
    const fromEnv = walk.env[name];
    // a branch_auth_keys item required (no default) but set empty: refused, never dropped (the next key would sign)
    if (fromEnv === '' && fallback === undefined && path.startsWith(SECRETS_PATH)) walk.problems.push({ path, message: MESSAGES.configEnvEmptyKey(name) });
    if (fromEnv !== undefined) return fromEnv;
    if (fallback !== undefined) return fallback;
    walk.problems.push({ path, message: MESSAGES.configEnvMissing(name) });
    return '';
  });
  if (!whole) return replaced;
  if (replaced === '') return undefined; // `${APP_URL:}`: the key is not set, its default applies
  if (path.startsWith(SECRETS_PATH)) return replaced; // a key is text, whatever it looks like (all digits, `#`)
  try {
    // an environment variable holds one value: no aliases, little nesting
    const typed = load(replaced, { maxAliases: 0, maxDepth: 4 });
    if (typed === null || typed === undefined) return replaced;
    // YAML read text out of it (a ` #` comment cut, quotes or escapes taken off): the value is the text as it is
    return typeof typed === 'string' && typed !== replaced.trim() ? replaced : typed;
  } catch {
    return replaced;
  }
}

function applySection(config: DtmConfig, section: Record<string, unknown>, naming: 'yaml' | 'camel', problems: DtmConfigProblem[]): void {
  const byName = new Map(DTM_CONFIG_KEYS.map((k) => [naming === 'yaml' ? k.yaml : k.camel, k]));
  const pathOf = (name: string) => `${naming === 'yaml' ? SECTION : 'config'}.${shorten(redactUrl(name))}`;
  for (const [name, raw] of Object.entries(section)) {
    const key = byName.get(name);
    if (!key) {
      const suggestion = closest(name, [...byName.keys()]);
      problems.push({ path: pathOf(name), message: MESSAGES.configUnknownKey([...byName.keys()], suggestion) });
      continue;
    }
    if (raw === undefined) continue;
    if (key.kind === 'services') {
      const services = checkServices(raw, pathOf(name), problems);
      if (services) config.services = services;
      continue;
    }
    const checked = checkValue(key, raw);
    if ('problem' in checked) problems.push({ path: pathOf(name), message: checked.problem });
    else (config as unknown as Record<string, unknown>)[key.camel] = checked.value;
  }
}

/** The keys of one `services.<name>` entry, checked as the top-level keys of their kinds are. */
const SERVICE_KEYS: readonly DtmConfigKey[] = [
  { yaml: 'url', camel: 'appUrl', kind: 'http-url', example: 'http://bank:3000' },
  { yaml: 'grpc', camel: 'grpcAppAddress', kind: 'host-port' },
  { yaml: 'refresh', camel: 'timeout', kind: 'seconds', range: { min: 0.001, max: NODE_TIMER_MAX_MS / 1000, why: NODE_TIMER } },
];

/**
 * `services`: a mapping of service names to `{ url | grpc, refresh? }`; every problem is reported
 * with its path (`lynx.dtm.services.bank.url`). Undefined when there was a problem.
 */
function checkServices(raw: unknown, path: string, problems: DtmConfigProblem[]): DtmConfig['services'] | undefined {
  if (!isPlainObject(raw)) {
    problems.push({ path, message: MESSAGES.configWant('a mapping of service names to { url: http://host:port } or { grpc: host:port }', describe(raw)) });
    return undefined;
  }
  const before = problems.length;
  const services: DtmConfig['services'] = {};
  for (const [name, entry] of Object.entries(raw)) {
    const at = `${path}.${shorten(redactUrl(name))}`;
    if (!SERVICE_NAME.test(name)) problems.push({ path: at, message: MESSAGES.configServiceName(describe(name)) });
    if (!isPlainObject(entry)) {
      problems.push({ path: at, message: MESSAGES.configWant('a mapping such as { url: http://bank:3000 } or { grpc: stock:50051 }', describe(entry)) });
      continue;
    }
    const service: DtmServiceConfig = { refresh: DEFAULT_MANIFEST_REFRESH };
    for (const [field, value] of Object.entries(entry)) {
      const key = SERVICE_KEYS.find((k) => k.yaml === field);
      if (!key) {
        problems.push({ path: `${at}.${shorten(redactUrl(field))}`, message: MESSAGES.configUnknownKey(SERVICE_KEYS.map((k) => k.yaml), closest(field, SERVICE_KEYS.map((k) => k.yaml))) });
        continue;
      }
      if (value === undefined) continue;
      const checked = checkValue(key, value);
      if ('problem' in checked) problems.push({ path: `${at}.${field}`, message: checked.problem });
      else if (field === 'url' && hasCredentials(checked.value as string)) problems.push({ path: `${at}.${field}`, message: MESSAGES.configServiceUrlCredentials(describe(value)) });
      else (service as unknown as Record<string, unknown>)[field] = checked.value;
    }
    const given = ['url', 'grpc'].filter((k) => entry[k] !== undefined);
    if (given.length !== 1) problems.push({ path: at, message: MESSAGES.configServiceWhere(given.length) });
    services[name] = service;
  }
  return problems.length > before ? undefined : services;
}

function checkValue(key: DtmConfigKey, raw: unknown): { value: unknown } | { problem: string } {
  const got = describe(raw);
  switch (key.kind) {
    case 'boolean':
      return typeof raw === 'boolean' ? { value: raw } : { problem: MESSAGES.configWant('true or false', got) };
    case 'count': {
      const range = key.range!;
      if (typeof raw !== 'number' || !Number.isInteger(raw)) return { problem: MESSAGES.configWant(`a whole number from ${range.min} to ${range.max}`, got) };
      if (raw < range.min || raw > range.max) return { problem: MESSAGES.configRange(range.min, range.max, 'tries', range.why, raw) };
      return { value: raw };
    }
    case 'dtm-url': {
      const checked = checkValue({ ...key, kind: 'http-url' }, raw);
      if ('problem' in checked) return checked;
      const url = new URL(checked.value as string);
      if (!/\/api\/dtmsvr$/.test(url.pathname)) {
        const fixed = `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}/api/dtmsvr`;
        return { problem: `must end with /api/dtmsvr, the path of DTM's HTTP API (DTM answers 404 to anything else); got ${got}: use ${JSON.stringify(redactUrl(fixed))}` };
      }
      return checked;
    }
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
      if (URL_SPACES.test(raw)) return { problem: MESSAGES.configUrlSpaces(got) };
      // shown without what follows ? or # (a token, often), and without credentials (a password may hold a ?)
      if (raw.includes('?') || raw.includes('#')) return { problem: MESSAGES.configUrlQuery(describe(redactUrl(raw).replace(/[?#][^]*$/, (rest) => `${rest[0]}…`))) };
      return { value: withoutTrailingSlashes(raw) };
    }
    case 'host-port': {
      const match = typeof raw === 'string' ? /^(\[[0-9A-Za-z:.%]+\]|[0-9A-Za-z._-]+):(\d+)$/.exec(raw) : null;
      const port = match ? Number(match[2]) : NaN;
      if (match && port > 0 && port < 65536) return { value: raw };
      // shown without what follows ? or # (a token, often), as URLs are
      return { problem: MESSAGES.configWant('host:port such as localhost:36790', typeof raw === 'string' ? describe(raw.replace(/[?#][^]*$/, (rest) => `${rest[0]}…`)) : got) };
    }
    case 'protocol':
      return raw === 'http' || raw === 'grpc' ? { value: raw } : { problem: MESSAGES.configWant('http or grpc', got) };
    case 'seconds':
    case 'whole-seconds':
    case 'bytes': {
      const unit = key.kind === 'bytes' ? 'bytes' : 'seconds';
      if (typeof raw !== 'number' || !Number.isFinite(raw)) return { problem: MESSAGES.configWant(`a number of ${unit}`, got) };
      if (raw <= 0 && key.kind !== 'bytes' && key.range!.min > 0) return { problem: MESSAGES.configPositive(raw) };
      if (key.kind === 'whole-seconds' && !Number.isInteger(raw)) return { problem: MESSAGES.configWholeSeconds(raw) };
      if (key.kind === 'bytes' && !Number.isInteger(raw)) return { problem: MESSAGES.configWholeBytes(raw) };
      const range = key.range!;
      if (raw < range.min || raw > range.max) return { problem: MESSAGES.configRange(range.min, range.max, unit, range.why, raw) };
      return { value: raw };
    }
    case 'sql-table': {
      return isBarrierTableName(raw) ? { value: raw } : { problem: MESSAGES.configWant(`a table name or schema.name (letters, digits, _; each part at most 63 characters), such as ${key.example}`, got) };
    }
    case 'services':
      return { problem: 'checked by checkServices' };
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
      // both kinds of bad entry at once, so that one start-up names all there is to fix
      const bad = raw.filter((h) => typeof h !== 'string' || !HEADER_NAME.test(h));
      const forbidden = raw.filter((h): h is string => typeof h === 'string' && HEADER_NAME.test(h) && isForbiddenBranchHeader(h));
      // an inbound call's binary metadata (Buffers) cannot go through DTM's text branch_headers (a branch's own branchHeaders may name one: the bytes of its text)
      const binary = raw.filter((h): h is string => typeof h === 'string' && HEADER_NAME.test(h) && !isForbiddenBranchHeader(h) && h.toLowerCase().endsWith('-bin'));
      const problems = [
        ...(bad.length > 0 ? [MESSAGES.configBadHeaders(bad.map((h) => describe(h)))] : []),
        ...(forbidden.length > 0 ? [MESSAGES.configForbiddenHeaders(forbidden)] : []),
        ...(binary.length > 0 ? [MESSAGES.configBinaryHeaders(binary)] : []),
      ];
      if (problems.length > 0) return { problem: problems.join('; and it ') };
      return { value: [...new Set((raw as string[]).map((h) => h.toLowerCase()))] };
    }
  }
}

/** The known name closest to `name` (same letters ignoring case and `_`/`-`, or a small edit distance). */
export function closest(name: string, known: string[]): string | undefined {
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

/** Whether the (valid) URL `value` holds a username or password. */
function hasCredentials(value: string): boolean {
  const url = new URL(value);
  return url.username !== '' || url.password !== '';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A value as an error message shows it: credentials of URLs redacted (in strings, list items,
 * mapping keys and values), long strings cut, at most 5 entries and 2 levels of lists and mappings.
 */
function describe(value: unknown, depth = 0): string {
  if (typeof value === 'string') return JSON.stringify(shorten(redactUrl(value)));
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    if (depth > 1) return 'a list';
    const items = value.slice(0, 5).map((item) => describe(item, depth + 1));
    return `a list (${value.length === 0 ? 'empty' : `${items.join(', ')}${value.length > 5 ? ', …' : ''}`})`;
  }
  if (value instanceof Date) return `a date (${Number.isNaN(value.getTime()) ? 'invalid' : value.toISOString()})`;
  if (typeof value === 'object') {
    if (depth > 1) return 'a mapping';
    const entries = Object.entries(value);
    const shown = entries.slice(0, 5).map(([k, v]) => `${JSON.stringify(shorten(redactUrl(k)))}: ${describe(v, depth + 1)}`);
    return `a mapping (${entries.length === 0 ? 'empty' : `${shown.join(', ')}${entries.length > 5 ? ', …' : ''}`})`;
  }
  if (typeof value === 'function') return 'a function';
  return `${typeof value} ${String(value)}`;
}
