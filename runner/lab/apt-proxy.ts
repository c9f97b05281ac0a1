import { spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, cpSync, lchownSync, statSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CapstanError } from '../errors.js';
import { APT_PROXY_PORT, GATEWAY } from './paths.js';
import { portOpen } from './probe.js';
import { processMatches, tail, terminate, waitUntil } from './proc.js';

const PROGRAM = '/usr/sbin/apt-cacher-ng';
/** apt-cacher-ng's own default Debian backend answers 503 here; the mirror apt uses works. */
const DEBIAN_BACKEND = 'http://deb.debian.org/debian/\n';

/** The apt-cacher-ng system user, so the cache is not written as root; null when it does not exist. */
function serviceAccount(): { uid: number; gid: number } | null {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((entry) => entry.startsWith('apt-cacher-ng:'));
  if (!line) return null;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * The lab directory is root's alone (0700, secure-dir.ts); apt-cacher-ng, running as its own user,
 * must still get through it to its own directory: search (not read, not write) for its group.
 * A directory that others may search already (0755 from an older run) is left as it is.
 */
function letServiceThrough(labDir: string, account: { gid: number }): void {
  const mode = statSync(labDir).mode & 0o7777;
  if (mode & 0o001) return;
  chownSync(labDir, 0, account.gid);
  chmodSync(labDir, mode | 0o010);
}

/**
 * Lays out the proxy's directories: a fresh copy of the packaged config (with the working Debian
 * backend) and the cache and log, which persist across `down` so later runs download nothing.
 */
function prepareDirectories(base: string): { conf: string; cache: string; log: string } {
  const dirs = { conf: join(base, 'conf'), cache: join(base, 'cache'), log: join(base, 'log') };
  rmSync(dirs.conf, { recursive: true, force: true });
  cpSync('/etc/apt-cacher-ng', dirs.conf, { recursive: true });
  writeFileSync(join(dirs.conf, 'backends_debian'), DEBIAN_BACKEND);
  mkdirSync(dirs.cache, { recursive: true });
  mkdirSync(dirs.log, { recursive: true });
  const account = serviceAccount();
  if (account) {
    // The config is read (security.conf is group-only) and cache and log written as that user.
    letServiceThrough(dirname(base), account);
    const config = readdirSync(dirs.conf).map((entry) => join(dirs.conf, entry));
    for (const path of [base, dirs.conf, ...config, dirs.cache, dirs.log]) lchownSync(path, account.uid, account.gid);
  }
  return dirs;
}

/**
 * Starts apt-cacher-ng on the bridge address (the bridge must exist), in the foreground of a
 * detached process whose PID is handed to `record` at once, so `down` can stop it by PID even if
 * we crash before it answers. Resolves when it accepts connections.
 */
export async function startAptProxy(base: string, record: (pid: number) => void): Promise<number> {
  mkdirSync(base, { recursive: true });
  const dirs = prepareDirectories(base);
  const output = openSync(join(dirs.log, 'console.log'), 'a');
  const account = serviceAccount();
  const child = spawn(
    PROGRAM,
    [
      '-c', dirs.conf, 'ForeGround=1', `BindAddress=${GATEWAY}`, `Port=${APT_PROXY_PORT}`,
      `CacheDir=${dirs.cache}`, `LogDir=${dirs.log}`, `PidFile=${join(base, 'pid')}`, `SocketPath=${join(base, 'socket')}`,
    ],
    { detached: true, stdio: ['ignore', output, output], ...(account ?? {}) },
  );
  closeSync(output);
  child.unref();
  const pid = child.pid ?? 0;
  record(pid);
  const up = await waitUntil(async () => !processMatches(pid, PROGRAM) || (await portOpen(GATEWAY, APT_PROXY_PORT, 500)), 15_000);
  if (!up || !processMatches(pid, PROGRAM)) {
    throw new CapstanError(`apt-cacher-ng did not start on ${GATEWAY}:${APT_PROXY_PORT}:\n${tail(join(dirs.log, 'console.log'))}`);
  }
  return pid;
}

/** Stops the apt-cacher-ng we started (by PID, only if that PID is still apt-cacher-ng). */
export async function stopAptProxy(pid: number): Promise<void> {
  await terminate(pid, PROGRAM, 5000);
}
