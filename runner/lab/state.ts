import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CapstanError } from '../errors.js';
import { labPaths } from './paths.js';
import { processAlive } from './proc.js';

/** Everything made for one host; each field is recorded before the thing it names is created. */
export interface HostRecord {
  name: string;
  address: string;
  mac: string;
  netns: string;
  veth: string;
  groups: string[];
  vars: Record<string, unknown>;
  /** Overlay layers and the mount point (the container's root). */
  upper: string;
  work: string;
  root: string;
  console: string;
  /** systemd-nspawn's PID; 0 while the host is powered off. */
  pid: number;
}

/**
 * state.json: the lab's own record of what it made, so `down` removes exactly that, by PID and
 * by name, even after the process that made it crashed.
 */
export interface LabRecord {
  version: 1;
  dir: string;
  rootfs: string;
  bridge: string;
  /** apt-cacher-ng's PID; 0 before it is started. */
  aptProxyPid: number;
  hosts: HostRecord[];
  inventoryPath: string;
  knownHostsPath: string;
  keyPath: string;
}

/** The lab's record, or null when no lab is up. */
export function readRecord(dir: string): LabRecord | null {
  const path = labPaths(dir).state;
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, 'utf8')) as LabRecord;
}

/**
 * Writes the record atomically (temp file + rename) and synchronously, so concurrent host starts
 * in one process never interleave writes and a crash never leaves half a file.
 */
export function writeRecord(record: LabRecord): void {
  const path = labPaths(record.dir).state;
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function removeRecord(dir: string): void {
  rmSync(labPaths(dir).state, { force: true });
}

/**
 * Runs `body` holding the lab lock (a file holding our PID, created exclusively), so two
 * `capstan lab` commands never build or tear down the same bridge at once. A lock left by a
 * process that died is taken over.
 */
export async function withLabLock<T>(dir: string, body: () => Promise<T>): Promise<T> {
  const path = labPaths(dir).lock;
  mkdirSync(dir, { recursive: true });
  await acquire(path);
  try {
    return await body();
  } finally {
    rmSync(path, { force: true });
  }
}

async function acquire(path: string): Promise<void> {
  const deadline = Date.now() + 10 * 60_000;
  while (!tryCreate(path)) {
    const holder = lockHolder(path);
    if (!processAlive(holder)) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new CapstanError(`the lab is locked by process ${holder} (${path})`);
    await sleep(500);
  }
}

/** Creates the lock with our PID already in it (write a temp file, hard-link it): never seen empty. */
function tryCreate(path: string): boolean {
  const temp = `${path}.${process.pid}`;
  writeFileSync(temp, `${process.pid}\n`, { mode: 0o600 });
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(temp, { force: true });
  }
}

/** The PID in the lock file; 0 when it vanished meanwhile (then nobody holds it). */
function lockHolder(path: string): number {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch {
    return 0;
  }
}
