import type { Facts } from '../facts.js';
import type { PlannedPlay } from '../run.js';
import type { HostView, Task } from '../task.js';
import { escapeControl } from './format.js';

/**
 * Facts for naming a per-host task without contacting its host: any read throws, so a title that
 * needs facts is reported as such instead of being made up from empty values.
 */
const NO_FACTS = new Proxy({} as Facts, {
  get: () => {
    throw new Error('facts are read when the host is contacted');
  },
});

/**
 * A task's title on the play's hosts without contacting any (pure): its one title, one line per
 * distinct title with the hosts it is for when per-host parameters make them differ, or its kind
 * when its parameters need the hosts' facts.
 */
function taskTitles(task: Task<unknown>, play: PlannedPlay, extraVars: Record<string, unknown>): string[] {
  if (task.static) return [task.static.title];
  if (task.options.title !== undefined) return [task.options.title];
  const hostsByTitle = new Map<string, string[]>();
  try {
    for (const host of play.hosts) {
      const view: HostView = { name: host.name, vars: { ...host.vars, ...extraVars }, facts: NO_FACTS };
      const title = task.bind(view).title;
      hostsByTitle.set(title, [...(hostsByTitle.get(title) ?? []), host.name]);
    }
  } catch {
    return [`${task.kind} (parameters from each host's facts: named when the run reaches the host)`];
  }
  if (hostsByTitle.size === 0) return [`${task.kind} (per host)`];
  if (hostsByTitle.size === 1) return [...hostsByTitle.keys()];
  return [...hostsByTitle].map(([title, hosts]) => `${title}  [${hosts.join(', ')}]`);
}

function playOptionsNote(play: PlannedPlay): string {
  const notes = [
    ...(play.options.runOnce ? ['run once'] : []),
    ...(play.options.serial !== undefined ? [`serial ${JSON.stringify(play.options.serial)}`] : []),
    ...(play.options.anyErrorsFatal ? ['any errors fatal'] : []),
    ...(play.options.maxFailPercent !== undefined ? [`max fail ${play.options.maxFailPercent}%`] : []),
  ];
  return notes.length ? `  [${notes.join(', ')}]` : '';
}

/**
 * What `run --list-hosts` / `--list-tasks` print (pure): each planned play with its pattern and,
 * as asked, the hosts it would run on and its tasks, in order. Ansible's layout, without tags.
 */
export function planListing(playbookName: string, plays: readonly PlannedPlay[], show: { hosts: boolean; tasks: boolean }, extraVars: Record<string, unknown> = {}): string {
  const lines = [`playbook: ${playbookName}`];
  plays.forEach((play, index) => {
    lines.push('', `  play #${index + 1} (${play.pattern}): ${play.title}${playOptionsNote(play)}`);
    if (show.hosts) {
      lines.push(`    hosts (${play.hosts.length}):`, ...play.hosts.map((h) => `      ${h.name}`));
    }
    if (show.tasks) {
      lines.push(`    tasks (${play.tasks.length}):`);
      for (const task of play.tasks) {
        const conditional = task.options.when ? '  (conditional)' : '';
        lines.push(...taskTitles(task, play, extraVars).map((title) => `      ${title}${conditional}`));
      }
    }
  });
  return `${lines.map(escapeControl).join('\n')}\n`;
}
