/**
 * Light lab hosts for scale (benchmarks, many-host tests): each host is a network namespace on the
 * lab bridge plus new mount, UTS and PID namespaces in which an overlay of the lab's cached rootfs
 * is mounted and `sshd -D` runs as PID 1. No systemd, no apt proxy: about 50× lighter than an
 * nspawn host, and 200 of them fit on the lab's /24 (.11–.254 allow 244).
 *
 * What works inside: files, users, `sh`, python3 (Ansible), `net.*` sysctls (per host: its own
 * netns), modprobe of the built-in modules. What does not: systemctl (no systemd), apt (no proxy),
 * other sysctls (global to the machine — never set them).
 *
 * Everything made is recorded in <lab dir>/light-state.json before it is made, so
 * `labDownLight` removes exactly that, by PID and by name, even after a crash. The light lab and
 * the nspawn lab (`labUp`) share the lab directory, bridge and addresses: `labUpLight` takes an
 * nspawn lab of the same directory down first.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { CapstanError } from '../errors.js';
import { removeInventory } from './inventory.js';
import { ensureLabKey, writeKnownHosts } from './keys.js';
import { removeTree } from './mounts.js';
import { createHostNetwork, ensureBridge, removeBridge, removeHostNetwork } from './network.js';
import { BRIDGE, SUBNET, hostAddress, hostMac, labDir, labPaths, netnsName, vethName } from './paths.js';
import { sshdAnswers } from './probe.js';
import { processAlive, processMatches, run, systemEnv, tail, terminate, waitUntil } from './proc.js';
import { ensureRootfs } from './rootfs.js';
import { normalizeHostSpecs, type NormalizedHostSpec } from './spec.js';
import { readLabFile, readRecord, withLabLock } from './state.js';
import { assertLabSupported } from './support.js';
import type { LabHost, LabHostSpec, LabState, LabStatus } from './types.js';

type Log = (line: string) => void;

/** How long a starting host has to answer on port 22. */
const SSH_TIMEOUT_MS = 30_000;
/** Hosts started at once: each start is a dozen short processes; more only queues on 2 cores. */
const START_CONCURRENCY = 12;
/** The first argument of every host's init (`$0` of its shell), so its PID is only signalled while it is ours. */
const INIT_TAG = 'capstan-light-host';

/** Everything made for one light host; each field is recorded before the thing it names is created. */
export interface LightHostRecord {
  name: string;
  address: string;
  mac: string;
  netns: string;
  veth: string;
  groups: string[];
  vars: Record<string, unknown>;
  /** The host's directory: overlay upper/work layers, the (empty) mount point, the console log. */
  base: string;
  upper: string;
  work: string;
  root: string;
  console: string;
  /** `unshare`'s PID (the parent of the host's PID 1); 0 before it is started. */
  pid: number;
}

/** light-state.json: the light lab's own record of what it made. */
export interface LightLabRecord {
  version: 1;
  kind: 'light';
  dir: string;
  rootfs: string;
  bridge: string;
  hosts: LightHostRecord[];
  inventoryPath: string;
  knownHostsPath: string;
  keyPath: string;
}

function statePath(dir: string): string {
  return join(dir, 'light-state.json');
}

/** The light lab's record (read only from a root-only directory), or null when none is up. */
function readLightRecord(dir: string): LightLabRecord | null {
  const text = readLabFile(dir, statePath(dir));
  return text === null ? null : (JSON.parse(text) as LightLabRecord);
}

