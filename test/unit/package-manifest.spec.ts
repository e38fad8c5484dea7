// The published surface: every bare import of lib/ is declared in package.json, and every symbol
// lib/index.ts exports carries a TSDoc comment.
import { readdirSync, readFileSync } from 'node:fs';
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
      for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'([^'.][^']*)'/g)) {
        if (spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!declared.has(name)) missing.push(`${file.slice(root.length + 1)}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
    for (const peer of Object.keys(pkg.peerDependencies ?? {})) expect([peer, pkg.devDependencies?.[peer] !== undefined]).toEqual([peer, true]);
  });
});

describe('lib/index.ts', () => {
  it('exports only documented symbols (a TSDoc comment on each declaration)', () => {
    const program = ts.createProgram([join(root, 'lib', 'index.ts')], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2023, experimentalDecorators: true });
    const checker = program.getTypeChecker();
    const index = program.getSourceFile(join(root, 'lib', 'index.ts'))!;
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(index)!);
    expect(exports.length).toBeGreaterThan(20);
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
