// The documentation as the docs tests read it: README.md, CONTRIBUTING.md, SECURITY.md, docs/*.md: their
// fenced code blocks (with the hidden `<!-- ts-prelude ... -->` a TypeScript block may have right
// before it), their relative links and the anchors of their headings (as GitHub makes them).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository's root. */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** A fenced code block of a document. */
export interface DocBlock {
  /** The document, relative to the repository root. */
  doc: string;
  /** 1-based line of the block's first code line in the document. */
  line: number;
  /** The fence's language (`ts`, `bash`, ...; '' when none). */
  lang: string;
  /** The code, without the fences. */
  code: string;
  /** The hidden prelude's TypeScript, or undefined; and the 1-based line of its first line. */
  prelude?: { code: string; line: number };
}

/** The user and contributor documents: README.md, CONTRIBUTING.md, SECURITY.md, docs/*.md (relative paths). */
export function documents(): string[] {
  const docs = existsSync(join(REPO_ROOT, 'docs')) ? readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`) : [];
  return ['README.md', 'CONTRIBUTING.md', 'SECURITY.md', ...docs].filter((d) => existsSync(join(REPO_ROOT, d)));
}

/** Every fenced block of `doc`; throws on an unclosed fence or a prelude that is not closed. */
export function fencedBlocks(doc: string): DocBlock[] {
  const lines = readFileSync(join(REPO_ROOT, doc), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`${doc}:${i + 1}: a code fence that is never closed`);
    const block: DocBlock = { doc, line: i + 2, lang: open[1], code: lines.slice(i + 1, end).join('\n') };
    if (i > 0 && lines[i - 1].trim() === '-->') {
      const start = lines.slice(0, i - 1).findLastIndex((l) => l.trim().startsWith('<!--'));
      if (start >= 0 && lines[start].trim() === '<!-- ts-prelude') {
        block.prelude = { code: lines.slice(start + 1, i - 1).join('\n'), line: start + 2 };
      }
    }
    blocks.push(block);
    i = end;
  }
  return blocks;
}

/** The file name a block names on its first line (`// src/app.module.ts`, `# config.yaml`, `// tsconfig.json`), if any. */
export function namedFile(block: DocBlock): string | undefined {
  return /^(?:\/\/|#) ((?:src\/|test\/)?[\w.-]+\.(?:ts|yaml|json))\b/.exec(block.code)?.[1];
}

/** `code` with `.js` added to its relative imports, as an ES module app needs them (a Nest 11 app's files in a Nest 12 one). */
export function withEsmSuffixes(code: string): string {
  return code.replace(/from '(\.{1,2}\/[^']+?)(?<!\.js)'/g, "from '$1.js'");
}

/** `doc`'s lines with its fenced blocks blanked (where links and headings are read). */
function prose(doc: string): string[] {
  let inFence = false;
  return readFileSync(join(REPO_ROOT, doc), 'utf8')
    .split('\n')
    .map((l) => {
      if (/^```/.test(l)) {
        inFence = !inFence;
        return '';
      }
      return inFence ? '' : l;
    });
}

/** The anchors GitHub gives `doc`'s headings (`## The barrier` -> `the-barrier`; repeats get -1, -2). */
export function anchors(doc: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(doc)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/`/g, '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}

/** The relative links of `doc` (not http(s):, mailto:), with their line. */
export function relativeLinks(doc: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  prose(doc).forEach((line, i) => {
    const text = line.replace(/`[^`]*`/g, ''); // a link in inline code is no link
    for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (!/^(https?:|mailto:)/.test(m[1])) links.push({ line: i + 1, target: m[1] });
    }
  });
  return links;
}
