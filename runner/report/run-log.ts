/**
 * The run log: every `capstan run` writes its JSON events (the --json events, redacted the same way)
 * to `~/.capstan/runs/<UTC time>-<playbook>.jsonl`, so a run that scrolled away, or ran in a CI job
 * whose output is gone, can still be read afterwards. The newest RUN_LOGS_KEPT logs are kept.
 */
import { chmodSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { errorMessage } from '../errors.js';
import type { Reporter } from '../events.js';
import { JsonReporter } from './json.js';

/** How many run logs are kept in the runs directory; older ones are removed when a run starts. */
export const RUN_LOGS_KEPT = 50;

/** `CAPSTAN_RUNS_DIR`, else `~/.capstan/runs`. */
export function runsDirectory(env: NodeJS.ProcessEnv = process.env): string {
  return env.CAPSTAN_RUNS_DIR || join(homedir(), '.capstan', 'runs');
}

/** Names of run logs (and only those: pruning never touches another file of the directory). */
const RUN_LOG_NAME = /^\d{8}T\d{6}\.\d{3}Z-.+\.jsonl$/;

/**
 * The log's file name for a playbook started at `now` (pure): `20261202T164612.345Z-single-node.jsonl`.
 * The UTC time comes first so that names sort in the order the runs started.
 */
export function runLogName(playbookPath: string, now: Date): string {
  const time = now.toISOString().replace(/[-:]/g, '');
  const name = basename(playbookPath).replace(/\.[cm]?[jt]s$/, '').replace(/[^A-Za-z0-9._-]/g, '_') || 'playbook';
  return `${time}-${name}.jsonl`;
}

export interface RunLog {
  /** The log file. */
  readonly path: string;
  /** Writes each event as one JSON line (--json's format) to the log. */
  readonly reporter: Reporter;
}

export interface RunLogOptions {
  /** The runs directory ({@link runsDirectory}); made 0700 when missing. */
  dir: string;
  playbookPath: string;
  /** File diffs in task events, as --json with --diff. */
  diff: boolean;
  /** Told once when a write fails (a full disk): the run goes on without its log. */
  warn: (message: string) => void;
  now?: Date;
  keep?: number;
}

/**
 * Creates a new run log and prunes the oldest beyond `keep` (this one included). The directory must
 * be a real directory owned by this user (made 0700, tightened to 0700 when it is looser); the file
 * is created 0600 with O_EXCL|O_NOFOLLOW, so a symlink planted where the log goes is never followed:
 * that name is passed over for the next free one. Throws when no log can be made; the caller decides
 * whether a run goes on without one.
 *
 * @example
 * const log = openRunLog({ dir: runsDirectory(), playbookPath: 'playbooks/single-node.ts', diff: false, warn });
 * const reporter = teeReporter(log.reporter, display);
 */
export function openRunLog(options: RunLogOptions): RunLog {
  const { dir } = options;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  if (stat.isSymbolicLink()) throw new Error(`runs directory ${dir} is a symlink: refusing to write run logs through it`);
  if (!stat.isDirectory()) throw new Error(`runs directory ${dir} is not a directory`);
  if (process.getuid && stat.uid !== process.getuid()) throw new Error(`runs directory ${dir} is owned by uid ${stat.uid}, not by this user`);
  if ((stat.mode & 0o777) !== 0o700) chmodSync(dir, 0o700); // ours: logs name hosts and tasks, so only we may list them
  const name = runLogName(options.playbookPath, options.now ?? new Date());
  const { fd, path } = createExclusive(dir, name);
  prune(dir, basename(path), options.keep ?? RUN_LOGS_KEPT);
  let failed = false;
  // Synchronous writes: every event is in the file before the run goes on, so a second Ctrl-C
  // (process.exit) or a crash leaves the log complete up to that moment.
  const write = (text: string) => {
    if (failed) return;
    try {
      writeSync(fd, text);
    } catch (error) {
      failed = true;
      options.warn(`run log ${path}: ${errorMessage(error)}: the rest of this run is not logged`);
    }
  };
  const json = new JsonReporter(write, { diff: options.diff });
  let open = true;
  return {
    path,
    reporter: {
      emit: (event) => json.emit(event),
      close: () => {
        if (open) closeSync(fd);
        open = false;
      },
    },
  };
}

/** Opens `name` in `dir` new (O_EXCL, O_NOFOLLOW, 0600), or `name-2.jsonl`, … when it exists. */
function createExclusive(dir: string, name: string): { fd: number; path: string } {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  for (let attempt = 1; attempt <= 10; attempt++) {
    const path = join(dir, attempt === 1 ? name : name.replace(/\.jsonl$/, `-${attempt}.jsonl`));
    try {
      const fd = openSync(path, flags, 0o600);
      fchmodSync(fd, 0o600); // exactly 0600 whatever the umask
      return { fd, path };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  throw new Error(`cannot create a run log ${join(dir, name)}: that name and 9 others exist already`);
}

/** Removes the oldest run logs so that `keep` remain, `current` (never removed) included. */
function prune(dir: string, current: string, keep: number): void {
  const others = readdirSync(dir).filter((name) => name !== current && RUN_LOG_NAME.test(name)).sort();
  for (const name of others.slice(0, Math.max(0, others.length - (keep - 1)))) {
    try {
      unlinkSync(join(dir, name)); // a symlink is removed itself, never what it points to
    } catch {
      // Another run pruned it first, or it is a directory: neither stops this run.
    }
  }
}

/**
 * One reporter that passes every event to each of `reporters` in turn, at the moment it is emitted
 * (so the display keeps its timing), and waits for those that answer with a promise.
 */
export function teeReporter(...reporters: Reporter[]): Reporter {
  const all = (results: (void | Promise<void>)[]) => {
    const pending = results.filter((r): r is Promise<void> => r instanceof Promise);
    return pending.length ? Promise.all(pending).then(() => undefined) : undefined;
  };
  return {
    emit: (event) => all(reporters.map((r) => r.emit(event))),
    close: () => all(reporters.map((r) => r.close())),
  };
}
