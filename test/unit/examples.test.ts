import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Every TSDoc `@example` of the task families and the runner's public modules, compiled against
 * the real signatures: a playbook written from an example must type-check. Each example becomes
 * the body of an async function that receives the playbook context (`play`, `inventory`,
 * `checkMode`, `extraVars` in scope) and sees every value the public API exports (runner/index.ts,
 * tasks/index.ts) and its own module's. Examples that are command lines (`capstan run …`) are not
 * code and are left out.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCES = [
  ...readdirSync(join(ROOT, 'tasks')).filter((f) => f.endsWith('.ts')).map((f) => join(ROOT, 'tasks', f)),
  ...['playbook.ts', 'quote.ts', 'local-file.ts', 'task.ts', 'secret.ts'].map((f) => join(ROOT, 'runner', f)),
];

interface Example {
  /** file:line and the exported name it documents. */
  where: string;
  code: string;
  module: string;
}

function examplesOf(file: string): Example[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found: Example[] = [];
  const visit = (node: ts.Node) => {
    for (const tag of ts.getJSDocTags(node)) {
      if (tag.tagName.text !== 'example') continue;
      const code = (ts.getTextOfJSDocComment(tag.comment) ?? '').trim();
      if (code === '' || /^capstan\s/.test(code)) continue;
      const line = source.getLineAndCharacterOfPosition(tag.getStart(source)).line + 1;
      const name = (node as { name?: ts.Identifier }).name?.getText(source) ?? '?';
      found.push({ where: `${relative(ROOT, file)}:${line} (${name})`, code, module: file });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const EXAMPLES = SOURCES.flatMap(examplesOf);

const OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  types: ['node'],
};

/** The names each module exports (values and types), read with the compiler's checker. */
function exportedNames(modules: string[]): Map<string, string[]> {
  const program = ts.createProgram(modules, OPTIONS);
  const checker = program.getTypeChecker();
  return new Map(
    modules.map((module) => {
      const symbol = checker.getSymbolAtLocation(program.getSourceFile(module)!);
      return [module, symbol ? checker.getExportsOfModule(symbol).map((s) => s.name) : []];
    }),
  );
}

/**
 * Compiles every example as a virtual file beside the sources and returns the errors per example.
 * Each sees, by name, what the public API exports (runner/index.ts first, then tasks/index.ts)
 * and what its own module exports.
 */
function compile(examples: Example[]): Map<string, string[]> {
  const api = [join(ROOT, 'runner/index.ts'), join(ROOT, 'tasks/index.ts')];
  const exports = exportedNames([...new Set([...api, ...examples.map((e) => e.module)])]);
  const virtual = new Map<string, { text: string; where: string }>();
  examples.forEach((example, index) => {
    const seen = new Set<string>(/^\s*(import|export)\s/m.test(example.code) ? [] : ['play', 'inventory', 'checkMode', 'extraVars']);
    const imports = [...api, example.module].map((module) => {
      const names = (exports.get(module) ?? []).filter((name) => !seen.has(name) && name !== 'default');
      names.forEach((name) => seen.add(name));
      return names.length ? `import { ${names.join(', ')} } from '../${relative(ROOT, module).replace(/\.ts$/, '.js')}';` : '';
    });
    // A whole module (a playbook file with its `export default`) stands as it is; a fragment runs in a playbook body.
    const topLevel = /^\s*(import|export)\s/m.test(example.code);
    const body = topLevel
      ? [example.code]
      : [
          "import type { PlaybookContext as ExampleContext } from '../runner/index.js';",
          'export async function example(ctx: ExampleContext): Promise<unknown> {',
          '  const { play, inventory, checkMode, extraVars } = ctx;',
          '  void play, inventory, checkMode, extraVars;',
          ...example.code.split('\n').map((line) => `  ${line}`),
          '  return undefined;',
          '}',
        ];
    const text = [...imports, ...body, ''].join('\n');
    virtual.set(join(ROOT, 'test', `.example-${index}.ts`), { text, where: example.where });
  });
  const host = ts.createCompilerHost(OPTIONS);
  const readFile = host.readFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (name) => virtual.get(resolve(name))?.text ?? readFile(name);
  host.fileExists = (name) => virtual.has(resolve(name)) || fileExists(name);
  host.getSourceFile = (name, version, onError) => {
    const entry = virtual.get(resolve(name));
    return entry ? ts.createSourceFile(name, entry.text, version, true) : getSourceFile(name, version, onError);
  };
  const program = ts.createProgram([...virtual.keys()], OPTIONS, host);
  const errors = new Map<string, string[]>();
  for (const [path, { where, text }] of virtual) {
    const diagnostics = ts.getPreEmitDiagnostics(program, program.getSourceFile(path));
    errors.set(
      where,
      diagnostics.map((d) => {
        const line = d.file && d.start !== undefined ? text.split('\n')[d.file.getLineAndCharacterOfPosition(d.start).line]?.trim() : '';
        return `${ts.flattenDiagnosticMessageText(d.messageText, ' ')} [in: ${line}]`;
      }),
    );
  }
  return errors;
}

describe('TSDoc @example blocks compile against the real signatures', function () {
  this.timeout(120_000);

  it('finds the examples of the task families and the runner', () => {
    expect(EXAMPLES.length).to.be.greaterThan(40);
  });

  it('every example type-checks (each error names the file, line and the function it documents)', () => {
    const failures = [...compile(EXAMPLES)].filter(([, errors]) => errors.length > 0).map(([where, errors]) => `${where}: ${errors.join('; ')}`);
    expect(failures, failures.join('\n')).to.deep.equal([]);
  });
});
