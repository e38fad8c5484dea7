// Builds the published package from lib/ (one implementation, no double-loading hazard):
//   dist/cjs/   the implementation, CommonJS (`require`, and Jest's CommonJS runtime), with its
//               type declarations and source maps whose sources are the shipped lib/*.ts;
//   dist/esm/   one thin ES module per entry point that re-exports the CommonJS implementation
//               (`import`), so an app that both imports and requires the package loads it once:
//               one DtmModule, one set of error classes, one module state.
// lib/ is written as ES modules (this repository's tests run it so); the few `import.meta.url`
// become `__filename`'s URL in the CommonJS output. Type errors fail the build (lib/ is also
// type-checked as part of `tsc -p tsconfig.json`).
// --js-only: the JavaScript alone, without the type check and the declarations, written over dist/ (npm run test:unit).
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const cjsDir = join(dist, 'cjs');
const esmDir = join(dist, 'esm');
/** Entry points: the subpath of `exports` and its module under lib/. */
const ENTRY_POINTS = [
  { subpath: '.', source: 'index', esm: 'index' },
  { subpath: './testing', source: 'testing/index', esm: 'testing' },
];

const configFile = join(root, 'tsconfig.build.json');
const parsed = ts.getParsedCommandLineOfConfigFile(configFile, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => fail([d]) });
if (!parsed) fail([]);

function fail(diagnostics) {
  if (diagnostics.length > 0) {
    console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
  }
  console.error('build failed');
  process.exit(1);
}

const jsOnly = process.argv.includes('--js-only');
// --js-only rewrites the JavaScript in place (it leaves declarations a full build wrote)
if (!jsOnly) rmSync(dist, { recursive: true, force: true });

// 1. type check, declarations and their maps (from the ES-module sources: the same text for both formats)
if (!jsOnly) {
  const program = ts.createProgram(parsed.fileNames, { ...parsed.options, outDir: cjsDir, declaration: true, declarationMap: true, emitDeclarationOnly: true, noEmit: false, incremental: false });
  const emitted = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  if (diagnostics.length > 0) fail(diagnostics);
}

// 2. the CommonJS implementation, file by file (the sources are isolatedModules-safe)
/** `import.meta.url` as CommonJS has it. */
const importMetaUrl = (context) => (sourceFile) => {
  const f = context.factory;
  const visit = (node) => {
    if (ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) && node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && node.name.text === 'url') {
      // module.require: the file may have a `require` of its own (createRequire(import.meta.url))
      const moduleRequire = f.createPropertyAccessExpression(f.createIdentifier('module'), 'require');
      const pathToFileURL = f.createPropertyAccessExpression(f.createCallExpression(moduleRequire, undefined, [f.createStringLiteral('node:url')]), 'pathToFileURL');
      return f.createPropertyAccessExpression(f.createCallExpression(pathToFileURL, undefined, [f.createIdentifier('__filename')]), 'href');
    }
    return ts.visitEachChild(node, visit, context);
  };
  return ts.visitNode(sourceFile, visit);
};
const libDir = join(root, 'lib');
for (const file of parsed.fileNames) {
  const out = join(cjsDir, relative(libDir, file)).replace(/\.ts$/, '.js');
  const result = ts.transpileModule(readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: { ...parsed.options, module: ts.ModuleKind.CommonJS, declaration: false, declarationMap: false, sourceMap: true, inlineSources: false, outDir: undefined, rootDir: undefined },
    transformers: { before: [importMetaUrl] },
    reportDiagnostics: false, // the program above reported every error; only the CommonJS option combination would be reported here
  });
  const map = JSON.parse(result.sourceMapText);
  map.file = out.slice(dirname(out).length + 1);
  map.sources = [relative(dirname(out), file)];
  delete map.sourceRoot;
  mkdirSync(dirname(out), { recursive: true });
  const base = out.slice(dirname(out).length + 1);
  writeFileSync(out, result.outputText.replace(/\/\/# sourceMappingURL=.*$/m, `//# sourceMappingURL=${base}.map`));
  writeFileSync(`${out}.map`, JSON.stringify(map));
}
writeFileSync(join(cjsDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);

// 3. the ES module entry points: re-exports of the CommonJS implementation, and their types
const require = createRequire(import.meta.url);
mkdirSync(esmDir, { recursive: true });
for (const entry of ENTRY_POINTS) {
  const target = `../cjs/${entry.source}.js`;
  const names = Object.keys(require(join(cjsDir, `${entry.source}.js`))).filter((n) => n !== '__esModule').sort();
  writeFileSync(
    join(esmDir, `${entry.esm}.mjs`),
    `// The ES module entry: the CommonJS implementation, loaded once whichever way the app loads it.\n` +
      `import implementation from '${target}';\n\nexport const {\n${names.map((n) => `  ${n},`).join('\n')}\n} = implementation;\n`,
  );
  writeFileSync(join(esmDir, `${entry.esm}.d.mts`), `export * from '${target}';\n`);
}

// 4. what the testing entry point needs to build a DTM server with Go: the pinned module
cpSync(join(root, 'test', 'support', 'dtm-server'), join(dist, 'dtm-server'), { recursive: true, filter: (src) => !src.endsWith('/dtm') });
