// The example apps of test/package/apps, as `nest new` makes them (CLI 11: CommonJS + Jest + ts-jest,
// TypeScript 5.7; CLI 12: ESM + Vitest), with nestjs-dtm installed from the packed tarball: copied
// into a temp directory and installed from the npm registry (--prefer-offline: what npm's cache
// has is not downloaded again). Their tests are the README's "Testing your branches" examples.
// The Nest 12 app keeps only what differs (its manifest, tsconfig, Vitest configuration, main.ts):
// its sources and tests are the Nest 11 app's, with the `.js` suffixes ES modules need.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { withEsmSuffixes } from '../support/docs.js';
import { dtmBinaryPath } from '../support/services/binaries.js';

const root = resolve(import.meta.dirname, '..', '..');

/** An example app installed in a temp directory. */
export interface ConsumerApp {
  dir: string;
  /** Runs `npm run <script>` (or `npx <args>`, or this process's `node` with `args`) in the app, `env` added; its exit code and output. */
  run(command: 'npm' | 'npx' | 'node', args: string[], env?: NodeJS.ProcessEnv): { status: number | null; output: string };
  remove(): void;
}

/**
 * Copies the `.ts` files of app `from`'s src/ and test/ into `dir` (not those `dir` has), with
 * `.js` added to relative imports, as an ES module app needs them.
 */
function copySourcesAsEsm(from: string, dir: string): void {
  for (const sub of ['src', 'test']) {
    mkdirSync(join(dir, sub), { recursive: true });
    for (const file of readdirSync(join(from, sub)).filter((f) => f.endsWith('.ts'))) {
      if (existsSync(join(dir, sub, file))) continue;
      writeFileSync(join(dir, sub, file), withEsmSuffixes(readFileSync(join(from, sub, file), 'utf8')));
    }
  }
}

/**
 * Packs the package (the dist/ scripts/run-jest.mjs built) and installs app `name` of
 * test/package/apps with it; `sourcesFrom`: the app whose src/ and test/ it shares (as ES modules).
 * `from`: the app's directory when it is not in test/package/apps (examples/quick-start).
 */
export function installConsumerApp(name: string, sourcesFrom?: string, from = join(root, 'test', 'package', 'apps', name)): ConsumerApp {
  const work = mkdtempSync(join(tmpdir(), `nestjs-dtm-${name}-`));
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }),
  ) as { filename: string }[];
  const dir = join(work, name);
  cpSync(from, dir, { recursive: true, filter: (source) => !/[/\\](node_modules|dist)$/.test(source) });
  if (sourcesFrom) copySourcesAsEsm(join(root, 'test', 'package', 'apps', sourcesFrom), dir);
  const manifest = join(dir, 'package.json');
  const app = JSON.parse(readFileSync(manifest, 'utf8')) as { dependencies: Record<string, string> };
  app.dependencies['nestjs-dtm'] = `file:${join(work, packed[0].filename)}`; // the apps' "file:NESTJS_DTM_TARBALL", the example's version range
  writeFileSync(manifest, JSON.stringify(app, null, 2));
  // bounded: execFileSync blocks the worker, so no jest timeout can end an npm that hangs on the registry
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 170_000 });
  return {
    dir,
    run(command, args, extra = {}) {
      // the harness's DTM server binary (scripts/setup.sh built it); CI=1: no watch mode, no colours
      const env: NodeJS.ProcessEnv = { ...process.env, DTM_BINARY: dtmBinaryPath(), CI: '1', FORCE_COLOR: '0', NO_COLOR: '1' };
      delete env.NODE_OPTIONS; // jest's --experimental-vm-modules is this repository's, not the app's
      Object.assign(env, extra);
      const child = spawnSync(command === 'node' ? process.execPath : command, args, { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
      return { status: child.status, output: `${child.stdout}\n${child.stderr}` };
    },
    remove() {
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * The TypeScript compilers of this repository's devDependencies (`typescript`, and TypeScript 7
 * as `typescript-7`, installed by `npm ci`) that check the package's declarations in the apps, on
 * top of the TypeScript each app installs: the major.minor each must be, and its `tsc`.
 */
export const repositoryCompilers = [
  { version: '6.0', tsc: join(root, 'node_modules', 'typescript', 'bin', 'tsc') },
  { version: '7.0', tsc: join(root, 'node_modules', 'typescript-7', 'bin', 'tsc') },
] as const;

/** The version of the TypeScript whose `tsc` is `tsc` (its package.json, one directory up). */
export function compilerVersion(tsc: string): string {
  return (JSON.parse(readFileSync(join(tsc, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** What a type check of a file importing both entries of the package said: its errors, and the package's files it read. */
export interface PackageTypesCheck {
  errors: string[];
  packageFiles: string[];
}

/**
 * Type-checks, in `app`, with `tsc` and `compilerOptions` (a consumer's tsconfig), a file
 * `types-check/entries.<ext>` for each of `extensions` that imports everything of 'nestjs-dtm' and
 * 'nestjs-dtm/testing', with `skipLibCheck: false`: the package's own declarations (every one the
 * entries reach) are checked too, with @types/node's and those of the Nest the app installed;
 * not TypeScript's own lib files (skipDefaultLibCheck: a quarter of TypeScript 6's time). The
 * tsconfig it writes is `tsconfig.types-check-<name>.json`.
 */
export function checkPackageTypes(app: ConsumerApp, tsc: string, name: string, compilerOptions: Record<string, unknown>, extensions: string[]): PackageTypesCheck {
  const files = extensions.map((ext) => `types-check/entries.${ext}`);
  mkdirSync(join(app.dir, 'types-check'), { recursive: true });
  for (const file of files) {
    writeFileSync(
      join(app.dir, file),
      "import * as dtm from 'nestjs-dtm';\nimport * as testing from 'nestjs-dtm/testing';\n" +
        'export const entries: [typeof dtm.DtmModule, typeof testing.startDtmServer] = [dtm.DtmModule, testing.startDtmServer];\n',
    );
  }
  const config = `tsconfig.types-check-${name}.json`;
  writeFileSync(join(app.dir, config), JSON.stringify({ compilerOptions: { ...compilerOptions, skipLibCheck: false, skipDefaultLibCheck: true, noEmit: true, incremental: false, types: ['node'] }, files }, null, 2));
  const out = app.run('node', [tsc, '-p', config, '--pretty', 'false', '--listFiles']);
  const lines = out.output.split('\n').filter((line) => line.trim());
  const packageDir = join(app.dir, 'node_modules', 'nestjs-dtm');
  // --listFiles prints the program's files as absolute paths; everything else is what tsc said
  return {
    errors: [...lines.filter((line) => !line.startsWith('/')), ...(out.status === 0 ? [] : [`exit code ${out.status}`])],
    packageFiles: lines.filter((line) => line.startsWith(`${packageDir}/`)).map((line) => line.slice(packageDir.length + 1)),
  };
}
