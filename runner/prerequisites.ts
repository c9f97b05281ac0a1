/**
 * What a check may find missing on a fresh host, and what an earlier change will make: in --check,
 * a task whose check waits for an earlier change names that change ("pending: packages containerd"),
 * not every change made before it on the host.
 */

/**
 * A thing a check needs, or a change provides: a program on the PATH, a file, a systemd unit file,
 * a unit that the change starts, or a package.
 */
export type Prerequisite = { command: string } | { file: string } | { unit: string } | { running: string } | { package: string };

/** A change still pending in --check, with what it will provide once applied. */
export interface PendingChange {
  title: string;
  provides: readonly Prerequisite[];
}

/**
 * Whether `provision` satisfies `need` (pure). Files match by path. A package provides the programs,
 * unit files and started services named after it — Debian's `containerd`, Docker's `containerd.io`,
 * Debian's `etcd-server` for `etcd`: the package name is the thing's name, or it followed by `.` or `-`
 * — since a package not yet installed cannot be asked which files it ships. A written file
 * provides the unit or program at that path.
 */
export function satisfies(provision: Prerequisite, need: Prerequisite): boolean {
  if ('file' in need) return 'file' in provision && provision.file === need.file;
  if ('package' in need) return 'package' in provision && provision.package === need.package;
  if ('running' in need) {
    if ('running' in provision) return unitOf(provision.running) === unitOf(need.running);
    return 'package' in provision && packageShips(provision.package, unitBase(need.running));
  }
  if ('unit' in need) {
    if ('file' in provision) return provision.file.endsWith(`/${unitOf(need.unit)}`);
    return 'package' in provision && packageShips(provision.package, unitBase(need.unit));
  }
  if ('file' in provision) return /\/s?bin\/[^/]+$/.test(provision.file) && provision.file.endsWith(`/${need.command}`);
  return 'package' in provision && packageShips(provision.package, need.command);
}

/**
 * The titles of the pending changes a task waits for (pure): those that provide one of its needs;
 * when it declares none, or none of them is pending, every pending change (it may depend on any).
 */
export function awaitedChanges(pending: readonly PendingChange[], needs: readonly Prerequisite[]): string[] {
  const awaited = pending.filter((change) => needs.some((need) => change.provides.some((provision) => satisfies(provision, need))));
  return (awaited.length ? awaited : pending).map((change) => change.title);
}

/** Absolute paths named in a check's error ("/etc/kubernetes/admin.conf does not exist"): files it found missing. */
export function pathsIn(message: string): Prerequisite[] {
  const paths = message.match(/(?<![\w.~-])\/(?:[\w.@+-]+\/)*[\w.@+-]*[\w@+-]/g) ?? [];
  return [...new Set(paths)].map((file) => ({ file }));
}

function packageShips(packageName: string, name: string): boolean {
  return packageName === name || packageName.startsWith(`${name}.`) || packageName.startsWith(`${name}-`);
}

const unitOf = (name: string) => (/\.(service|socket|timer|mount|target|path)$/.test(name) ? name : `${name}.service`);
const unitBase = (name: string) => unitOf(name).replace(/\.[a-z]+$/, '');
