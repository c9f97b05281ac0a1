/**
 * The VM lab (`capstan lab up --kind vm`): each host is a QEMU virtual machine booting Debian's
 * own kernel, for what containers cannot do — load kernel modules, swap, set vm.* and kernel.*
 * sysctls for themselves, and reboot into a new kernel. Slower and heavier than the container lab
 * (about 1 GiB of RAM and, without KVM, ~40 s of boot per VM), so use it for kernel-level tests.
 *
 * - Disk: a qcow2 overlay per VM on the cached raw image (vm-image.ts), discarded at `down`.
 * - Identity: ssh host keys are generated on this machine (so known_hosts is written before the
 *   VM boots: keys are verified, never trusted on first use) and handed to the VM, with its
 *   hostname, /etc/hosts and apt proxy, on a read-only seed disk: a plain tar archive attached as
 *   a virtio disk with serial `capstan-seed`, which the image unpacks over / at first boot. No
 *   nbd module, loop mount or libguestfs on the machine; the cached image stays independent of
 *   the lab network, so labs on every CAPSTAN_LAB_NET share it.
 * - Network: a tap device per VM on the lab bridge (network.ts), the same fixed MAC per address
 *   as the container lab, the address on the kernel command line (`ip=`), apt through the lab's
 *   apt-cacher-ng.
 * - Accelerator: KVM when it boots the guest kernel here, else TCG (`-machine q35,accel=tcg -cpu
 *   max,erms=off`); CAPSTAN_LAB_ACCEL=kvm|tcg forces one. A reboot inside the guest resets the VM in the
 *   same QEMU process (no `-no-reboot`), so reboots can be tested.
 *
 * Everything made is recorded in <lab dir>/vm-state.json before it is made, so `labDown` (in
 * index.ts) removes exactly that, by PID and by name, even after a crash.
 */
