// The published surface: every bare import of lib/ is declared in package.json, the manifest's
// entry points, metadata and engines, and every symbol an entry point exports carries a TSDoc comment.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, resolve } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import ts from 'typescript';

const root = resolve(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('package.json', () => {
  it('declares every package lib/ imports (dependencies or peerDependencies), and tests every peer', () => {
    const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
    const builtins = new Set(builtinModules);
    const missing: string[] = [];
    for (const file of sourceFiles(join(root, 'lib'))) {
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/(?<![.\w$])(?:from|import)\s*\(?\s*'([^'.][^']*)'/g)) {
        if (spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!declared.has(name)) missing.push(`${file.slice(root.length + 1)}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
    for (const peer of Object.keys(pkg.peerDependencies ?? {})) expect([peer, pkg.devDependencies?.[peer] !== undefined]).toEqual([peer, true]);
  });
});

describe('package.json', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

  it('names the repository, where to report bugs and the home page', () => {
    expect([manifest.repository, manifest.bugs, manifest.homepage]).toEqual([
      { type: 'git', url: 'git+https://github.com/nestjs-dtm/nestjs-dtm.git' },
      { url: 'https://github.com/nestjs-dtm/nestjs-dtm/issues' },
      'https://github.com/nestjs-dtm/nestjs-dtm#readme',
    ]);
  });

  it('exports each entry point for import and require, each with its types; the CommonJS build is main', () => {
    const entry = (esm: string, cjs: string) => ({
      import: { types: `./dist/esm/${esm}.d.mts`, default: `./dist/esm/${esm}.mjs` },
      require: { types: `./dist/cjs/${cjs}.d.ts`, default: `./dist/cjs/${cjs}.js` },
    });
    expect(manifest.exports).toEqual({ '.': entry('index', 'index'), './testing': entry('testing', 'testing/index'), './package.json': './package.json' });
    expect([manifest.main, manifest.types]).toEqual(['./dist/cjs/index.js', './dist/cjs/index.d.ts']);
    // TypeScript's node10 resolution (`module: commonjs` without moduleResolution) reads no exports: typesVersions gives it nestjs-dtm/testing
    expect(manifest.typesVersions).toEqual({ '*': { testing: [manifest.exports['./testing'].require.types] } });
    for (const source of ['index', 'testing/index']) expect(existsSync(join(root, 'lib', `${source}.ts`))).toBe(true);
    // the sources ship: the source maps point at them
    expect(manifest.files).toEqual(expect.arrayContaining(['dist', 'lib', 'sql', 'protos']));
  });

  it('engines: the Node versions that load Nest 12 through require(esm) (20.19+, 22.12+), which Nest 11 runs on too', () => {
    expect(manifest.engines).toEqual({ node: '^20.19.0 || >=22.12.0' });
    expect(manifest.peerDependencies['@nestjs/common']).toBe('^11.0.0 || ^12.0.0');
  });
});

describe.each(['index.ts', 'testing/index.ts'])('lib/%s', (entry) => {
  it('exports only documented symbols (a TSDoc comment on each declaration)', () => {
    const program = ts.createProgram([join(root, 'lib', entry)], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2023, experimentalDecorators: true });
    const checker = program.getTypeChecker();
    const index = program.getSourceFile(join(root, 'lib', entry))!;
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(index)!);
    expect(exports.length).toBeGreaterThan(entry === 'index.ts' ? 20 : 8);
    const undocumented = exports
      .map((symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol))
      .filter((symbol) => {
        const declarations = symbol.getDeclarations() ?? [];
        return !declarations.some((d) => ts.getJSDocCommentsAndTags(d).length > 0 || hasLeadingDoc(d));
      })
      .map((symbol) => symbol.getName());
    expect(undocumented).toEqual([]);
  });
});

/** `export const { A, B } = ...` declarations carry their comment on the statement. */
function hasLeadingDoc(node: ts.Node): boolean {
  let current: ts.Node | undefined = node;
  while (current && !ts.isSourceFile(current)) {
    const text = current.getSourceFile().getFullText();
    const ranges = ts.getLeadingCommentRanges(text, current.getFullStart()) ?? [];
    if (ranges.some((r) => text.slice(r.pos, r.end).startsWith('/**'))) return true;
    current = current.parent;
  }
  return false;
}
