// The documentation holds together: every relative link of README.md, CONTRIBUTING.md, SECURITY.md, docs/*.md
// reaches a file (and its #anchor, a heading there); the README's Quick start shows the files of
// examples/quick-start verbatim (test/package/quick-start.spec.ts runs that app against DTM); the
// README's first screen has exactly the two commands; docs/testing.md's outbox and gRPC examples are the
// recipes test/e2e/testing-outbox.spec.ts and testing-grpc.spec.ts run, and docs/grpc.md's bank.controller.ts
// the one grpc-bank-controller.spec.ts runs; no TypeScript hides under another fence
// language (test/package/docs-typecheck.spec.ts type-checks every ts block).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { DTM_CONFIG_KEYS } from '../../lib/config/dtm-config.keys.js';
import { anchors, documents, fencedBlocks, namedFile, REPO_ROOT, relativeLinks, withEsmSuffixes } from '../support/docs.js';

describe('the documentation', () => {
  it('every lynx.dtm key is in the reference table of docs/configuration.md and in the README', () => {
    const reference = readFileSync(join(REPO_ROOT, 'docs/configuration.md'), 'utf8');
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const missing = DTM_CONFIG_KEYS.flatMap(({ yaml }) => [
      ...(reference.includes(`| \`${yaml}\` |`) ? [] : [`docs/configuration.md: ${yaml}`]),
      ...(readme.includes(`\`${yaml}\``) ? [] : [`README.md: ${yaml}`]),
    ]);
    expect(missing).toEqual([]);
  });

  it.each(documents())('%s: every relative link reaches a file, and its #anchor a heading there', (doc) => {
    const broken = relativeLinks(doc).flatMap(({ line, target }) => {
      const [path, anchor] = target.split('#');
      const file = path ? normalize(join(dirname(doc), decodeURIComponent(path))) : doc;
      if (!existsSync(join(REPO_ROOT, file))) return [`${doc}:${line}: ${target} (no file ${file})`];
      if (anchor === undefined || !file.endsWith('.md') || statSync(join(REPO_ROOT, file)).isDirectory()) return [];
      return anchors(file).has(anchor) ? [] : [`${doc}:${line}: ${target} (no heading #${anchor} in ${file})`];
    });
    expect(broken).toEqual([]);
  });

  it('the README links every docs/ page, the two arriving ones included, and docs/README.md indexes them all', () => {
    const pages = [...documents().filter((d) => d.startsWith('docs/') && d !== 'docs/README.md')];
    const readmeTargets = new Set(relativeLinks('README.md').map((l) => l.target.split('#')[0]));
    const indexTargets = new Set(relativeLinks('docs/README.md').map((l) => `docs/${l.target.split('#')[0]}`));
    expect(pages.filter((p) => !readmeTargets.has(p))).toEqual([]);
    expect(pages.filter((p) => !indexTargets.has(p))).toEqual([]);
  });

  it("the README's first screen: what it is, then one block with exactly `npm run demo` and `npm test`, run from a clone", () => {
    const lines = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').split('\n');
    const end = lines.findIndex((l) => l.startsWith('## ')); // the first screen ends where the first section starts
    expect(end).toBeGreaterThan(0);
    expect(end).toBeLessThanOrEqual(24);
    const firstScreen = lines.slice(0, end);
    const blocks = fencedBlocks('README.md').filter((b) => b.line <= end);
    expect(blocks).toHaveLength(1);
    const commands = blocks[0].code.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
    expect(commands).toEqual(['npm run demo', 'npm test']);
    expect(firstScreen.slice(0, blocks[0].line - 2).join('\n')).toMatch(/clone of this repository/);
  });

  it("the README's Quick start blocks are the files of examples/quick-start, verbatim, every one of them", () => {
    const example = join(REPO_ROOT, 'examples', 'quick-start');
    const files = ['config.yaml', 'tsconfig.json', ...readdirSync(join(example, 'src')).filter((f) => f.endsWith('.ts')).map((f) => `src/${f}`)];
    const shown = new Map(fencedBlocks('README.md').flatMap((b) => (namedFile(b) ? [[namedFile(b)!, b] as const] : [])));
    expect([...shown.keys()].sort()).toEqual([...files].sort());
    for (const file of files) {
      const block = shown.get(file)!;
      expect({ file, at: `README.md:${block.line}`, code: block.code }).toEqual({ file, at: `README.md:${block.line}`, code: readFileSync(join(example, file), 'utf8').trimEnd() });
    }
  });

  it("docs/testing.md's complete example is the files of test/package/apps/nest11-jest, as the ES module app has them", () => {
    const app = join(REPO_ROOT, 'test', 'package', 'apps', 'nest11-jest');
    const files = ['src', 'test'].flatMap((dir) => readdirSync(join(app, dir)).filter((f) => f.endsWith('.ts') && f !== 'main.ts').map((f) => `${dir}/${f}`)); // main.ts: as nest new writes it
    const shown = new Map(fencedBlocks('docs/testing.md').flatMap((b) => (namedFile(b) ? [[namedFile(b)!, b] as const] : [])));
    expect([...shown.keys()].sort()).toEqual([...files].sort());
    for (const file of files) {
      const block = shown.get(file)!;
      expect({ file, code: block.code }).toEqual({ file, code: withEsmSuffixes(readFileSync(join(app, file), 'utf8')).trimEnd() });
    }
  });

  it("docs/testing.md's outbox example is test/e2e/testing-outbox.recipe.ts (which testing-outbox.spec.ts runs), its hidden prelude included, verbatim", () => {
    const block = fencedBlocks('docs/testing.md').find((b) => b.lang === 'ts' && b.code.includes(".doAndSubmitDb('orders.check'"));
    expect(block?.prelude).toBeDefined();
    expect(`${block!.prelude!.code}\n${block!.code}\n`).toBe(readFileSync(join(REPO_ROOT, 'test', 'e2e', 'testing-outbox.recipe.ts'), 'utf8'));
  });

  it("docs/testing.md's gRPC example is test/e2e/testing-grpc.recipe.ts (which testing-grpc.spec.ts runs), its hidden prelude included, verbatim", () => {
    const block = fencedBlocks('docs/testing.md').find((b) => b.lang === 'ts' && b.code.includes("@GrpcMethod('Bank', 'Withdraw')"));
    expect(block?.prelude).toBeDefined();
    expect(`${block!.prelude!.code}\n${block!.code}\n`).toBe(readFileSync(join(REPO_ROOT, 'test', 'e2e', 'testing-grpc.recipe.ts'), 'utf8'));
  });

  it("docs/grpc.md's bank.controller.ts is test/e2e/grpc-bank-controller.recipe.ts (which grpc-bank-controller.spec.ts runs), verbatim", () => {
    const block = fencedBlocks('docs/grpc.md').find((b) => b.lang === 'ts' && namedFile(b) === 'bank.controller.ts');
    expect(block).toBeDefined();
    expect(`${block!.code}\n`).toBe(readFileSync(join(REPO_ROOT, 'test', 'e2e', 'grpc-bank-controller.recipe.ts'), 'utf8'));
  });

  it('no TypeScript is fenced as another language (each ts block is type-checked; a bare or other fence is not)', () => {
    const hidden = documents().flatMap((doc) =>
      fencedBlocks(doc)
        .filter((b) => !['ts', 'typescript'].includes(b.lang))
        .filter((b) => /from '(nestjs-dtm|@nestjs\/)|^\s*@(Controller|Injectable|Module|SagaAction|TccTry)\(|^\s*(const|let|await|import) |^\s*export (class|const|function|interface|type) /m.test(b.code))
        .map((b) => `${b.doc}:${b.line} (\`\`\`${b.lang})`),
    );
    expect(hidden).toEqual([]);
  });

  it('every hidden prelude sits right before a ts block', () => {
    const stray = documents().flatMap((doc) => {
      const text = readFileSync(join(REPO_ROOT, doc), 'utf8').split('\n');
      const preludes = text.flatMap((l, i) => (l.trim() === '<!-- ts-prelude' ? [i + 1] : []));
      const used = new Set(fencedBlocks(doc).flatMap((b) => (b.prelude && ['ts', 'typescript'].includes(b.lang) ? [b.prelude.line - 1] : [])));
      return preludes.filter((l) => !used.has(l)).map((l) => `${relative(REPO_ROOT, join(REPO_ROOT, doc))}:${l}`);
    });
    expect(stray).toEqual([]);
  });
});
