/**
 * One control group per lab host. systemd-nspawn with --keep-unit (the lab registers nothing with
 * the machine's systemd, which may not exist) makes its `supervisor` and `payload` groups inside the
 * cgroup it was started in — the lab process's, the same for every host. All the containers' systemds
 * then shared one `payload/system.slice`: a unit finishing on one host removed the unit's group
 * another host was starting into (seen: "systemd-user-sessions.service: Failed to attach to cgroup
 * /system.slice/systemd-user-sessions.service: No such file or directory", status=219/CGROUP,
 * /run/nologin kept, logins closed; about one 10-host lab in ten here), and a `systemctl stop` on one
 * host acted on a group holding the others' processes. Started inside its own group, each nspawn
 * makes its host's tree there, as machined would.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitUntil } from './proc.js';

/** The hierarchies nspawn uses, as [mount point, this process's path in it from /proc/self/cgroup]. */
function hierarchies(): [string, string][] {
  const own = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (match) own.set(match[1]!, match[2]!);
  }
  const found: [string, string][] = [];
  // cgroup v1 (legacy or hybrid): systemd's named hierarchy, and the unified one beside it when mounted.
  if (existsSync('/sys/fs/cgroup/systemd/cgroup.procs') && own.has('name=systemd')) found.push(['/sys/fs/cgroup/systemd', own.get('name=systemd')!]);
  if (existsSync('/sys/fs/cgroup/unified/cgroup.procs') && own.has('')) found.push(['/sys/fs/cgroup/unified', own.get('')!]);
  // cgroup v2 only.
  if (found.length === 0 && existsSync('/sys/fs/cgroup/cgroup.controllers') && own.has('')) found.push(['/sys/fs/cgroup', own.get('')!]);
  return found;
}

/**
 * Creates the host's groups (named after its network namespace, unique across parallel labs) and
 * returns their `cgroup.procs` files, for the boot command to move itself into before it runs
 * nspawn. None when this machine has no cgroup hierarchy we can write (nspawn then runs as before).
 */
export function hostCgroupProcs(name: string): string[] {
  const procs: string[] = [];
  for (const [mount, path] of hierarchies()) {
    const dir = join(mount, path, name);
    try {
      mkdirSync(dir, { recursive: true });
      procs.push(join(dir, 'cgroup.procs'));
    } catch {
      // a read-only or delegated-away hierarchy: leave this one out
    }
  }
  return procs;
}

/**
 * Kills every process left in the host's groups, waits until they are gone, and removes the groups
 * (leaves first). nspawn killed after its grace period leaves its container running: its systemd,
 * sshd and the rest, in the host's network namespace and group. A later boot of a host of the same
 * name then met them there — its nspawn exiting at once, or its logins never opening, or its sshd
 * unable to bind the port the orphan held (each seen in CI). Only lab hosts' processes are in these
 * groups, so all of them go: cgroup.kill on cgroup v2, SIGKILL to each listed process on v1.
 */
export async function removeHostCgroups(name: string, timeoutMs = 10_000): Promise<void> {
  const dirs = hierarchies().map(([mount, path]) => join(mount, path, name)).filter((dir) => existsSync(dir));
  await waitUntil(() => {
    const left = dirs.filter((dir) => processesIn(dir).length > 0);
    for (const dir of left) killAll(dir);
    return left.length === 0;
  }, timeoutMs);
  for (const dir of dirs) removeTree(dir);
}

/** The PIDs in `dir` and its descendants. */
function processesIn(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const own = readText(join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
  const children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => processesIn(join(dir, e.name)));
  return [...own, ...children];
}

function killAll(dir: string): void {
  if (existsSync(join(dir, 'cgroup.kill'))) {
    try {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
      return;
    } catch {
      // fall through to one signal per process
    }
  }
  for (const pid of processesIn(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeTree(join(dir, entry.name));
  try {
    rmdirSync(dir);
  } catch {
    // still holds a process that outlived SIGKILL (uninterruptible): left for the next teardown
  }
}
