// A Nest 12 ES module app as `nest new` (CLI 12) makes it: Vitest, TypeScript 6, with the Nest 11
// app's sources and tests (as ES modules). nestjs-dtm from the tarball loads through its `import`
// entry, and the README's testing examples pass: a unit test, and an e2e saga against a real DTM
// server started with nestjs-dtm/testing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkPackageTypes, compilerVersion, installConsumerApp, repositoryCompilers, type ConsumerApp } from './consumer-app.js';

let app: ConsumerApp;
beforeAll(() => {
  app = installConsumerApp('nest12-vitest', 'nest11-jest');
}, 300_000);
afterAll(() => app?.remove());

describe('a Nest 12 ES module app with Vitest (nest new, CLI 12)', () => {
  it('is an ES module app on Nest 12 and Vitest, its imports with .js suffixes', () => {
    expect(JSON.parse(readFileSync(join(app.dir, 'package.json'), 'utf8')).type).toBe('module');
    expect(readFileSync(join(app.dir, 'test', 'transfers.e2e-spec.ts'), 'utf8')).toContain("import { AppModule } from './../src/app.module.js';");
    expect(JSON.parse(readFileSync(join(app.dir, 'node_modules', '@nestjs', 'core', 'package.json'), 'utf8')).version).toMatch(/^12\./);
  });

  it('type-checks (module nodenext, ES module)', () => {
    const tsc = app.run('npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']);
    expect([tsc.status, tsc.output.trim()]).toEqual([0, '']);
  }, 120_000);

  it.each(repositoryCompilers)("the package's own declarations check (skipLibCheck false) with TypeScript $version, in the app's tsconfig (module nodenext, ES module: the import entries)", ({ version, tsc }) => {
    expect(compilerVersion(tsc).split('.').slice(0, 2).join('.')).toBe(version);
    const { compilerOptions } = JSON.parse(readFileSync(join(app.dir, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> };
    const esm = checkPackageTypes(app, tsc, version, compilerOptions, ['ts']);
    expect(esm.errors).toEqual([]);
    expect(esm.packageFiles).toEqual(expect.arrayContaining(['dist/esm/index.d.mts', 'dist/esm/testing.d.mts', 'dist/cjs/index.d.ts', 'dist/cjs/testing/index.d.ts']));
  }, 120_000);

  it('`npm test`: the unit test passes in Vitest', () => {
    const vitest = app.run('npm', ['test']);
    expect(vitest.output).toMatch(/Tests\s+2 passed \(2\)/);
    expect(vitest.status).toBe(0);
  }, 180_000);

  it('`npm run test:e2e`: sagas against a real DTM server (nestjs-dtm/testing), and a branch called as DTM calls it', () => {
    const e2e = app.run('npm', ['run', 'test:e2e']);
    expect(e2e.output).toMatch(/Tests\s+3 passed \(3\)/);
    expect(e2e.status).toBe(0);
  }, 180_000);
});
