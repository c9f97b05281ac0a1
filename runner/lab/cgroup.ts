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
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

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

/** Removes the host's groups once its container is gone: groups are removed leaves first (rmdir). */
export function removeHostCgroups(name: string): void {
  for (const [mount, path] of hierarchies()) removeTree(join(mount, path, name));
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeTree(join(dir, entry.name));
  try {
    rmdirSync(dir);
  } catch {
    // still holds a process (the container did not stop): left for the next teardown
  }
}
