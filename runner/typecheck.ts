/**
 * Type-checks a playbook before any host is contacted. tsx loads playbooks by stripping their types,
 * so without this a misspelt option or a wrong argument (`content: 3`) reaches the hosts and fails
 * (or worse, half-works) there. The check asks the compiler for the
 * diagnostics of the playbook and of the user's own files it imports — not of Capstan's runner, tasks
 * or node_modules, which our CI checks — so it types only what those files use: seconds, not
 * the whole project's check (bench/typecheck.ts measures both).
 *
 * A successful check is cached (`~/.capstan/typecheck/`, or `CAPSTAN_CACHE_DIR/typecheck`) under the
 * playbook's path and the compiler's version, with the SHA-256 of every file the compiler read (the
 * tsconfig.json and those it extends, node_modules' declarations included): a second run with nothing
 * changed hashes those files and compiles nothing. A failed check is never cached.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { InputError } from './errors.js';
import { writeLocalFileAtomic } from './local-file.js';

/** The Capstan installation: its runner/, tasks/ and node_modules are the library, not the user's code. */
const CAPSTAN_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LIBRARY_DIRS = ['runner', 'tasks', 'lab', 'node_modules'].map((dir) => join(CAPSTAN_ROOT, dir) + sep);

/** Compiler options for a playbook outside any tsconfig.json: those Capstan's own code is checked with. */
const DEFAULT_OPTIONS = {
  target: 'ES2022',
  module: 'NodeNext',
  moduleResolution: 'NodeNext',
  strict: true,
  noUncheckedIndexedAccess: true,
  skipLibCheck: true,
  resolveJsonModule: true,
} as const;

/** What the cache keeps for one playbook whose check passed. */
interface CacheEntry {
  key: string;
  files: Record<string, string>;
}

/** Where checks are cached: `CAPSTAN_CACHE_DIR/typecheck`, else `~/.capstan/typecheck`. */
export function typecheckCacheDirectory(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.CAPSTAN_CACHE_DIR || join(homedir(), '.capstan'), 'typecheck');
}

/** The outcome, for the caller's timing and the bench. */
export interface TypecheckResult {
  /** True when the cache answered and nothing was compiled. */
  cached: boolean;
  /** How many source files the program read (0 when cached). */
  files: number;
}

/**
 * Type-checks the playbook at `path` and the user's files it imports.
 * @throws InputError listing every error as `file:line:col: message (TSnnnn)`, paths relative to
 *   the working directory, when the playbook does not type-check.
 */
export async function typecheckPlaybook(path: string, cacheDir = typecheckCacheDirectory()): Promise<TypecheckResult> {
  const playbook = resolve(path);
  // The cache is consulted before the compiler is even loaded (it alone costs ~0.4 s and 100 MB).
  const key = sha256(JSON.stringify({ typescript: typescriptVersion(), playbook }));
  const cacheFile = join(cacheDir, `${sha256(playbook).slice(0, 32)}.json`);
  if (cacheHit(cacheFile, key)) return { cached: true, files: 0 };

  const ts = (await import('typescript')).default;
  const { options, configFiles } = compilerOptions(ts, playbook);
  const program = ts.createProgram({ rootNames: [playbook], options });
  const userFiles = program.getSourceFiles().filter((file) => !program.isSourceFileDefaultLibrary(file) && !isLibrary(file.fileName));
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...userFiles.flatMap((file) => [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]),
  ].filter((diagnostic) => diagnostic.category === ts.DiagnosticCategory.Error);
  if (diagnostics.length > 0) {
    const lines = diagnostics.map((diagnostic) => formatDiagnostic(ts, diagnostic));
    throw new InputError(`playbook ${path} does not type-check (no host was contacted):\n${lines.map((line) => `  ${line}`).join('\n')}`);
  }
  // The tsconfig.json (and any it extends) are inputs as much as the sources are.
  const files: Record<string, string> = Object.fromEntries(configFiles.map((file) => [file, sha256(readFileSync(file, 'utf8'))]));
  for (const file of program.getSourceFiles()) {
    if (!program.isSourceFileDefaultLibrary(file)) files[file.fileName] = sha256(file.text);
  }
  saveCache(cacheFile, { key, files });
  return { cached: false, files: program.getSourceFiles().length };
}

