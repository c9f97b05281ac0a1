/**
 * `capstan lab`: real Debian test hosts in seconds. Each host is a `systemd-nspawn -b` container
 * (systemd as PID 1, sshd, apt) on an overlay of one cached rootfs, in its own network namespace
 * on the bridge capbr0 (10.77.0.0/24), with apt going through apt-cacher-ng on the bridge.
 * Everything made is recorded in <lab dir>/state.json first, so `labDown` removes exactly that.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { startAptProxy, stopAptProxy } from './apt-proxy.js';
import { removeInventory, writeInventory } from './inventory.js';
import { ensureInotifyHeadroom } from './inotify.js';
import { ensureLabKey, writeKnownHosts } from './keys.js';
import { removeTree, unmountUnder } from './mounts.js';
import { createHostNetwork, ensureBridge, removeBridge, removeHostNetwork } from './network.js';
import { bootContainer, containerRunning, execInContainer, prepareRoot, stopContainer, waitForSshd } from './nspawn.js';
import { BRIDGE, hostAddress, hostMac, hostPaths, labCacheDir, labDir, labPaths, netnsName, vethName } from './paths.js';
import { sshdAnswers } from './probe.js';
import { ensureRootfs } from './rootfs.js';
import { assertLabSupported } from './support.js';
import { normalizeHostSpecs, type NormalizedHostSpec } from './spec.js';
import { readRecord, removeRecord, withLabLock, writeRecord, type HostRecord, type LabRecord } from './state.js';
import type { LabHost, LabHostSpec, LabState, LabStatus } from './types.js';
import { assertVmLabSupported, bringUpVmLab, readVmRecord, teardownVmLab, vmLabStatus, type VmSize } from './vm.js';
import { ensureVmImage } from './vm-image.js';

export type { LabHost, LabHostSpec, LabHostStatus, LabState, LabStatus } from './types.js';
export { LAB_USER, LAB_USER_PASSWORD } from './rootfs.js';
export { assertLabSupported, installLabPrerequisites } from './support.js';
/** Light namespace hosts (sshd as PID 1, no systemd) for benchmarks and many-host runs: see ns-host.ts. */
export { labDownLight, labStatusLight, labUpLight } from './ns-host.js';
/** QEMU VMs with Debian's kernel (`kind: 'vm'`): modules, swap, vm.* sysctls, reboots. See vm.ts. */
export { assertVmLabSupported, VM_LAB_PROGRAMS, readVmRecord, type VmHostRecord, type VmLabRecord, type VmSize } from './vm.js';

/** What a lab's hosts are: systemd-nspawn containers (the default) or QEMU virtual machines. */
export type LabKind = 'nspawn' | 'vm';

type Log = (line: string) => void;

function planHost(dir: string, spec: NormalizedHostSpec, index: number): HostRecord {
  const address = hostAddress(index);
  return {
    name: spec.name,
    address,
    mac: hostMac(address),
    netns: netnsName(address),
    veth: vethName(address),
    groups: spec.groups,
    vars: spec.vars,
    ...hostPaths(dir, spec.name),
    pid: 0,
  };
}

function planRecord(dir: string, rootfs: string, specs: NormalizedHostSpec[], inventoryOut: string | undefined): LabRecord {
  const paths = labPaths(dir);
  return {
    version: 1,
    dir,
    rootfs,
    bridge: BRIDGE,
    aptProxyPid: 0,
    hosts: specs.map((spec, index) => planHost(dir, spec, index)),
    inventoryPath: resolve(inventoryOut ?? paths.inventory),
    knownHostsPath: paths.knownHosts,
    keyPath: paths.key,
  };
}

function publicHost(host: HostRecord): LabHost {
  return { name: host.name, address: host.address, pid: host.pid, groups: host.groups, vars: host.vars };
}

