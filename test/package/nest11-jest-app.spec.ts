// A Nest 11 CommonJS app as `nest new` (CLI 11) makes it: Jest + ts-jest, TypeScript 5.7,
// `module: nodenext`, its Jest configuration untouched. nestjs-dtm from the tarball loads in Jest's
// CommonJS runtime (the `require` build), type-checks with TypeScript 5.7 (no TS1479; and with the
// `module: commonjs` tsconfig of apps made with Nest 10, no TS2307 for nestjs-dtm/testing), and the
// README's testing examples pass: a unit test, and an e2e saga against a real DTM server started
// with nestjs-dtm/testing.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkPackageTypes, compilerVersion, installConsumerApp, repositoryCompilers, type ConsumerApp } from './consumer-app.js';

/** The tsconfig.json `nest new` made up to CLI 10, which apps upgraded to Nest 11 keep. */
const nest10 = {
  compilerOptions: {
    module: 'commonjs',
    declaration: true,
    removeComments: true,
    emitDecoratorMetadata: true,
    experimentalDecorators: true,
    allowSyntheticDefaultImports: true,
    target: 'ES2021',
    sourceMap: true,
    outDir: './dist',
    baseUrl: './',
    incremental: true,
    skipLibCheck: true,
    strictNullChecks: false,
    noImplicitAny: false,
    strictBindCallApply: false,
    forceConsistentCasingInFileNames: false,
    noFallthroughCasesInSwitch: false,
  },
};

/** `options` without baseUrl, which TypeScript 6 refuses as deprecated (TS5101) and 7 as removed (TS5102): an app moving to them drops it. */
function withoutBaseUrl(options: Record<string, unknown>): Record<string, unknown> {
  const { baseUrl: _dropped, ...rest } = options;
  return rest;
}

let app: ConsumerApp;
beforeAll(() => {
  app = installConsumerApp('nest11-jest');
}, 300_000);
afterAll(() => app?.remove());

describe('a Nest 11 CommonJS app with Jest (nest new, CLI 11)', () => {
  it('is the shape nest new makes: CommonJS, Jest with ts-jest and no extra configuration, TypeScript 5.7 with module nodenext', () => {
    const manifest = JSON.parse(readFileSync(join(app.dir, 'package.json'), 'utf8'));
    expect([manifest.type, manifest.jest.transform, manifest.jest.transformIgnorePatterns, manifest.jest.moduleNameMapper]).toEqual([undefined, { '^.+\\.(t|j)s$': 'ts-jest' }, undefined, undefined]);
    expect(JSON.parse(readFileSync(join(app.dir, 'node_modules', 'typescript', 'package.json'), 'utf8')).version).toMatch(/^5\.7\./);
    expect(JSON.parse(readFileSync(join(app.dir, 'node_modules', '@nestjs', 'core', 'package.json'), 'utf8')).version).toMatch(/^11\./);
  });

  it('type-checks with TypeScript 5.7 and module nodenext (no TS1479 for the package or nestjs-dtm/testing)', () => {
    const tsc = app.run('npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']);
    expect([tsc.status, tsc.output.trim()]).toEqual([0, '']);
  }, 120_000);

  it('type-checks in an app that kept the tsconfig of Nest 10 (module commonjs, so moduleResolution node10, which reads no exports): nestjs-dtm/testing through typesVersions', () => {
    writeFileSync(join(app.dir, 'tsconfig.nest10.json'), JSON.stringify(nest10, null, 2));
    const tsc = app.run('npx', ['tsc', '--noEmit', '-p', 'tsconfig.nest10.json']);
    expect([tsc.status, tsc.output.trim()]).toEqual([0, '']);
  }, 120_000);

  it.each(repositoryCompilers)(
    "the package's own declarations check (skipLibCheck false) with TypeScript $version: module nodenext (its require entries from a .ts file, its import entries from a .mts file) and the Nest 10 tsconfig's module commonjs",
    ({ version, tsc }) => {
      expect(compilerVersion(tsc).split('.').slice(0, 2).join('.')).toBe(version);
      const { compilerOptions } = JSON.parse(readFileSync(join(app.dir, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> };
      const nodenext = checkPackageTypes(app, tsc, `nodenext-${version}`, withoutBaseUrl(compilerOptions), ['ts', 'mts']);
      expect(nodenext.errors).toEqual([]);
      expect(nodenext.packageFiles).toEqual(expect.arrayContaining(['dist/cjs/index.d.ts', 'dist/cjs/testing/index.d.ts', 'dist/esm/index.d.mts', 'dist/esm/testing.d.mts']));
      // from TypeScript 6 on, module commonjs resolves as moduleResolution bundler does (the require entries through exports)
      const commonjs = checkPackageTypes(app, tsc, `commonjs-${version}`, withoutBaseUrl(nest10.compilerOptions), ['ts']);
      expect(commonjs.errors).toEqual([]);
      expect(commonjs.packageFiles).toEqual(expect.arrayContaining(['dist/cjs/index.d.ts', 'dist/cjs/testing/index.d.ts']));
    },
    120_000,
  );

  it('`npm test`: the unit test passes in Jest', () => {
    const jest = app.run('npm', ['test']);
    expect(jest.output).toMatch(/Tests:\s+2 passed, 2 total/);
    expect(jest.status).toBe(0);
  }, 180_000);

  it('`npm run test:e2e`: sagas against a real DTM server (nestjs-dtm/testing), and a branch called as DTM calls it', () => {
    const e2e = app.run('npm', ['run', 'test:e2e']);
    expect(e2e.output).toMatch(/Tests:\s+3 passed, 3 total/);
    expect(e2e.status).toBe(0);
  }, 180_000);
});
