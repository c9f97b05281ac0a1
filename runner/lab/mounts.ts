import { readFileSync, rmSync } from 'node:fs';
import { CapstanError } from '../errors.js';
import { run, runIgnoringFailure } from './proc.js';

/** Mount points listed in /proc/mounts (octal escapes such as `\040` for a space decoded). */
function mountPoints(): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
}

/** Mount points at or below `path`, deepest first (the order to unmount them in). */
function mountsUnder(path: string): string[] {
  return mountPoints()
    .filter((point) => point === path || point.startsWith(`${path}/`))
    .sort((a, b) => b.length - a.length);
}

export async function mountOverlay(lower: string, upper: string, work: string, target: string): Promise<void> {
  if (mountPoints().includes(target)) return;
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target]);
}

/**
 * Unmounts everything at or below `path`. Lazily when a plain unmount fails: the processes that
 * kept it busy are already killed, and a lingering reference must not block `down`.
 */
export async function unmountUnder(path: string): Promise<void> {
  for (const point of mountsUnder(path)) {
    await run('umount', [point]).catch(() => runIgnoringFailure('umount', ['--lazy', point]));
  }
}

/**
 * Deletes a directory tree after unmounting whatever is mounted inside it, and refuses if a
 * mount survives: a recursive delete through a leftover bind mount of /dev or /proc (an
 * interrupted mmdebstrap) or through an overlay would delete the machine's own files.
 */
export async function removeTree(path: string): Promise<void> {
  await unmountUnder(path);
  const left = mountsUnder(path);
  if (left.length > 0) throw new CapstanError(`cannot remove ${path}: still mounted: ${left.join(', ')}`);
  rmSync(path, { recursive: true, force: true });
}