function toState(record: LabRecord): LabState {
  return {
    dir: record.dir,
    bridge: record.bridge,
    hosts: record.hosts.map(publicHost),
    inventoryPath: record.inventoryPath,
    knownHostsPath: record.knownHostsPath,
    keyPath: record.keyPath,
  };
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

/** Boots one host (network, overlay, container) and waits for its sshd; the PID is recorded at once. */
async function bootHost(record: LabRecord, host: HostRecord, log: Log): Promise<void> {
  const started = Date.now();
  await createHostNetwork(host);
  await bootUntilSshd(record, host, log);
  log(`${host.name} up at ${host.address} in ${seconds(started)}`);
}

/**
 * Mounts the host's root, boots it and waits for its sshd, with one more boot when the first did
 * not come up. Seen in CI on a loaded machine, about once in a thousand boots: a container that
 * exited at once with an empty console, or one whose boot never opened logins; each booted on the
 * next try. The log keeps the first failure with what systemd was waiting for; a second failure is
 * a real fault and fails with it.
 */
async function bootUntilSshd(record: LabRecord, host: HostRecord, log: Log): Promise<void> {
  await prepareRoot(host, record.rootfs);
  const boot = () =>
    bootContainer(host, (pid) => {
      host.pid = pid;
      writeRecord(record);
    });
  await boot();
  try {
    await waitForSshd(host);
  } catch (error) {
    log(`${host.name}: booting it once more, after: ${(error as Error).message}`);
    await stopContainer(host);
    await boot();
    await waitForSshd(host);
  }
}

async function bringUp(record: LabRecord, log: Log): Promise<void> {
  await ensureBridge();
  await startAptProxy(labPaths(record.dir).aptProxy, (pid) => {
    record.aptProxyPid = pid;
    writeRecord(record);
  });
  const raised = ensureInotifyHeadroom(record.hosts.length);
  if (raised.length) log(`raised this machine's inotify limits for ${record.hosts.length} full-systemd hosts: ${raised.join(', ')}`);
  // Bounded: each boot's 120 s budget starts when its turn comes, so fifty hosts on two cores do not
  // all race for the CPU (and their logins' deadlines) at once.
  const booting = pLimit(Math.max(4, availableParallelism() * 4));
  await Promise.all(record.hosts.map((host) => booting(() => bootHost(record, host, log))));
  writeKnownHosts(record.knownHostsPath, record.hosts);
  mkdirSync(dirname(record.inventoryPath), { recursive: true });
  writeInventory(record);
}

/** Powers a host off and removes its mount and network; its overlay directories stay. */
async function removeHost(host: HostRecord): Promise<void> {
  await stopContainer(host);
  await unmountUnder(host.root);
  await removeHostNetwork(host);
}

/** Removes everything the record names (each step skips what is already gone), then the record. */
async function teardown(record: LabRecord, log: Log): Promise<void> {
  await Promise.all(record.hosts.map(removeHost));
  await stopAptProxy(record.aptProxyPid);
  await removeBridge(record.bridge);
  removeInventory(record.inventoryPath);
  rmSync(record.knownHostsPath, { force: true });
  await removeTree(labPaths(record.dir).hosts);
  removeRecord(record.dir);
  log(`lab down (${record.hosts.length} hosts removed)`);
}

/**
 * Brings up a lab of `hosts` (a count: node1..nodeN; or specs with names, groups, vars) at
 * 10.77.0.11, .12, …, tearing down a lab that is already up first, so every run starts from fresh
 * overlays and fresh ssh host keys. Builds the rootfs on first use or when its recipe changed.
 * Resolves when every host's sshd answers; on failure, removes what it made and rejects with the
 * failing host's console tail. Writes the inventory (`inventoryOut`, default
 * <lab dir>/inventory.yaml) and known_hosts.
 *
 * `kind: 'vm'` makes the hosts QEMU VMs booting Debian's kernel instead (vm.ts; `vm` sets their
 * memory and CPUs), with the same addresses, inventory and known_hosts.
 *
 * @example const lab = await labUp({ kind: 'vm', hosts: [{ name: 'vm1' }] });
 */
export async function labUp(options: {
  hosts: number | LabHostSpec[];
  inventoryOut?: string;
  log?: Log;
  kind?: LabKind;
  vm?: VmSize;
}): Promise<LabState> {
  if (options.kind === 'vm') assertVmLabSupported();
  else assertLabSupported();
  const specs = normalizeHostSpecs(options.hosts);
  const log = options.log ?? (() => {});
  const dir = labDir();
  return withLabLock(dir, async () => {
    const previous = readRecord(dir);
    if (previous) await teardown(previous, log);
    // A VM lab in this directory owns the same bridge and addresses.
    const previousVms = readVmRecord(dir);
    if (previousVms) await teardownVmLab(previousVms, log);
    const started = Date.now();
    const paths = labPaths(dir);
    if (options.kind === 'vm') {
      const image = await ensureVmImage(join(labCacheDir(dir), 'vm-image'), await ensureLabKey(paths.key), log);
      return bringUpVmLab({ dir, specs, image, keyPath: paths.key, log, inventoryOut: options.inventoryOut, size: options.vm });
    }
    const rootfs = await ensureRootfs(paths.rootfsParent, await ensureLabKey(paths.key), log);
    const record = planRecord(dir, rootfs, specs, options.inventoryOut);
    writeRecord(record);
    try {
      await bringUp(record, log);
    } catch (error) {
      await teardown(record, log).catch(() => undefined);
      throw error;
    }
    log(`lab up: ${record.hosts.length} hosts in ${seconds(started)}; inventory ${record.inventoryPath}`);
    return toState(record);
  });
}

/**
 * Removes the lab: stops the hosts and apt-cacher-ng by PID, unmounts the overlays, deletes the
 * veths, netns and bridge, the per-host overlays, known_hosts and the inventory it wrote. Keeps
 * the rootfs, the apt cache and the lab key, so the next `labUp` is fast. A VM lab is removed the
 * same way (QEMU by PID, taps, overlays; the VM image stays cached). Does nothing when no lab is up.
 */
export async function labDown(options: { log?: Log } = {}): Promise<void> {
  const log = options.log ?? (() => {});
  const dir = labDir();
  const vms = readVmRecord(dir);
  if (!vms) assertLabSupported();
  await withLabLock(dir, async () => {
    const record = readRecord(dir);
    const vmRecord = readVmRecord(dir);
    if (record) await teardown(record, log);
    if (vmRecord) await teardownVmLab(vmRecord, log);
    if (!record && !vmRecord) log('no lab is up');
  });
}

/** The lab that is up (containers, else VMs) with each host's sshd answering or not, or null when no lab is up. */
export async function labStatus(): Promise<LabStatus | null> {
  const dir = labDir();
  const vms = readVmRecord(dir);
  if (!readRecord(dir) && vms) return vmLabStatus(vms);
  assertLabSupported();
  const record = readRecord(dir);
  if (!record) return null;
  const hosts = await Promise.all(
    record.hosts.map(async (host) => ({ ...publicHost(host), up: containerRunning(host) && (await sshdAnswers(host.address)) })),
  );
  return { ...toState(record), hosts };
}

/** Runs `body` on the lab's record under the lab lock, with the named host; InputError when there is none. */
async function withHost(name: string, body: (record: LabRecord, host: HostRecord) => Promise<void>): Promise<void> {
  assertLabSupported();
  const dir = labDir();
  await withLabLock(dir, async () => {
    const record = readRecord(dir);
    if (!record) throw new InputError('no lab is up (run `capstan lab up` first)');
    const host = record.hosts.find((candidate) => candidate.name === name);
    if (!host) throw new InputError(`no lab host named ${name} (hosts: ${record.hosts.map((h) => h.name).join(', ')})`);
    await body(record, host);
  });
}

/**
 * Powers the host off (its container exits; connections to it are refused) and keeps its
 * overlay, address and host keys, for "unreachable host" tests. Does nothing if it is off.
 */
export async function stopHost(name: string): Promise<void> {
  await withHost(name, async (record, host) => {
    await stopContainer(host);
    host.pid = 0;
    writeRecord(record);
  });
}

/**
 * Boots a host stopped by `stopHost` again, with the same overlay, address and host keys, and
 * waits for its sshd. Does nothing if it is running.
 */
export async function startHost(name: string, options: { log?: Log } = {}): Promise<void> {
  await withHost(name, async (record, host) => {
    if (containerRunning(host)) return;
    await bootUntilSshd(record, host, options.log ?? (() => {}));
  });
}

/**
 * Gives a running host new ssh host keys (made inside it by `ssh-keygen -A`) and restarts its
 * sshd, for "changed host key refused" tests. known_hosts is deliberately not updated.
 */
export async function rekeyHost(name: string): Promise<void> {
  await withHost(name, async (_record, host) => {
    await execInContainer(host, ['sh', '-c', 'rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -A && systemctl restart ssh']);
    await waitForSshd(host);
  });
}
