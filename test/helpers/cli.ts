import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../runner/bin.mjs', import.meta.url));

/**
 * Every CLI run of this test process (its args, stdout and stderr; never its stdin, which carries -K
 * passwords) is appended here as one JSON line, so the secrets scan (test/helpers/secrets-scan.ts),
 * run after every test of the process by a root hook, can check that no known test secret was ever
 * printed by any test's capstan run.
 * `CAPSTAN_TEST_OUTPUT_LOG` overrides the path; by default it is per mocha process.
 */
export const CLI_OUTPUT_LOG = process.env.CAPSTAN_TEST_OUTPUT_LOG ?? join(tmpdir(), `capstan-cli-output-${process.pid}.jsonl`);

/** One logged CLI run. */
export interface LoggedRun {
  args: string[];
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** The retry directory of the run (CAPSTAN_RETRY_DIR or ~/.capstan/retry) and the files in it after the run. */
  retryDir: string;
  retryFiles: Record<string, string>;
  /** The run logs (runner/report/run-log.ts) in the run's CAPSTAN_RUNS_DIR after the run, by path. */
  runLogs: Record<string, string>;
}

/**
 * Secrets that test fixtures hand to Capstan (as Secret values, -K input or inventory passwords):
 * none of them may ever appear in what Capstan prints or writes on the controller. The lab user's
 * password (runner/lab LAB_USER_PASSWORD, 'capstan-lab') is scanned for as well.
 */
export const TEST_SECRETS = {
  joinToken: 'k7q2zx.s3cr3tj0int0ken9f8e7d6c',
  fileContent: 'CAPSTAN-TEST-PRIVATE-KEY-5b1e0c9d3a7f4e26',
  oldFileContent: 'CAPSTAN-TEST-OLD-SECRET-8d2c41f0ab93e7c5',
} as const;

/** The lab user's sudo password (runner/lab/rootfs.ts LAB_USER_PASSWORD), which -K tests type in. */
export const LAB_PASSWORD = 'capstan-lab';

/** Every secret the scan looks for. */
export const ALL_TEST_SECRETS: readonly string[] = [LAB_PASSWORD, ...Object.values(TEST_SECRETS)];

/**
 * The test secrets that occur in `text`. The lab's own paths (/var/tmp/capstan-lab-7/known_hosts,
 * …/apt.conf.d/01capstan-lab-proxy) contain the password's text "capstan-lab": an occurrence of the
 * password whose token (back to the last blank, quote, `=` or `:`) has a slash before it is such a
 * path, not a leak. Linear in the text: --json output can hold megabytes of diff on one line.
 */
export function secretsIn(text: string, secrets: readonly string[] = ALL_TEST_SECRETS): string[] {
  return secrets.filter((secret) => {
    for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) {
      if (secret !== LAB_PASSWORD || !inPath(text, at)) return true;
    }
    return false;
  });
}

function inPath(text: string, at: number): boolean {
  for (let i = at - 1; i >= 0 && at - i <= 4096; i--) {
    const c = text[i]!;
    if (c === '/') return true;
    if (/[\s'"`=:]/.test(c)) return false;
  }
  return false;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The run logs the run left in its runs directory, by path (read before a per-run directory is removed). */
  runLogs: Record<string, string>;
}

/**
 * Where per-run runs directories are made: inside CAPSTAN_RUNS_DIR when the suite is given one, else
 * in the system's temp directory. A test run never writes to the user's ~/.capstan/runs.
 */
const RUNS_PARENT = process.env.CAPSTAN_RUNS_DIR ?? tmpdir();

/** A new, empty runs directory for one CLI run (see RUNS_PARENT). */
export function newRunsDir(): string {
  return mkdtempSync(join(RUNS_PARENT, 'capstan-runs-'));
}

/** The files in `dir` as they are right after a run (tests delete their temp dirs before the scan runs). */
export function readFilesIn(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  try {
    for (const name of readdirSync(dir)) files[join(dir, name)] = readFileSync(join(dir, name), 'utf8');
  } catch {
    // no retry directory: nothing was written
  }
  return files;
}

function record(run: LoggedRun): void {
  try {
    appendFileSync(CLI_OUTPUT_LOG, `${JSON.stringify(run)}\n`);
  } catch {
    // The log serves the secrets scan; a test must not fail because it could not be written.
  }
}

/** A CLI run in progress, for tests that signal it (Ctrl-C) or watch its output as it comes. */
export interface CliProcess {
  child: ChildProcess;
  /** Output so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process has exited and its output is closed. */
  done: Promise<CliResult & { signal: string | null }>;
}

/** Starts the real `capstan` CLI (runner/bin.mjs) without a TTY; its output is logged like `capstan()`'s. */
export function startCapstan(args: string[], options: { input?: string; env?: Record<string, string> } = {}): CliProcess {
  // Each run gets its own runs directory (unless the test names one), so its logs are its own and
  // pruning never sees another run's; it is read for the secrets scan and removed when the run ends.
  const ownRunsDir = options.env?.CAPSTAN_RUNS_DIR === undefined;
  if (ownRunsDir) mkdirSync(RUNS_PARENT, { recursive: true });
  const runsDir = options.env?.CAPSTAN_RUNS_DIR ?? newRunsDir();
  const env = { ...process.env, ...options.env, CAPSTAN_RUNS_DIR: runsDir };
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin!.on('error', () => {});
  const done = new Promise<CliResult & { signal: string | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const retryDir = options.env?.CAPSTAN_RETRY_DIR ?? process.env.CAPSTAN_RETRY_DIR ?? join(homedir(), '.capstan', 'retry');
      const runLogs = readFilesIn(runsDir);
      if (ownRunsDir) rmSync(runsDir, { recursive: true, force: true });
      record({ args, code, signal, stdout, stderr, retryDir, retryFiles: readFilesIn(retryDir), runLogs });
      resolve({ code, signal, stdout, stderr, runLogs });
    });
  });
  child.stdin!.end(options.input ?? '');
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    done,
  };
}

/** Runs the real `capstan` CLI (runner/bin.mjs) as a user would, without a TTY (plain or --json output). */
export async function capstan(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const { code, stdout, stderr, runLogs } = await startCapstan(args, options).done;
  return { code, stdout, stderr, runLogs };
}

/** The recap line of a --json run, parsed. */
export function recapOf(stdout: string): Record<string, { ok: number; changed: number; failed: number; skipped: number; unreachable: boolean }> {
  const last = stdout.trim().split('\n').pop() ?? '';
  const event = JSON.parse(last) as { type: string; hosts: never };
  if (event.type !== 'recap') throw new Error(`last line is not the recap: ${last}`);
  return event.hosts;
}

/** Every JSON event of a --json run. */
export function eventsOf(stdout: string): Record<string, unknown>[] {
  return stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
}