/** Atomic and synchronous, like the nspawn lab's record: concurrent starts never interleave writes. */
function writeLightRecord(record: LightLabRecord): void {
  const path = statePath(record.dir);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function planHost(dir: string, spec: NormalizedHostSpec, index: number): LightHostRecord {
  const address = hostAddress(index);
  const base = join(labPaths(dir).hosts, spec.name);
  return {
    name: spec.name,
    address,
    mac: hostMac(address),
    netns: netnsName(address),
    veth: vethName(address),
    groups: spec.groups,
    vars: spec.vars,
    base,
    upper: join(base, 'upper'),
    work: join(base, 'work'),
    root: join(base, 'root'),
    console: join(base, 'console.log'),
    pid: 0,
  };
}

/** The part of the init's command line that names one host. */
function marker(host: LightHostRecord): string {
  return `${INIT_TAG} ${host.name} ${host.root}`;
}

/** True while the host's `unshare` (and so its sshd) runs. */
export function lightHostRunning(host: LightHostRecord): boolean {
  return processMatches(host.pid, marker(host));
}

/**
 * The host's init, run by `sh` inside its new namespaces (already in its netns): mounts the
 * overlay and the API filesystems inside its private mount namespace (they vanish with it, so the
 * machine's mount table never sees them), then becomes sshd as PID 1 in the chrooted root.
 * Constant text: the per-host values arrive as positional arguments.
 */
const INIT_SCRIPT = `set -eu
name=$1 root=$2 lower=$3 upper=$4 work=$5
hostname "$name"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=755,size=16m tmpfs "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 666 "$root/dev/zero" c 1 5
mknod -m 666 "$root/dev/full" c 1 7
mknod -m 666 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/urandom" c 1 9
mknod -m 666 "$root/dev/tty" c 5 0
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=755,size=16m tmpfs "$root/run"
mkdir -p "$root/run/sshd"
exec chroot "$root" /usr/sbin/sshd -D -e
`;

/**
 * Gives the host its identity in its overlay's upper layer before the overlay is mounted:
 * hostname, a 127.0.1.1 line in /etc/hosts, a machine-id and a fresh ed25519 host key (ed25519
 * only: an RSA key costs ~0.2 s of CPU per host, and every client in the lab speaks ed25519).
 */
async function prepareUpper(host: LightHostRecord, rootfs: string): Promise<void> {
  for (const dir of [host.upper, host.work, host.root]) rmSync(dir, { recursive: true, force: true });
  for (const dir of [join(host.upper, 'etc/ssh'), host.work, host.root]) mkdirSync(dir, { recursive: true, mode: 0o755 });
  const etc = join(host.upper, 'etc');
  writeFileSync(join(etc, 'hostname'), `${host.name}\n`);
  writeFileSync(join(etc, 'hosts'), `${readFileSync(join(rootfs, 'etc/hosts'), 'utf8')}127.0.1.1\t${host.name}\n`);
  writeFileSync(join(etc, 'machine-id'), `${randomBytes(16).toString('hex')}\n`);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `root@${host.name}`, '-f', join(etc, 'ssh/ssh_host_ed25519_key')]);
}

/**
 * Starts the host's init detached: `nsenter` into its netns, `unshare` new mount/UTS/PID
 * namespaces (`--kill-child`: the host's PID 1, and so its whole PID namespace, dies with
 * unshare). The PID is handed to `record` before anything can fail.
 */
