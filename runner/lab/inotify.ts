/**
 * The machine's inotify limits, which full-systemd lab hosts exhaust. Every container's processes
 * run as the machine's root, and inotify instances are counted per user: each host's systemd, logind,
 * dbus and getty hold about 14 (measured here: 3 hosts, 42 instances), and Debian's default
 * fs.inotify.max_user_instances is 128. Past it a container's systemd dies at boot ("Failed to create
 * control group inotify object: Too many open files") and the host never answers — seen in CI as a
 * container that exited with an empty console, with two labs' hosts up at once.
 */
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';

const INSTANCES = '/proc/sys/fs/inotify/max_user_instances';
const WATCHES = '/proc/sys/fs/inotify/max_user_watches';

/** Instances budgeted per host: about 14 at boot, the rest for what tests start (containerd, kubelet…). */
const INSTANCES_PER_HOST = 32;
/** Floors, as kind documents for nodes run as containers (its "known issues": 512 and 524288). */
const MIN_INSTANCES = 512;
const MIN_WATCHES = 524_288;

/** inotify instances open on this machine now (every process's inotify file descriptors). */
export function inotifyInstancesInUse(): number {
  let count = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited, or not ours to read
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify') count += 1;
      } catch {
        // closed while we looked
      }
    }
  }
  return count;
}

function readLimit(path: string): number {
  return Number(readFileSync(path, 'utf8').trim());
}

/**
 * Raises the inotify limits so that `hosts` more full-systemd hosts can boot, and returns what it
 * changed, for the lab to say (the settings are the machine's, not the lab's, and stay raised).
 * Never lowers a limit.
 */
export function ensureInotifyHeadroom(hosts: number): string[] {
  const changes: string[] = [];
  const instances = Math.max(MIN_INSTANCES, inotifyInstancesInUse() + INSTANCES_PER_HOST * hosts);
  for (const [path, wanted] of [[INSTANCES, instances], [WATCHES, MIN_WATCHES]] as const) {
    const current = readLimit(path);
    if (current >= wanted) continue;
    writeFileSync(path, `${wanted}\n`);
    changes.push(`${path.replace('/proc/sys/', '').replaceAll('/', '.')} ${current} → ${wanted}`);
  }
  return changes;
}

/** One line on the inotify budget, for a boot failure's message. */
export function inotifyReport(): string {
  return `inotify instances in use ${inotifyInstancesInUse()} of fs.inotify.max_user_instances ${readLimit(INSTANCES)}`;
}
