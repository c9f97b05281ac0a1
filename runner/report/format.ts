import { describeDrift } from '../drift.js';
import type { HostRecap, RunEvent } from '../events.js';

type TaskEvent = Extract<RunEvent, { type: 'task' }>;

/**
 * Lines describing a task result's drift: a summary per drift, and unified diffs when `diff` is on.
 * A drift that only restates the message ("would change (pending: …)") is not said twice.
 */
export function driftLines(event: TaskEvent, diff: boolean, indent = '    '): string[] {
  const lines: string[] = [];
  for (const drift of event.drift) {
    const bare = drift.diff === undefined && drift.current === undefined && drift.desired === undefined;
    if (bare && event.message?.startsWith(describeDrift(drift))) continue;
    if (drift.diff !== undefined && !diff) {
      lines.push(`${indent}${describeDrift(drift)} (--diff shows it)`);
      continue;
    }
    lines.push(`${indent}${describeDrift(drift)}`);
    if (drift.diff) lines.push(...drift.diff.trimEnd().split('\n').map((l) => `${indent}${l}`));
  }
  return lines;
}

export function statusWord(status: TaskEvent['status'], checkMode: boolean): string {
  if (status === 'changed') return checkMode ? 'would change' : 'changed';
  if (status === 'failed') return 'FAILED';
  return status;
}

/** The recap table printed at the end of human output. */
export function recapTable(hosts: Record<string, HostRecap>): string[] {
  const names = Object.keys(hosts);
  const width = Math.max(4, ...names.map((n) => n.length));
  const lines = [`${'HOST'.padEnd(width)}  ok  changed  failed  skipped  unreachable`];
  for (const name of names) {
    const h = hosts[name]!;
    lines.push(
      `${name.padEnd(width)}  ${String(h.ok).padStart(2)}  ${String(h.changed).padStart(7)}  ${String(h.failed).padStart(6)}  ${String(h.skipped).padStart(7)}  ${h.unreachable ? 'UNREACHABLE' : 'no'}`,
    );
  }
  return lines;
}

/** The line that ends every run's human output: `finished in 41.2 s`. */
export function finishedLine(durationMs: number): string {
  return `finished in ${(durationMs / 1000).toFixed(1)} s`;
}

/**
 * Shows control characters from hosts (command output, messages, file names) as `\xNN` so they cannot
 * move the cursor, clear the screen or retitle the terminal. Newlines and tabs are kept. --json keeps the raw text.
 */
export function escapeControl(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
