// A Nest 12 ES module app (nest new, CLI 12) tested with Jest instead of Vitest: Jest 30 and ts-jest
// in Jest's ES module mode (--experimental-vm-modules), with the Nest 11 app's tests. nestjs-dtm's
// `import` entry is its CommonJS build, which Jest runs with a `require` of its own; that `require`
// cannot load the ES-module-only Nest 12 on Node.js before 24.9, nor, on 24.9+, from these tests,
// which import @nestjs/testing and then nestjs-dtm (a cycle), so the tests fail to run, as docs/testing.md says, and
// pass with the Jest configuration docs/testing.md gives (Jest compiling the package's shipped lib/
// sources).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fencedBlocks } from '../support/docs.js';
import { installConsumerApp, type ConsumerApp } from './consumer-app.js';

/** The Jest options docs/testing.md gives for Nest 12 on a Node.js older than 24.9. */
function documentedJestOptions(): Record<string, unknown> {
  const block = fencedBlocks('docs/testing.md').find((b) => b.lang === 'jsonc' && b.code.includes('nestjs-dtm/lib/index.ts'));
  if (!block) throw new Error('docs/testing.md has no jsonc block mapping nestjs-dtm to lib/');
  return JSON.parse(`{${block.code.replace(/^\s*\/\/.*$/gm, '')}}`) as Record<string, unknown>;
}

/** Jest in its ES module mode with ts-jest, as a Nest 12 app moved to Jest would configure it; `extra` merged in. */
function jestConfig(extra: Record<string, unknown>): string {
  const base = {
    moduleFileExtensions: ['js', 'json', 'ts'],
    rootDir: '.',
    testEnvironment: 'node',
    testRegex: '(\\.|-)spec\\.ts$',
    extensionsToTreatAsEsm: ['.ts'],
    transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: { types: ['jest', 'node'] } }] },
    moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  };
  return JSON.stringify({ ...base, ...extra }, null, 2);
}

const [major, minor] = process.versions.node.split('.').map(Number);
/** Jest 30's `require` of an ES module works from Node.js 24.9 on (not in a cycle). */
const requiresEsm = major > 24 || (major === 24 && minor >= 9);

let app: ConsumerApp;
beforeAll(() => {
  app = installConsumerApp('nest12-vitest', 'nest11-jest');
  const install = app.run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', '-D', 'jest@^30', 'ts-jest@^29', '@types/jest@^30']);
  if (install.status !== 0) throw new Error(`npm install jest failed:\n${install.output}`);
  writeFileSync(join(app.dir, 'jest.plain.json'), jestConfig({}));
  const documented = documentedJestOptions();
  writeFileSync(join(app.dir, 'jest.lib.json'), jestConfig({ ...documented }));
}, 300_000);
afterAll(() => app?.remove());

/** Runs the app's unit and e2e tests with Jest's ES module mode and configuration `config`. */
function jest(config: string) {
  return app.run('node', ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '-c', config, '--ci'], {});
}

describe('a Nest 12 ES module app tested with Jest (ES module mode)', () => {
  it('is a Nest 12 ES module app with Jest 30', () => {
    expect(JSON.parse(readFileSync(join(app.dir, 'package.json'), 'utf8')).type).toBe('module');
    expect(JSON.parse(readFileSync(join(app.dir, 'node_modules', '@nestjs', 'core', 'package.json'), 'utf8')).version).toMatch(/^12\./);
    expect(JSON.parse(readFileSync(join(app.dir, 'node_modules', 'jest', 'package.json'), 'utf8')).version).toMatch(/^30\./);
  });

  it(`without more configuration the tests fail to run, as docs/testing.md says: Jest's require cannot load Nest 12 ${requiresEsm ? 'after @nestjs/testing (Node.js 24.9+: a cycle)' : '(Node.js before 24.9)'}`, () => {
    const out = jest('jest.plain.json');
    if (requiresEsm) expect(out.output).toMatch(/Cannot require\(\) ES Module \S*node_modules\/@nestjs\/common\/index\.js in a cycle/);
    else expect(out.output).toMatch(/Must use import to load ES Module: \S*node_modules\/@nestjs\/common\/index\.js/);
    expect(out.output).toMatch(/Test Suites: 2 failed, 2 total/);
    expect(out.status).not.toBe(0);
  }, 180_000);

  it("with docs/testing.md's moduleNameMapper to the package's lib/ sources: the unit test and the e2e sagas against a real DTM server pass", () => {
    const out = jest('jest.lib.json');
    expect(out.output).toMatch(/Tests:\s+5 passed, 5 total/);
    expect(out.status).toBe(0);
  }, 180_000);
});
