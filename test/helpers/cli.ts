import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../runner/bin.mjs', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `capstan` CLI (runner/bin.mjs) as a user would, without a TTY (plain or --json output). */
export function capstan(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
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
