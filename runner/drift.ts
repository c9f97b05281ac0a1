import { createTwoFilesPatch } from 'diff';
import { isSecret } from './secret.js';
import type { Drift, DriftValue } from './task.js';
import type { ShownDrift } from './events.js';

/** Turns task drift into what may be shown: secrets as ***, file content as a unified diff. */
export function showDrift(drift: Drift): ShownDrift {
  const shown: ShownDrift = { subject: drift.subject };
  if (drift.pending) shown.pending = drift.pending;
  if (drift.file !== undefined) {
    if (isSecret(drift.current) || isSecret(drift.desired)) {
      shown.diff = `--- ${drift.file}\n+++ ${drift.file}\n(secret content differs: not shown)\n`;
    } else {
      shown.diff = unifiedDiff(drift.file, drift.current ?? null, drift.desired ?? null);
    }
    return shown;
  }
  if (drift.current !== undefined) shown.current = showValue(drift.current);
  if (drift.desired !== undefined) shown.desired = showValue(drift.desired);
  return shown;
}

function showValue(value: DriftValue): string | null {
  if (value === null) return null;
  return isSecret(value) ? '***' : value;
}

/** A unified diff like `diff -u`, with /dev/null for a file that does not exist yet. */
export function unifiedDiff(path: string, current: string | null, desired: string | null): string {
  const patch = createTwoFilesPatch(
    current === null ? '/dev/null' : `${path} (current)`,
    desired === null ? '/dev/null' : `${path} (desired)`,
    current ?? '',
    desired ?? '',
    undefined,
    undefined,
    { context: 3 },
  );
  // The diff library starts with an "Index/====" header; diff -u does not.
  return patch.replace(/^=+\n/m, '').replace(/^Index:.*\n/m, '');
}

/** One line summary of a drift for plain output: "mode: 0600 → 0644". */
export function describeDrift(drift: ShownDrift): string {
  const pending = drift.pending ? ` (pending: ${drift.pending})` : '';
  if (drift.diff !== undefined) return `${drift.subject}${pending}`;
  if (drift.current === undefined && drift.desired === undefined) return `${drift.subject}${pending}`;
  if (drift.current === undefined) return `${drift.subject}: ${drift.desired ?? 'absent'}${pending}`;
  return `${drift.subject}: ${drift.current ?? 'absent'} → ${drift.desired ?? 'absent'}${pending}`;
}