import { execFile, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { CapstanError, InputError } from '../errors.js';
import { startAptProxy, stopAptProxy } from './apt-proxy.js';
import { removeInventory } from './inventory.js';
import { writeKnownHosts } from './keys.js';
import { removeTree } from './mounts.js';
import { ensureBridge, removeBridge } from './network.js';
import { APT_PROXY_URL, BRIDGE, GATEWAY, LAB_NET, SUBNET, hostAddress, hostMac, labPaths } from './paths.js';
import { sshdAnswers } from './probe.js';
import { processMatches, run, runIgnoringFailure, systemEnv, tail, terminate, waitUntil } from './proc.js';
import type { NormalizedHostSpec } from './spec.js';
import { BASE_HOSTS, SEED_SERIAL, type VmImage } from './vm-image.js';
import type { LabHost, LabState, LabStatus } from './types.js';
import { readLabFile } from './state.js';

type Log = (line: string) => void;

export type Accel = 'kvm' | 'tcg';

/** Size of each VM; defaults: 1024 MiB (Debian boots and apt works in less, kubeadm wants more), 1 CPU. */
export interface VmSize {
  memoryMiB?: number;
  cpus?: number;
}

/** Everything made for one VM; each field is recorded before the thing it names is created. */
export interface VmHostRecord {
  name: string;
  address: string;
  mac: string;
  tap: string;
  groups: string[];
  vars: Record<string, unknown>;
  /** The VM's directory: overlay, seed, console and QEMU logs. */
  dir: string;
  disk: string;
  /** The seed's file tree (its etc/ssh holds the host keys known_hosts is written from) and its tar archive. */
  seedRoot: string;
  seed: string;
  console: string;
  qemuLog: string;
  memoryMiB: number;
  cpus: number;
  /** QEMU's PID; 0 before it is started. */
  pid: number;
}

/** vm-state.json: the VM lab's own record of what it made. */
export interface VmLabRecord {
  version: 1;
  kind: 'vm';
  dir: string;
  image: VmImage;
  accel: Accel;
  bridge: string;
  aptProxyPid: number;
  hosts: VmHostRecord[];
  inventoryPath: string;
  knownHostsPath: string;
  keyPath: string;
}

const QEMU = 'qemu-system-x86_64';
/** Programs the VM lab runs (Debian: qemu-system-x86, qemu-utils, mmdebstrap, e2fsprogs, apt-cacher-ng, iproute2, openssh-client, tar). */
export const VM_LAB_PROGRAMS = [QEMU, 'qemu-img', 'mmdebstrap', 'mke2fs', 'apt-cacher-ng', 'ip', 'ssh-keygen', 'tar'];
/** How long a booting VM has to answer on port 22: TCG boots in ~40 s on an idle 2-core machine, much slower on a busy one. */
const BOOT_TIMEOUT_MS = { kvm: 120_000, tcg: 600_000 } as const;
/** How long the KVM probe may take before KVM counts as not working (a kvm-pvm host hangs). */
const KVM_PROBE_TIMEOUT_MS = 30_000;
const DEFAULT_MEMORY_MIB = 1024;
const DEFAULT_CPUS = 1;

function statePath(dir: string): string {
  return join(dir, 'vm-state.json');
}

/** The VM lab's record in `dir` (read only from a root-only directory), or null when no VM lab is up there. */
export function readVmRecord(dir: string): VmLabRecord | null {
  const text = readLabFile(dir, statePath(dir));
  return text === null ? null : (JSON.parse(text) as VmLabRecord);
}

/** Atomic and synchronous: concurrent VM starts in one process never interleave writes. */
function writeVmRecord(record: VmLabRecord): void {
  const path = statePath(record.dir);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Throws InputError when the VM lab cannot run here: not Linux, not root, no /dev/net/tun, or a
 * program missing (qemu-system-x86_64, qemu-img, mmdebstrap, mke2fs, apt-cacher-ng, …).
 */
export function assertVmLabSupported(): void {
  const dirs = (systemEnv().PATH ?? '').split(':');
  const missing = VM_LAB_PROGRAMS.filter((program) => !dirs.some((dir) => isExecutable(join(dir, program))));
  const reason =
    process.platform !== 'linux' ? `this is ${process.platform}, not Linux`
    : process.getuid?.() !== 0 ? 'not running as root'
    : !existsSync('/dev/net/tun') ? 'no /dev/net/tun (tap devices)'
    : missing.length > 0 ? `missing: ${missing.join(', ')}`
    : null;
  if (reason) {
    throw new InputError('capstan lab --kind vm needs root on Linux with QEMU (apt-get install qemu-system-x86 qemu-utils mmdebstrap apt-cacher-ng)', {
      cause: new Error(reason),
    });
  }
}

/** The tap device of the VM at `address` (15-character limit: capt<net>x<last octet>). */
export function tapName(address: string): string {
  return `capt${LAB_NET}x${address.split('.')[3]}`;
}

function planHost(dir: string, spec: NormalizedHostSpec, index: number, size: Required<VmSize>): VmHostRecord {
  const address = hostAddress(index);
  const base = join(dir, 'vms', spec.name);
  return {
    name: spec.name,
    address,
    mac: hostMac(address),
    tap: tapName(address),
    groups: spec.groups,
    vars: spec.vars,
    dir: base,
    disk: join(base, 'disk.qcow2'),
    seedRoot: join(base, 'seed'),
    seed: join(base, 'seed.tar'),
    console: join(base, 'console.log'),
    qemuLog: join(base, 'qemu.log'),
    memoryMiB: size.memoryMiB,
    cpus: size.cpus,
    pid: 0,
  };
}

function validSize(size: VmSize): Required<VmSize> {
  const memoryMiB = size.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const cpus = size.cpus ?? DEFAULT_CPUS;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 256) throw new InputError(`VM memory must be a whole number of MiB ≥ 256, not ${memoryMiB}`);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new InputError(`VM cpus must be 1..64, not ${cpus}`);
  return { memoryMiB, cpus };
}

/* ------------------------------------------------------------------ accelerator */

function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether KVM runs the guest kernel here: it boots it with no initramfs and no root disk, so it
 * prints its banner, panics for want of a root filesystem and (panic=-1, -no-reboot) QEMU exits.
 * Where /dev/kvm cannot run it (kvm-pvm: "failed to set MSR 0x10a", or a silent hang), QEMU
 * aborts or the probe times out.
 */
function kvmBootsKernel(image: VmImage, consoleLog: string): Promise<boolean> {
  rmSync(consoleLog, { force: true });
  const args = [
    '-machine', 'q35,accel=kvm', '-cpu', 'host', '-m', '256', '-nodefaults', '-display', 'none', '-no-reboot',
    '-kernel', image.kernel, '-append', 'console=ttyS0 panic=-1', '-serial', `file:${consoleLog}`,
  ];
  return new Promise((resolveProbe) => {
    execFile(QEMU, args, { env: systemEnv(), timeout: KVM_PROBE_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error) => {
      const text = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
      resolveProbe(!error && text.includes('Linux version') && text.includes('Kernel panic'));
    });
  });
}

/**
 * KVM or TCG: CAPSTAN_LAB_ACCEL when set; else TCG without a usable /dev/kvm; else the verdict
 * of a KVM probe boot, cached in the image directory per machine kernel.
 */
async function chooseAccel(image: VmImage, log: Log): Promise<Accel> {
  const forced = process.env.CAPSTAN_LAB_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (forced) throw new InputError(`CAPSTAN_LAB_ACCEL must be kvm or tcg, not ${forced}`);
  if (!kvmDeviceUsable()) return 'tcg';
  const cachePath = join(image.dir, 'accel.json');
  const machineKernel = release();
  if (existsSync(cachePath)) {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as { machineKernel: string; accel: Accel };
    if (cached.machineKernel === machineKernel) return cached.accel;
  }
  const accel: Accel = (await kvmBootsKernel(image, join(image.dir, 'kvm-probe.log'))) ? 'kvm' : 'tcg';
  log(accel === 'kvm' ? 'KVM works: VMs run with -accel kvm' : '/dev/kvm cannot run the guest kernel here: VMs run under TCG (slow)');
  writeFileSync(cachePath, `${JSON.stringify({ machineKernel, accel })}\n`);
  return accel;
}

/* ------------------------------------------------------------------ one VM */

/** The part of QEMU's command line that names one VM, so a recorded PID is only signalled while it is ours. */
function marker(host: VmHostRecord): string {
  return `file=${host.disk},`;
}

/** True while the VM's QEMU runs. */
export function vmRunning(host: VmHostRecord): boolean {
  return processMatches(host.pid, marker(host));
}

/**
 * Writes the VM's seed: fresh ssh host keys (this machine's `ssh-keygen -A`, every type Debian
 * makes), hostname, /etc/hosts with its 127.0.1.1 line, apt through this lab's apt-cacher-ng;
 * then packs it into the tar archive the VM reads as a disk.
 */
async function writeSeed(host: VmHostRecord): Promise<void> {
  const etc = join(host.seedRoot, 'etc');
  for (const dir of [join(etc, 'ssh'), join(etc, 'apt/apt.conf.d')]) mkdirSync(dir, { recursive: true, mode: 0o755 });
  await run('ssh-keygen', ['-A', '-f', host.seedRoot]);
  writeFileSync(join(etc, 'hostname'), `${host.name}\n`);
  writeFileSync(join(etc, 'hosts'), `${BASE_HOSTS}127.0.1.1\t${host.name}\n`);
  writeFileSync(join(etc, 'apt/apt.conf.d/01capstan-lab-proxy'), `Acquire::http::Proxy "${APT_PROXY_URL}";\nAcquire::http::Proxy::${GATEWAY} "DIRECT";\nAcquire::http::Pipeline-Depth "0";\nAcquire::http::Timeout "30";\nAcquire::Retries "3";\n`);
  await run('tar', ['-C', host.seedRoot, '--owner=0', '--group=0', '--numeric-owner', '-cf', host.seed, 'etc']);
}

/** A tap device on the lab bridge for the VM; a stale one (a crash) is replaced. */
async function createTap(host: VmHostRecord): Promise<void> {
  await removeTap(host.tap);
  await run('ip', ['tuntap', 'add', 'dev', host.tap, 'mode', 'tap']);
  // A previous host with this address may have left a neighbour entry: drop it rather than wait it out.
  await runIgnoringFailure('ip', ['neigh', 'flush', 'to', host.address, 'dev', BRIDGE]);
  await run('ip', ['link', 'set', host.tap, 'master', BRIDGE, 'up']);
}

async function removeTap(tap: string): Promise<void> {
  if (existsSync(`/sys/class/net/${tap}`)) await run('ip', ['link', 'del', tap]);
}

/** The kernel command line: root disk, serial console, static address (systemd-network-generator reads `ip=`), hostname. */
function kernelCmdline(host: VmHostRecord): string {
  return [
    'root=/dev/vda', 'rw', 'console=ttyS0', 'net.ifnames=0',
    `ip=${host.address}::${GATEWAY}:255.255.255.0:${host.name}:eth0:off`,
    `systemd.hostname=${host.name}`,
  ].join(' ');
}

function qemuArgs(record: VmLabRecord, host: VmHostRecord): string[] {
  const { image } = record;
  // Under TCG, with ERMS the kernel clears pages with `rep stosb`, which TCG runs one byte per
  // iteration; without it, `rep stosq`. Measured on a 2-core machine: a reboot's kernel phase
  // 89 s → 39 s; QEMU CPU time for a boot and two reboots 250 s → 170 s.
  const cpu = record.accel === 'kvm' ? 'host' : 'max,erms=off';
  return [
    '-name', `capstan-${host.name}`,
    '-machine', `q35,accel=${record.accel}`, '-cpu', cpu, '-m', String(host.memoryMiB), '-smp', String(host.cpus),
    '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', `file:${host.console}`,
    '-kernel', image.kernel, '-initrd', image.initrd, '-append', kernelCmdline(host),
    // vda: the root overlay (the marker names it); vdb: the seed, found in the guest by its serial.
    '-drive', `${marker(host)}if=none,id=root,format=qcow2,cache=unsafe,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=root',
    '-drive', `file=${host.seed},if=none,id=seed,format=raw,readonly=on`,
    '-device', `virtio-blk-pci,drive=seed,serial=${SEED_SERIAL}`,
    '-netdev', `tap,id=net0,ifname=${host.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=net0,mac=${host.mac}`,
    '-object', 'rng-random,id=rng0,filename=/dev/urandom', '-device', 'virtio-rng-pci,rng=rng0',
  ];
}

/** Starts QEMU detached (its own output in qemu.log); the PID is handed to `onPid` before anything can fail. */
function startQemu(record: VmLabRecord, host: VmHostRecord, onPid: (pid: number) => void): void {
  const output = openSync(host.qemuLog, 'a');
  const child = spawn(QEMU, qemuArgs(record, host), { detached: true, stdio: ['ignore', output, output], env: systemEnv() });
  closeSync(output);
  child.unref();
  onPid(child.pid ?? 0);
}

async function waitForVmSshd(host: VmHostRecord, timeoutMs: number): Promise<void> {
  const answered = await waitUntil(async () => !vmRunning(host) || (await sshdAnswers(host.address, 1000)), timeoutMs, 500);
  if (answered && vmRunning(host)) return;
  const why = vmRunning(host) ? `sshd did not answer on ${host.address}:22 within ${timeoutMs / 1000} s` : `QEMU exited:\n${tail(host.qemuLog, 10)}`;
  throw new CapstanError(`lab VM ${host.name}: ${why}\nconsole (${host.console}):\n${tail(host.console)}`, { host: host.name });
}

async function bootVm(record: VmLabRecord, host: VmHostRecord, log: Log): Promise<void> {
  const started = Date.now();
  rmSync(host.dir, { recursive: true, force: true });
  mkdirSync(host.dir, { recursive: true });
  await writeSeed(host);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', record.image.base, host.disk]);
  await createTap(host);
  startQemu(record, host, (pid) => {
    host.pid = pid;
    writeVmRecord(record);
  });
  await waitForVmSshd(host, BOOT_TIMEOUT_MS[record.accel]);
  log(`${host.name} up at ${host.address} in ${((Date.now() - started) / 1000).toFixed(1)} s (${record.accel})`);
}

/** Stops the VM's QEMU by PID (SIGTERM: QEMU exits at once; SIGKILL after 10 s) and deletes its tap. */
async function stopVm(host: VmHostRecord): Promise<void> {
  await terminate(host.pid, marker(host), 10_000);
  await removeTap(host.tap);
}

/* ------------------------------------------------------------------ the lab */

/** The inventory in Ansible's YAML format, in the shape the container lab writes (same header, so `down` removes it). */
export function renderVmInventory(record: VmLabRecord): string {
  const header = [
    `# Capstan lab inventory, written by \`capstan lab up --kind vm\` on ${new Date().toISOString()}:`,
    `# ${record.hosts.length} QEMU ${record.hosts.length === 1 ? 'VM' : 'VMs'} (Debian bookworm, kernel ${record.image.kernelRelease}, ${record.accel}) on bridge ${record.bridge} (${SUBNET}), lab state in ${record.dir}.`,
    `# Host keys are pinned in ${record.knownHostsPath}. Remove the lab (and this file) with \`capstan lab down\`.`,
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
    // The lab's address wins over a host var of the same name: it is the only one that works.
    hosts: Object.fromEntries(record.hosts.map((host) => [host.name, { ...host.vars, ansible_host: host.address }])),
    ...(groups.size
      ? { children: Object.fromEntries([...groups].map(([group, members]) => [group, { hosts: Object.fromEntries(members.map((name) => [name, null])) }])) }
      : {}),
  };
  return header + stringify({ all }, { nullStr: '' });
}

function publicHost(host: VmHostRecord): LabHost {
  return { name: host.name, address: host.address, pid: host.pid, groups: host.groups, vars: host.vars };
}

function toState(record: VmLabRecord): LabState {
  return {
    dir: record.dir,
    bridge: record.bridge,
    hosts: record.hosts.map(publicHost),
    inventoryPath: record.inventoryPath,
    knownHostsPath: record.knownHostsPath,
    keyPath: record.keyPath,
  };
}

/**
 * Removes everything the record names (each step skips what is already gone): QEMU processes by
 * PID, taps, apt-cacher-ng, the bridge, inventory, known_hosts, the VMs' overlays; then the record.
 */
export async function teardownVmLab(record: VmLabRecord, log: Log): Promise<void> {
  await Promise.all(record.hosts.map(stopVm));
  await stopAptProxy(record.aptProxyPid);
  await removeBridge(record.bridge);
  removeInventory(record.inventoryPath);
  rmSync(record.knownHostsPath, { force: true });
  await removeTree(join(record.dir, 'vms'));
  rmSync(statePath(record.dir), { force: true });
  log(`VM lab down (${record.hosts.length} ${record.hosts.length === 1 ? 'VM' : 'VMs'} removed)`);
}

/**
 * Boots the VMs of a new VM lab in `dir` (the caller holds the lab lock and has taken down any
 * lab there) and writes known_hosts and the inventory. On failure removes what it made and
 * rejects with the failing VM's console tail.
 */
export async function bringUpVmLab(options: {
  dir: string;
  specs: NormalizedHostSpec[];
  image: VmImage;
  keyPath: string;
  inventoryOut?: string;
  size?: VmSize;
  log: Log;
}): Promise<LabState> {
  const { dir, log } = options;
  const started = Date.now();
  const size = validSize(options.size ?? {});
  const paths = labPaths(dir);
  const record: VmLabRecord = {
    version: 1,
    kind: 'vm',
    dir,
    image: options.image,
    accel: await chooseAccel(options.image, log),
    bridge: BRIDGE,
    aptProxyPid: 0,
    hosts: options.specs.map((spec, index) => planHost(dir, spec, index, size)),
    inventoryPath: resolve(options.inventoryOut ?? paths.inventory),
    knownHostsPath: paths.knownHosts,
    keyPath: options.keyPath,
  };
  writeVmRecord(record);
  try {
    await ensureBridge();
    await startAptProxy(paths.aptProxy, (pid) => {
      record.aptProxyPid = pid;
      writeVmRecord(record);
    });
    await Promise.all(record.hosts.map((host) => bootVm(record, host, log)));
    writeKnownHosts(record.knownHostsPath, record.hosts.map((host) => ({ address: host.address, root: host.seedRoot })));
    mkdirSync(dirname(record.inventoryPath), { recursive: true });
    writeFileSync(record.inventoryPath, renderVmInventory(record));
  } catch (error) {
    await teardownVmLab(record, log).catch(() => undefined);
    throw error;
  }
  log(`VM lab up: ${record.hosts.length} ${record.hosts.length === 1 ? 'VM' : 'VMs'} in ${((Date.now() - started) / 1000).toFixed(1)} s; inventory ${record.inventoryPath}`);
  return toState(record);
}

/** The VM lab with each VM's sshd answering or not (`pid` is QEMU's: it stays the same across guest reboots). */
export async function vmLabStatus(record: VmLabRecord): Promise<LabStatus> {
  const hosts = await Promise.all(record.hosts.map(async (host) => ({ ...publicHost(host), up: vmRunning(host) && (await sshdAnswers(host.address)) })));
  return { ...toState(record), hosts };
}
