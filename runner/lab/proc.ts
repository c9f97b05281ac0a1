import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where the lab's tools live; a non-login root shell may lack the sbin directories. */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The environment with the system directories appended to PATH, plus `extra`. */
export function systemEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const path = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SYSTEM_PATH];
  return { ...process.env, PATH: [...new Set(path)].join(':'), ...extra };
}

/** Runs a program (no shell) and resolves with its stdout; rejects with its stderr in the message. */
export function run(
  file: string,
  args: readonly string[],
  options: { input?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: systemEnv(), maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const detail = lastLines(String(stderr).trim() || String(stdout).trim(), 40);
          reject(new Error(`${commandLine(file, args)}: ${detail || error.message}`, { cause: error }));
        } else {
          resolve(String(stdout));
        }
      },
    );
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input ?? '');
  });
}

/** The command for messages, shortened: mmdebstrap's arguments carry a whole hook script. */
function commandLine(file: string, args: readonly string[]): string {
  const text = [file, ...args].join(' ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** Runs a program for its effect where failure means "already done" (deleting what is gone). */
export async function runIgnoringFailure(file: string, args: readonly string[]): Promise<void> {
  await run(file, args).catch(() => undefined);
}

/**
 * True when `pid` is alive and its command line contains `marker`. Checking the command line
 * keeps a recorded PID that the kernel has since given to an unrelated process from being killed.
 */
export function processMatches(pid: number, marker: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(marker);
  } catch {
    return false;
  }
}

/**
 * True when `pid` runs (a zombie does not count: on machines whose PID 1 does not reap orphans,
 * exited processes linger as zombies).
 */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop()?.[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Polls `probe` every `intervalMs` until it returns true; false if `timeoutMs` passes first. */
export async function waitUntil(probe: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/**
 * Stops the process `pid` if it is still the one we started (its command line contains
 * `marker`): SIGTERM, up to `graceMs` to exit, then SIGKILL.
 */
export async function terminate(pid: number, marker: string, graceMs: number): Promise<void> {
  if (!processMatches(pid, marker)) return;
  signal(pid, 'SIGTERM');
  if (await waitUntil(() => !processMatches(pid, marker), graceMs)) return;
  signal(pid, 'SIGKILL');
  await waitUntil(() => !processMatches(pid, marker), 5000);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Exited between the check and the signal: nothing left to stop.
  }
}

function lastLines(text: string, count: number): string {
  return text.split('\n').slice(-count).join('\n');
}

/** The last `lines` lines of a text file, or a note that it cannot be read. */
export function tail(path: string, lines = 30): string {
  try {
    return lastLines(readFileSync(path, 'utf8').trimEnd(), lines);
  } catch (error) {
    return `(no ${path}: ${(error as Error).message})`;
  }
}
