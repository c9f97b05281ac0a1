import type { CheckedChange } from '../check-results.js';
import { describeDrift } from '../drift.js';
import { escapeControl } from './format.js';

/**
 * The change table `run --confirm` shows before asking (pure): play by play, each change the check
 * found once with the hosts it would be made on — the same task with the same drift on several hosts
 * is one row, its hosts in `hostOrder` (the inventory's) — and what it changes in a few words (the
 * full drift and diffs are in the check's output above).
 */
export function changeTable(changes: readonly CheckedChange[], hostOrder: readonly string[]): string {
  const rank = (host: string) => (hostOrder.includes(host) ? hostOrder.indexOf(host) : hostOrder.length);
  const rows = new Map<string, { play: string; title: string; summary: string; hosts: string[] }>();
  for (const change of changes) {
    const key = JSON.stringify([change.play, change.task, change.title, change.drift, change.message ?? null]);
    const row = rows.get(key);
    if (row) row.hosts.push(change.host);
    else rows.set(key, { play: change.play, title: change.title, summary: summaryOf(change), hosts: [change.host] });
  }
  const hosts = new Set(changes.map((c) => c.host));
  const lines = [`CHANGES TO APPLY (${changes.length} on ${hosts.size} host${hosts.size === 1 ? '' : 's'})`];
  let play: string | undefined;
  for (const row of rows.values()) {
    if (row.play !== play) lines.push(`[${(play = row.play)}]`);
    lines.push(`  ${[...row.hosts].sort((a, b) => rank(a) - rank(b)).join(', ')} | ${row.title}${row.summary ? ` | ${row.summary}` : ''}`);
  }
  return `${lines.map(escapeControl).join('\n')}\n`;
}

/** One line of what a change does: its drift summaries, or why it is predicted. */
function summaryOf(change: CheckedChange): string {
  const text = change.drift.map(describeDrift).join('; ');
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
