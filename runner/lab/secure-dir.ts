import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../errors.js';

/**
 * The lab runs as root and trusts what its directories hold: state.json drives `rm`, `umount` and
 * `ip link del`, and the cached rootfs is what root chroots into and boots. A directory that another
 * user created first (it sits in world-writable /var/tmp) or can write would let that user feed
 * root both. So a lab or cache directory must be owned by root, not a symlink, and writable by
 * root alone; each directory above it must be root-owned and writable by others only when sticky
 * (/var/tmp: others cannot rename or replace root's entries there).
 */

const GROUP_OR_OTHER_WRITE = 0o022;
const STICKY = 0o1000;

/** Why `path` (lstat: a symlink is judged as itself) is not a root-only directory, or null when it is. */
function problemWithDirectory(path: string): string | null {
  const stats = lstatSync(path);
  if (stats.isSymbolicLink()) return 'is a symlink';
  if (!stats.isDirectory()) return 'is not a directory';
  if (stats.uid !== 0) return `is owned by uid ${stats.uid}, not root`;
  if (stats.mode & GROUP_OR_OTHER_WRITE) return `is writable by group or others (mode ${(stats.mode & 0o7777).toString(8)})`;
  return null;
}

/** Why a directory above the lab directory would let another user swap it, or null. */
function problemWithAncestor(path: string): string | null {
  const stats = statSync(path);
  if (stats.uid !== 0) return `is owned by uid ${stats.uid}, not root`;
  if (stats.mode & GROUP_OR_OTHER_WRITE && !(stats.mode & STICKY)) {
    return `is writable by group or others without the sticky bit (mode ${(stats.mode & 0o7777).toString(8)})`;
  }
  return null;
}

/**
 * Refuses (InputError naming the path and what is wrong) a lab directory that exists but is not
 * root's alone; see the module comment. `what` names the setting the path came from.
 */
export function assertRootOnlyDir(path: string, what: string): void {
  const absolute = resolve(path);
  const refuse = (where: string, problem: string) => {
    throw new InputError(`${what} ${absolute}: ${where === absolute ? '' : `its parent ${where} `}${problem}; the lab runs as root and refuses a directory that another user controls (remove it or point ${what} elsewhere)`);
  };
  const own = problemWithDirectory(absolute);
  if (own) refuse(absolute, own);
  for (let parent = dirname(absolute); ; parent = dirname(parent)) {
    const problem = problemWithAncestor(parent);
    if (problem) refuse(parent, problem);
    if (parent === dirname(parent)) break;
  }
}

/**
 * Makes the lab directory 0700 when it is missing (root is the only user that reads it: it holds
 * the lab key, the sudo password and state.json), then checks it with `assertRootOnlyDir`. An
 * existing root-owned 0755 directory from an older run is accepted as it is: others cannot write it.
 */
export function ensureRootOnlyDir(path: string, what: string): void {
  if (!exists(path)) mkdirSync(path, { recursive: true, mode: 0o700 });
  assertRootOnlyDir(path, what);
}

/** True when something (a symlink too, even a dangling one) is at `path`. */
export function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