function isLibrary(fileName: string): boolean {
  return LIBRARY_DIRS.some((dir) => fileName.startsWith(dir));
}

/**
 * The nearest tsconfig.json's options (its `include` is ignored: the playbook is the only root), else
 * the defaults; and the config files read (the tsconfig.json and those it extends).
 */
function compilerOptions(ts: typeof import('typescript'), playbook: string): { options: import('typescript').CompilerOptions; configFiles: string[] } {
  const configPath = ts.findConfigFile(dirname(playbook), ts.sys.fileExists);
  const fail = (errors: readonly import('typescript').Diagnostic[]) =>
    new InputError(`cannot type-check playbook ${playbook}: ${errors.map((error) => formatDiagnostic(ts, error)).join('; ')}`);
  if (!configPath) {
    const converted = ts.convertCompilerOptionsFromJson(DEFAULT_OPTIONS, dirname(playbook));
    if (converted.errors.length > 0) throw fail(converted.errors);
    return { options: onlyDiagnostics(converted.options), configFiles: [] };
  }
  const source = ts.readJsonConfigFile(configPath, ts.sys.readFile);
  const parsed = ts.parseJsonSourceFileConfigFileContent(source, ts.sys, dirname(configPath), undefined, configPath);
  // "No inputs were found" (TS18003) concerns `include`, which a playbook check does not use.
  const errors = parsed.errors.filter((error) => error.code !== 18003);
  if (errors.length > 0) throw fail(errors);
  return { options: onlyDiagnostics(parsed.options), configFiles: [configPath, ...(source.extendedSourceFiles ?? [])] };
}

/** Only diagnostics are wanted: never emit, whatever the project's tsconfig says. */
function onlyDiagnostics(options: import('typescript').CompilerOptions): import('typescript').CompilerOptions {
  return { ...options, noEmit: true, incremental: false, composite: false };
}

/** TypeScript's version from its package.json: a new compiler may judge the same files differently. */
function typescriptVersion(): string {
  const manifest = createRequire(import.meta.url).resolve('typescript/package.json');
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
}

function formatDiagnostic(ts: typeof import('typescript'), diagnostic: import('typescript').Diagnostic): string {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n    ');
  if (!diagnostic.file || diagnostic.start === undefined) return `${message} (TS${diagnostic.code})`;
  const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  return `${displayPath(diagnostic.file.fileName)}:${line + 1}:${character + 1}: ${message} (TS${diagnostic.code})`;
}

/** Relative to the working directory when under it (as the user typed it, usually), else absolute. */
function displayPath(file: string): string {
  const shown = relative(process.cwd(), file);
  return shown.startsWith('..') ? file : shown;
}

function cacheHit(cacheFile: string, key: string): boolean {
  let entry: CacheEntry;
  try {
    entry = JSON.parse(readFileSync(cacheFile, 'utf8')) as CacheEntry;
  } catch {
    return false;
  }
  if (entry.key !== key) return false;
  try {
    return Object.entries(entry.files).every(([file, hash]) => sha256(readFileSync(file, 'utf8')) === hash);
  } catch {
    return false; // a file the program read is gone: check again
  }
}

/** Written atomically, so that a concurrent run never reads half an entry. */
function saveCache(cacheFile: string, entry: CacheEntry): void {
  try {
    mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o700 });
    chmodSync(dirname(cacheFile), 0o700);
    writeLocalFileAtomic(cacheFile, JSON.stringify(entry), 0o600);
  } catch {
    // The cache only saves time: a directory we cannot write must not fail a run that type-checked.
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
