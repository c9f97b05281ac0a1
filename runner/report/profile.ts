import type { HostUsage, Reporter, RunEvent, RunProfile } from '../events.js';

/** How many of the slowest tasks --profile lists. */
export const PROFILE_SLOWEST_TASKS = 10;

/**
 * --profile (Ansible's profile_tasks, per play and host as well): a reporter in front of `inner` that
 * times nothing itself — the runner's events carry every duration — and adds the slowest tasks and
 * each play's wall time, per host, to the recap event that `inner` (and the run log) receives.
 */
export function withProfile(inner: Reporter): Reporter {
  const events: RunEvent[] = [];
  return {
    emit(event) {
      if (event.type !== 'recap') {
        if (event.type === 'play' || event.type === 'task' || event.type === 'host-done' || event.type === 'play-end') events.push(event);
        return inner.emit(event);
      }
      return inner.emit({ ...event, profile: profileOf(events) });
    },
    close: () => inner.close(),
  };
}

/** The profile of a run from its events (pure): tasks by duration, plays in the order they started. */
export function profileOf(events: readonly RunEvent[]): RunProfile {
  const slowest: RunProfile['slowest'] = [];
  const plays: (RunProfile['plays'][number] & { order: string[]; ended: boolean })[] = [];
  // Plays usually run one after another, but a playbook may start two at once: events name their play.
  const openPlay = (title: string) => [...plays].reverse().find((p) => p.title === title && !p.ended);
  for (const event of events) {
    switch (event.type) {
      case 'task':
        slowest.push({ host: event.host, task: event.task, title: event.title, durationMs: event.durationMs });
        break;
      case 'play':
        plays.push({ title: event.title, hosts: [], order: event.hosts, ended: false });
        break;
      case 'host-done':
        openPlay(event.play)?.hosts.push({ host: event.host, durationMs: event.durationMs });
        break;
      case 'play-end': {
        const play = openPlay(event.title);
        if (play) Object.assign(play, { durationMs: event.durationMs, ended: true });
        break;
      }
      default:
        break;
    }
  }
  // A stable sort: equal durations keep the order the tasks ran in.
  slowest.sort((a, b) => b.durationMs - a.durationMs);
  return {
    slowest: slowest.slice(0, PROFILE_SLOWEST_TASKS),
    plays: plays.map(({ title, durationMs, hosts, order }) => ({
      title,
      ...(durationMs === undefined ? {} : { durationMs }),
      hosts: [...hosts].sort((a, b) => order.indexOf(a.host) - order.indexOf(b.host)),
    })),
  };
}

const seconds = (ms: number) => (ms / 1000).toFixed(1).padStart(7);

/** The profile as the lines printed under the recap table (plain and TTY reporters). */
export function profileLines(profile: RunProfile): string[] {
  const hostWidth = Math.max(4, ...profile.slowest.map((t) => t.host.length));
  const lines = ['', 'SLOWEST TASKS', `SECONDS  ${'HOST'.padEnd(hostWidth)}  TASK`];
  for (const task of profile.slowest) lines.push(`${seconds(task.durationMs)}  ${task.host.padEnd(hostWidth)}  ${task.title}`);
  if (!profile.slowest.length) lines.push('      -  (no task ran)');
  lines.push('', 'PLAYS (wall time, then each host\'s)', 'SECONDS  PLAY / HOST');
  for (const play of profile.plays) {
    lines.push(`${play.durationMs === undefined ? '      -' : seconds(play.durationMs)}  ${play.title}${play.durationMs === undefined ? ' (stopped the playbook)' : ''}`);
    for (const host of play.hosts) lines.push(`${seconds(host.durationMs)}    ${host.host}`);
  }
  return lines;
}

/**
 * What reaching each host cost, printed with the profile: SSH connections, sessions (each an sshd
 * session with PAM and logind on a systemd host) and round trips. Pure.
 */
export function usageLines(usage: Record<string, HostUsage> | undefined): string[] {
  const hosts = Object.entries(usage ?? {});
  if (hosts.length === 0) return [];
  const hostWidth = Math.max(4, ...hosts.map(([name]) => name.length));
  return [
    '',
    'COST OF REACHING EACH HOST',
    `${'HOST'.padEnd(hostWidth)}  CONNECTIONS  SESSIONS  ROUND TRIPS`,
    ...hosts.map(([name, u]) => `${name.padEnd(hostWidth)}  ${String(u.connections).padStart(11)}  ${String(u.sessions).padStart(8)}  ${String(u.roundTrips).padStart(11)}`),
  ];
}
