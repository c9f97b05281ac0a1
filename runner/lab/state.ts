import { existsSync, linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAbsolute } from 'node:path';
import { CapstanError, InputError } from '../errors.js';
import { BRIDGE, LAB_NET, hostMac, hostPaths, labCacheDir, labPaths, netnsName, SUBNET, vethName } from './paths.js';
import { processAlive } from './proc.js';
import { assertRootOnlyDir, ensureRootOnlyDir, exists } from './secure-dir.js';

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

/**
 * Reads `file` (state.json and the like) from the lab directory `dir` after checking that `dir` is
 * root's alone (secure-dir.ts); null when the directory or the file does not exist.
 */
export function readLabFile(dir: string, file: string): string | null {
  if (!exists(dir)) return null;
  assertRootOnlyDir(dir, 'the lab directory (CAPSTAN_LAB_DIR)');
  return existsSync(file) ? readFileSync(file, 'utf8') : null;
}

/** The lab's record, validated (see `assertRecordIsOurs`), or null when no lab is up. */
export function readRecord(dir: string): LabRecord | null {
  const path = labPaths(dir).state;
  const text = readLabFile(dir, path);
  if (text === null) return null;
  const record = JSON.parse(text) as LabRecord;
  assertRecordIsOurs(record, dir, path);
  return record;
}

/** Host names become directory names under <lab dir>/hosts: hostname labels only, as spec.ts allows (no `/`, no `..`). */
const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** An address of this lab's subnet (10.77.N.0/24). */
const LAB_ADDRESS = new RegExp(`^10\\.77\\.${LAB_NET}\\.(\\d{1,3})$`);

/** The lab key and the cached rootfs as the lab names them, in whatever cache directory (absolute, no `..`). */
const LAB_KEY = /^(\/(?!\.\.?(\/|$))[^/\0]+)+\/id_ed25519$/;
const LAB_ROOTFS = /^(\/(?!\.\.?(\/|$))[^/\0]+)*\/rootfs\/[0-9a-f]{16}$/;

/**
 * state.json drives root's `rm -r`, `umount` and `ip link del`: a record that names anything the lab
 * would not have made itself (a path outside the lab directory, an interface or netns that is not
 * this lab's pattern for that host's address) is refused before any of it is acted on.
 */
export function assertRecordIsOurs(record: LabRecord, dir: string, path: string): void {
  const paths = labPaths(dir);
  const wrong = (what: string) => new InputError(`${path}: ${what}; refusing to act on a lab record the lab did not write`);
  const expect = (what: string, actual: unknown, wanted: unknown) => {
    if (actual !== wanted) throw wrong(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
  };
  expect('version', record.version, 1);
  expect('dir', record.dir, dir);
  expect('bridge', record.bridge, BRIDGE);
  expect('knownHostsPath', record.knownHostsPath, paths.knownHosts);
  // The key and the rootfs live in the cache, which CAPSTAN_LAB_CACHE may have moved since the lab
  // was brought up; they are only read (ssh -i, the overlay's lower layer), never deleted, so their
  // shape is checked rather than their directory: a lab made with another cache still comes down.
  if (typeof record.keyPath !== 'string' || !LAB_KEY.test(record.keyPath)) throw wrong(`keyPath ${JSON.stringify(record.keyPath)} is not a lab key (<cache>/id_ed25519)`);
  if (typeof record.rootfs !== 'string' || !LAB_ROOTFS.test(record.rootfs)) throw wrong(`rootfs ${JSON.stringify(record.rootfs)} is not a lab rootfs (<cache>/rootfs/<16 hex digits>)`);
  if (typeof record.inventoryPath !== 'string' || !isAbsolute(record.inventoryPath)) throw wrong('inventoryPath is not an absolute path');
  if (!Number.isInteger(record.aptProxyPid)) throw wrong('aptProxyPid is not a PID');
  if (!Array.isArray(record.hosts)) throw wrong('hosts is not a list');
  for (const host of record.hosts) {
    if (typeof host.name !== 'string' || !HOST_NAME.test(host.name)) throw wrong(`host name ${JSON.stringify(host.name)} is not a lab host name`);
    const octet = LAB_ADDRESS.exec(String(host.address))?.[1];
    if (octet === undefined || Number(octet) > 254) throw wrong(`${host.name}: address ${JSON.stringify(host.address)} is not in ${SUBNET}`);
    expect(`${host.name}: netns`, host.netns, netnsName(host.address));
    expect(`${host.name}: veth`, host.veth, vethName(host.address));
    expect(`${host.name}: mac`, host.mac, hostMac(host.address));
    const own = hostPaths(dir, host.name);
    for (const key of ['upper', 'work', 'root', 'console'] as const) expect(`${host.name}: ${key}`, host[key], own[key]);
    if (!Number.isInteger(host.pid)) throw wrong(`${host.name}: pid is not a PID`);
  }
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
  ensureRootOnlyDir(dir, 'the lab directory (CAPSTAN_LAB_DIR)');
  ensureRootOnlyDir(labCacheDir(dir), 'the lab cache directory (CAPSTAN_LAB_CACHE)');
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
