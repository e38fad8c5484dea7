// Every ```ts block of README.md, CONTRIBUTING.md and docs/*.md compiles against the built package,
// imported as a user imports it: 'nestjs-dtm' and 'nestjs-dtm/testing' resolve through the
// package's `exports` to dist/ (a node_modules/nestjs-dtm link to this repository, in a project
// under .build/). Each block is its own ES module, its hidden prelude (`<!-- ts-prelude ... -->`
// right before it) prepended; a block whose first line names a file (`// src/app.module.ts`) is
// written under that name, so the Quick start's files import each other as in the example app.
// One tsc run for all; one test per block, failing with the document's file:line of each error.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { documents, fencedBlocks, namedFile, REPO_ROOT, type DocBlock } from '../support/docs.js';

interface Compiled {
  block: DocBlock;
  file: string;
  preludeLines: number;
}

const blocks = documents().flatMap((doc) => fencedBlocks(doc).filter((b) => b.lang === 'ts' || b.lang === 'typescript'));
let project: string;
const units: Compiled[] = [];
const errors = new Map<string, string[]>();

/** The document line of line `n` (1-based) of a block's file: in its prelude or in the block. */
function docLine(unit: Compiled, n: number): number {
  return n <= unit.preludeLines ? unit.block.prelude!.line + n - 1 : unit.block.line + n - unit.preludeLines - 1;
}

beforeAll(() => {
  mkdirSync(join(REPO_ROOT, '.build'), { recursive: true });
  project = mkdtempSync(join(REPO_ROOT, '.build', 'docs-typecheck-'));
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(REPO_ROOT, join(project, 'node_modules', 'nestjs-dtm'), 'dir');
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'docs-typecheck', private: true, type: 'module' }));
  for (const block of blocks) {
    const dir = block.doc.replace(/[^\w]+/g, '_');
    const name = namedFile(block);
    const file = join(dir, name?.endsWith('.ts') ? name : `line-${block.line}.ts`);
    if (units.some((u) => u.file === file)) throw new Error(`${block.doc}:${block.line}: a second block named ${name}`);
    const prelude = block.prelude ? `${block.prelude.code}\n` : '';
    mkdirSync(dirname(join(project, file)), { recursive: true });
    // `export {}`: a block without imports or exports is a module all the same, not a global script
    writeFileSync(join(project, file), `${prelude}${block.code}\nexport {};\n`);
    units.push({ block, file, preludeLines: prelude ? prelude.split('\n').length - 1 : 0 });
  }
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      // what `nest new` sets, strict: as a Nest app compiles the snippets it copies
      compilerOptions: {
        module: 'nodenext', moduleResolution: 'nodenext', target: 'ES2023', strict: true, strictPropertyInitialization: false,
        experimentalDecorators: true, emitDecoratorMetadata: true, isolatedModules: true, esModuleInterop: true,
        skipLibCheck: true, types: ['node'], noEmit: true,
      },
      include: units.map((u) => u.file),
    }),
  );
  const tsc = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(project, 'tsconfig.json'), '--pretty', 'false'], {
    cwd: project,
    encoding: 'utf8',
  });
  const output = `${tsc.stdout}${tsc.stderr}`;
  let current: string[] | undefined;
  for (const line of output.split('\n')) {
    const m = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line);
    if (m) {
      const unit = units.find((u) => u.file === m[1]);
      const where = unit ? `${unit.block.doc}:${docLine(unit, Number(m[2]))}:${m[3]}` : `${m[1]}:${m[2]}`;
      const key = unit?.file ?? '(outside the blocks)';
      current = errors.get(key) ?? [];
      current.push(`${where} ${m[4]}`);
      errors.set(key, current);
    } else if (line.startsWith(' ') && current) {
      current[current.length - 1] += `\n${line}`;
    } else if (line.trim()) {
      errors.set('(tsc)', [...(errors.get('(tsc)') ?? []), line]);
    }
  }
}, 180_000);

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

describe('the TypeScript blocks of the documentation compile against the built package', () => {
  it('there are blocks to check, and tsc said nothing outside them', () => {
    expect(blocks.length).toBeGreaterThan(20);
    expect([...(errors.get('(tsc)') ?? []), ...(errors.get('(outside the blocks)') ?? [])]).toEqual([]);
  });

  it.each(blocks.map((b) => [`${b.doc}:${b.line}`, b] as const))('%s', (_where, block) => {
    const unit = units.find((u) => u.block === block)!;
    expect(errors.get(unit.file) ?? []).toEqual([]);
  });
});
