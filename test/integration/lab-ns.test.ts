import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { labDownLight, labStatusLight, labUpLight, type LabState } from '../../runner/lab/index.js';
import { BRIDGE, LAB_NET, hostAddress, netnsName, vethName } from '../../runner/lab/paths.js';
import { skipUnlessLabSupported, sshToLab } from '../helpers/lab.js';

const HOSTS = 5;

/** Network namespaces of this lab network (capstan-lab-<net>-<octet>); other nets' are not ours to look at. */
function ourNetns(): string[] {
  const dir = '/run/netns';
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith(`capstan-lab-${LAB_NET}-`)) : [];
}

/** Links of this lab network: its bridge and its veths (capv<net>x<octet>). */
function ourLinks(): string[] {
  return readdirSync('/sys/class/net').filter((name) => name === BRIDGE || name.startsWith(`capv${LAB_NET}x`));
}

/** Mount points at or below `path`. */
function mountsUnder(path: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point === path || point.startsWith(`${path}/`));
}

/** A process by PID and start time (field 22 of /proc/<pid>/stat), so a reused PID is not mistaken for it. */
interface ProcessId {
  pid: number;
  start: string;
}

function identify(pid: number): ProcessId | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { pid, start: fields[19]! };
  } catch {
    return null;
  }
}

/** Still running (a zombie nobody reaped yet counts as gone). */
function running(process: ProcessId): boolean {
  try {
    const fields = readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return fields[0] !== 'Z' && fields[19] === process.start;
  } catch {
    return false;
  }
}

/** The processes whose network namespace is one of `netns` (by the namespace's inode). */
function processesIn(netns: readonly string[]): ProcessId[] {
  const inodes = new Set(netns.map((name) => `net:[${statSync(`/run/netns/${name}`).ino}]`));
  const found: ProcessId[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!inodes.has(readlinkSync(`/proc/${entry}/ns/net`))) continue;
    } catch {
      continue; // exited meanwhile
    }
    const id = identify(Number(entry));
    if (id) found.push(id);
  }
  return found;
}

describe('light lab (namespace hosts: sshd as PID 1, no systemd)', function () {
  this.timeout(600_000);
  let state: LabState | undefined;

  before(async function () {
    skipUnlessLabSupported(this);
    state = await labUpLight({ hosts: HOSTS });
  });

  after(async function () {
    if (state) await labDownLight();
  });

  it('starts node1..node5 at .11–.15, each answering ssh with its own hostname under strict host key checking', async function () {
    expect(state!.hosts.map((h) => [h.name, h.address])).to.deep.equal(
      Array.from({ length: HOSTS }, (_, i) => [`node${i + 1}`, hostAddress(i)]),
    );
    for (const host of state!.hosts) {
      // sshToLab: OpenSSH with StrictHostKeyChecking=yes against the lab's known_hosts only.
      const result = await sshToLab(state!, host, 'hostname; cat /etc/hostname; ps -o comm= -p 1; test -d /run/systemd/system && echo systemd || echo no-systemd');
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.equal(`${host.name}\n${host.name}\nsshd\nno-systemd\n`);
    }
    const status = await labStatusLight();
    expect(status?.hosts.map((h) => h.up)).to.deep.equal(Array(HOSTS).fill(true));
  });

  it('pins each host\'s own fresh host key in known_hosts and writes an Ansible inventory', async function () {
    const lines = readFileSync(state!.knownHostsPath, 'utf8').trim().split('\n');
    expect(lines).to.have.length(HOSTS);
    const keys = new Set<string>();
    for (const host of state!.hosts) {
      const own = await sshToLab(state!, host, 'cat /etc/ssh/ssh_host_ed25519_key.pub');
      expect(own.code, own.stderr).to.equal(0);
      const key = own.stdout.trim().split(' ').slice(0, 2).join(' ');
      expect(lines).to.include(`${host.address} ${key}`);
      keys.add(key);
    }
    expect(keys.size, 'every host has its own key').to.equal(HOSTS);

    const inventory = parse(readFileSync(state!.inventoryPath, 'utf8')) as {
      all: { vars: Record<string, string>; hosts: Record<string, { ansible_host: string }> };
    };
    expect(inventory.all.vars).to.deep.equal({
      ansible_user: 'root',
      ansible_ssh_private_key_file: state!.keyPath,
      capstan_known_hosts_file: state!.knownHostsPath,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${state!.knownHostsPath}`,
    });
    expect(inventory.all.hosts).to.deep.equal(Object.fromEntries(state!.hosts.map((h) => [h.name, { ansible_host: h.address }])));
  });

  it('gives each host its own network namespace: a net.* sysctl set on one host is not seen on another', async function () {
    const set = await sshToLab(state!, 'node1', 'sysctl -w net.ipv4.ip_forward=1 >/dev/null && sysctl -n net.ipv4.ip_forward');
    expect(set.stdout, set.stderr).to.equal('1\n');
    const other = await sshToLab(state!, 'node2', 'sysctl -n net.ipv4.ip_forward');
    expect(other.stdout, other.stderr).to.equal('0\n');
  });

  it('labDownLight leaves nothing: no process, netns, veth, bridge, mount, overlay, known_hosts or inventory', async function () {
    const lab = state!;
    const netns = lab.hosts.map((_, i) => netnsName(hostAddress(i)));
    expect(ourNetns()).to.have.members(netns);
    expect(ourLinks()).to.have.members([BRIDGE, ...lab.hosts.map((_, i) => vethName(hostAddress(i)))]);
    const inits = lab.hosts.map((h) => identify(h.pid));
    expect(inits.every(Boolean), 'every host\'s init runs').to.equal(true);
    // sshd (PID 1 of each host) and whatever runs in the hosts: what must be gone after down.
    const inside = processesIn(netns);
    expect(inside.length, 'processes in the hosts\' netns').to.be.at.least(HOSTS);

    await labDownLight();
    state = undefined;

    expect(inits.filter((p) => p && running(p)), 'init processes').to.deep.equal([]);
    expect(inside.filter(running), 'processes that ran in the hosts').to.deep.equal([]);
    expect(ourNetns()).to.deep.equal([]);
    expect(ourLinks()).to.deep.equal([]);
    expect(mountsUnder(lab.dir)).to.deep.equal([]);
    expect(existsSync(join(lab.dir, 'hosts')), 'overlays').to.equal(false);
    expect(existsSync(join(lab.dir, 'light-state.json')), 'state').to.equal(false);
    expect(existsSync(lab.knownHostsPath), 'known_hosts').to.equal(false);
    expect(existsSync(lab.inventoryPath), 'inventory').to.equal(false);
    expect(await labStatusLight()).to.equal(null);
  });
});