function startInit(host: LightHostRecord, rootfs: string, record: (pid: number) => void): { exited: boolean } {
  const output = openSync(host.console, 'a');
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${host.netns}`,
      'unshare', '--mount', '--uts', '--pid', '--fork', '--kill-child', '--propagation', 'private',
      'sh', '-c', INIT_SCRIPT, INIT_TAG, host.name, host.root, rootfs, host.upper, host.work,
    ],
    { detached: true, stdio: ['ignore', output, output], env: { PATH: systemEnv().PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } },
  );
  closeSync(output);
  child.unref();
  record(child.pid ?? 0);
  // Our own child: its exit event is the truth (its command line is briefly unreadable while nsenter execs unshare).
  const status = { exited: child.pid === undefined };
  child.on('exit', () => (status.exited = true));
  child.on('error', () => (status.exited = true));
  return status;
}

async function waitForSshd(host: LightHostRecord, init: { exited: boolean }): Promise<void> {
  const answered = await waitUntil(async () => init.exited || (await sshdAnswers(host.address, 500)), SSH_TIMEOUT_MS, 25);
  if (answered && !init.exited) return;
  const why = init.exited ? 'its init exited' : `sshd did not answer on ${host.address}:22 within ${SSH_TIMEOUT_MS / 1000} s`;
  throw new CapstanError(`light lab host ${host.name}: ${why}; console (${host.console}):\n${tail(host.console)}`, { host: host.name });
}

async function startHost(record: LightLabRecord, host: LightHostRecord): Promise<void> {
  await createHostNetwork(host);
  await prepareUpper(host, record.rootfs);
  const init = startInit(host, record.rootfs, (pid) => {
    host.pid = pid;
    writeLightRecord(record);
  });
  await waitForSshd(host, init);
}

/** PIDs of the processes in a network namespace (what is left of a host after its init is gone). */
async function netnsPids(netns: string): Promise<number[]> {
  if (!existsSync(`/run/netns/${netns}`)) return [];
  const out = await run('ip', ['netns', 'pids', netns]).catch(() => '');
  return out.split(/\s+/).filter(Boolean).map(Number).filter((pid) => pid > 0);
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * Stops one host: SIGKILL to its PID 1 (the kernel then kills its whole PID namespace, and its
 * mount namespace with the overlay goes with it), then its `unshare` by PID; whatever still runs
 * in its netns is killed by PID; then its veth and netns are deleted.
 */
async function stopHost(host: LightHostRecord): Promise<void> {
  if (lightHostRunning(host)) {
    for (const child of children(host.pid)) kill(child);
    await terminate(host.pid, marker(host), 2000);
  }
  const left = await netnsPids(host.netns);
  for (const pid of left) kill(pid);
  if (left.length) await waitUntil(() => left.every((pid) => !processAlive(pid)), 5000, 20);
  await removeHostNetwork(host);
}

function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/** Runs `body` over `items` with at most `limit` at once; rejects with the first failure after all settled. */
async function inPool<T>(items: readonly T[], limit: number, body: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await body(item).catch((error: unknown) => void errors.push(error));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length) throw errors[0];
}

/** Removes everything the record names (each step skips what is already gone), then the record. */
async function teardown(record: LightLabRecord, log: Log): Promise<void> {
  await inPool(record.hosts, START_CONCURRENCY, stopHost);
  await removeBridge(record.bridge);
  removeInventory(record.inventoryPath);
  rmSync(record.knownHostsPath, { force: true });
  await removeTree(labPaths(record.dir).hosts);
  rmSync(statePath(record.dir), { force: true });
  log(`light lab down (${record.hosts.length} hosts removed)`);
}

/** The inventory in Ansible's YAML format, as the nspawn lab writes it (same header, so it is removed the same way). */
export function renderLightInventory(record: LightLabRecord): string {
  const header = [
    `# Capstan lab inventory, written by labUpLight on ${new Date().toISOString()}:`,
    `# ${record.hosts.length} namespace hosts (sshd as PID 1, no systemd) on bridge ${record.bridge} (${SUBNET}), lab state in ${record.dir}.`,
    `# Host keys are pinned in ${record.knownHostsPath}. Removed with the light lab (labDownLight).`,
    '',
  ].join('\n');
  const groups = new Map<string, string[]>();
  for (const host of record.hosts) for (const group of host.groups) groups.set(group, [...(groups.get(group) ?? []), host.name]);
  const all = {
    vars: {
      ansible_user: 'root',
      ansible_ssh_private_key_file: record.keyPath,
      capstan_known_hosts_file: record.knownHostsPath,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${record.knownHostsPath}`,
    },
    hosts: Object.fromEntries(record.hosts.map((host) => [host.name, { ...host.vars, ansible_host: host.address }])),
    ...(groups.size
      ? { children: Object.fromEntries([...groups].map(([group, members]) => [group, { hosts: Object.fromEntries(members.map((name) => [name, null])) }])) }
      : {}),
  };
  return header + stringify({ all }, { nullStr: '' });
}

function publicHost(host: LightHostRecord): LabHost {
  return { name: host.name, address: host.address, pid: host.pid, groups: host.groups, vars: host.vars };
}

function toState(record: LightLabRecord): LabState {
  return {
    dir: record.dir,
    bridge: record.bridge,
    hosts: record.hosts.map(publicHost),
    inventoryPath: record.inventoryPath,
    knownHostsPath: record.knownHostsPath,
    keyPath: record.keyPath,
  };
}

/** Takes down an nspawn lab of the same directory: it owns the same bridge and addresses. */
async function takeDownNspawnLab(dir: string, log: Log): Promise<void> {
  if (!readRecord(dir)) return;
  log(`taking down the systemd-nspawn lab in ${dir} first (same bridge and addresses)`);
  const { labDown } = await import('./index.js');
  await labDown({ log });
}

/**
 * Brings up `hosts` light hosts (a count: node1..nodeN; or specs with names, groups, vars) at
 * 10.77.N.11, .12, … (N = CAPSTAN_LAB_NET), replacing a light lab (or an nspawn lab) that is up in
 * the lab directory, so every run starts from fresh overlays and fresh ssh host keys. Uses the
 * same cached rootfs as `labUp` (built on first use). Resolves when every sshd answers; on
 * failure removes what it made and rejects with the failing host's console tail. Writes the
 * Ansible-format inventory (`inventoryOut`, default <lab dir>/inventory.yaml) and known_hosts.
 *
 * @example
 * const lab = await labUpLight({ hosts: 50, inventoryOut: '/tmp/bench.yaml' });
 * // … capstan run … -i /tmp/bench.yaml …
 * await labDownLight();
 */
export async function labUpLight(options: { hosts: number | LabHostSpec[]; inventoryOut?: string; log?: Log }): Promise<LabState> {
  assertLabSupported();
  const specs = normalizeHostSpecs(options.hosts);
  const log = options.log ?? (() => {});
  const dir = labDir();
  await takeDownNspawnLab(dir, log);
  return withLabLock(dir, async () => {
    const previous = readLightRecord(dir);
    if (previous) await teardown(previous, log);
    const started = Date.now();
    const paths = labPaths(dir);
    const rootfs = await ensureRootfs(paths.rootfsParent, await ensureLabKey(paths.key), log);
    const record: LightLabRecord = {
      version: 1,
      kind: 'light',
      dir,
      rootfs,
      bridge: BRIDGE,
      hosts: specs.map((spec, index) => planHost(dir, spec, index)),
      inventoryPath: resolve(options.inventoryOut ?? paths.inventory),
      knownHostsPath: paths.knownHosts,
      keyPath: paths.key,
    };
    writeLightRecord(record);
    try {
      await ensureBridge();
      await inPool(record.hosts, START_CONCURRENCY, (host) => startHost(record, host));
      writeKnownHosts(record.knownHostsPath, record.hosts.map((host) => ({ address: host.address, root: host.upper })));
      mkdirSync(dirname(record.inventoryPath), { recursive: true });
      writeFileSync(record.inventoryPath, renderLightInventory(record));
    } catch (error) {
      await teardown(record, log).catch(() => undefined);
      throw error;
    }
    log(`light lab up: ${record.hosts.length} hosts in ${((Date.now() - started) / 1000).toFixed(1)} s; inventory ${record.inventoryPath}`);
    return toState(record);
  });
}

/**
 * Removes the light lab: kills each host's PID namespace by PID (its mounts go with its mount
 * namespace), deletes the veths, netns and bridge, the per-host overlays, known_hosts and the
 * inventory it wrote. Keeps the rootfs and the lab key. Does nothing when no light lab is up.
 */
export async function labDownLight(options: { log?: Log } = {}): Promise<void> {
  assertLabSupported();
  const log = options.log ?? (() => {});
  const dir = labDir();
  await withLabLock(dir, async () => {
    const record = readLightRecord(dir);
    if (record) await teardown(record, log);
    else log('no light lab is up');
  });
}

/** The light lab that is up, with each host's sshd answering or not; null when none is up. */
export async function labStatusLight(): Promise<LabStatus | null> {
  const record = readLightRecord(labDir());
  if (!record) return null;
  const hosts = await Promise.all(
    record.hosts.map(async (host) => ({ ...publicHost(host), up: lightHostRunning(host) && (await sshdAnswers(host.address)) })),
  );
  return { ...toState(record), hosts };
}
