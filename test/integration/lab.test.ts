import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { InputError } from '../../runner/errors.js';
import {
  assertLabSupported,
  labDown,
  labStatus,
  labUp,
  LAB_USER,
  LAB_USER_PASSWORD,
  rekeyHost,
  startHost,
  stopHost,
  type LabState,
} from '../../runner/lab/index.js';
import { skipUnlessLabSupported, sshToLab, withLab } from '../helpers/lab.js';
import { BRIDGE, LAB_NET, hostAddress, labDir, netnsName } from '../../runner/lab/paths.js';

/** True when something accepts a TCP connection on `address:port` within a second. */
function portOpen(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port, timeout: 1000 });
    const finish = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.on('connect', () => finish(true));
    socket.on('timeout', () => finish(false));
    socket.on('error', () => finish(false));
  });
}

/** A process counts as gone when /proc no longer has it or it is a zombie nobody reaped yet. */
function processAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** known_hosts lines grouped by address: address → "type base64" lines. */
function knownHostKeys(state: LabState): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const line of readFileSync(state.knownHostsPath, 'utf8').trim().split('\n')) {
    const [address = '', type, blob] = line.split(' ');
    keys.set(address, [...(keys.get(address) ?? []), `${type} ${blob}`]);
  }
  return keys;
}

/** The host's ed25519 public host key as it reads it itself ("type base64"). */
async function hostEd25519Key(state: LabState, host: string): Promise<string> {
  const result = await sshToLab(state, host, 'cat /etc/ssh/ssh_host_ed25519_key.pub');
  expect(result.code, result.stderr).to.equal(0);
  return result.stdout.trim().split(' ').slice(0, 2).join(' ');
}

describe('capstan lab (systemd-nspawn hosts)', function () {
  // The first run builds the rootfs (25–40 s); later runs take seconds.
  this.timeout(300_000);
  let state: LabState;

  before(async function () {
    skipUnlessLabSupported(this);
    state = await withLab(3);
  });

  after(async function () {
    if (state) await labDown();
  });

  it('refuses to run without root, with the install hint', function () {
    const getuid = process.getuid;
    process.getuid = () => 1000;
    try {
      expect(() => assertLabSupported()).to.throw(InputError, 'capstan lab needs root on Linux with systemd-nspawn');
    } finally {
      process.getuid = getuid;
    }
  });

  it('brings up node1..node3 at 10.77.N.11–13 (N = CAPSTAN_LAB_NET), each answering ssh with its own hostname', async function () {
    expect(state.hosts.map((host) => [host.name, host.address])).to.deep.equal([
      ['node1', hostAddress(0)],
      ['node2', hostAddress(1)],
      ['node3', hostAddress(2)],
    ]);
    for (const host of state.hosts) {
      const result = await sshToLab(state, host, 'hostname && grep -c "^127.0.1.1\\s$(hostname)$" /etc/hosts');
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.split('\n').slice(0, 2)).to.deep.equal([host.name, '1']);
    }
  });

  it('boots systemd as PID 1 to a running (or degraded) system', async function () {
    const result = await sshToLab(state, 'node1', 'cat /proc/1/comm; systemctl is-system-running --wait || true');
    expect(result.stdout.trim().split('\n')).to.satisfy(
      ([init, system]: string[]) => init === 'systemd' && ['running', 'degraded'].includes(system ?? ''),
    );
  });

  it('runs apt-get update through apt-cacher-ng on the bridge', async function () {
    const result = await sshToLab(state, 'node1', 'apt-get update -q');
    expect(result.code, result.stderr).to.equal(0);
    const proxyLog = readFileSync(join(state.dir, 'apt-cacher-ng/log/apt-cacher.log'), 'utf8');
    expect(proxyLog).to.include(`|${hostAddress(0)}|`);
  });

  it('has no DNS, and says so: no nameserver in resolv.conf, so a lookup is refused at once (the machine\'s resolver is unreachable from here)', async function () {
    const result = await sshToLab(state, 'node1', 'cat /etc/resolv.conf; getent hosts deb.debian.org; echo "exit $?"');
    expect(result.stdout).to.equal('# capstan lab: no DNS here (no nameserver line: lookups fail at once instead of timing out)\noptions timeout:1 attempts:1\nexit 2\n');
  });

  it('answers modprobe for built-in modules with 0 and for unknown ones with 1', async function () {
    const result = await sshToLab(state, 'node2', 'for m in overlay br_netfilter nosuchmod; do modprobe $m 2>/dev/null; echo $?; done');
    expect(result.stdout.trim().split('\n')).to.deep.equal(['0', '0', '1']);
  });

  it('lets the capstan user become root with its password only', async function () {
    const withoutPassword = await sshToLab(state, 'node1', 'sudo -n true', { user: LAB_USER });
    expect(withoutPassword.code).to.equal(1);
    const withPassword = await sshToLab(state, 'node1', "sudo -S -p '' whoami", { user: LAB_USER, input: `${LAB_USER_PASSWORD}\n` });
    expect(withPassword.stdout.trim(), withPassword.stderr).to.equal('root');
  });

  it('accepts ssh keys only: password logins are not even offered (PasswordAuthentication no)', async function () {
    const result = await sshToLab(state, 'node1', 'true', {
      user: LAB_USER,
      sshOptions: ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive'],
    });
    expect(result.code).to.equal(255);
    expect(result.stderr).to.include(`${LAB_USER}@${hostAddress(0)}: Permission denied (publickey).`);
  });

  it("gives a host's root only the capabilities the lab needs: network admin and modules, not the clock, MAC or BPF", async function () {
    // CapBnd of PID 1 (systemd) on the host, decoded by capability number (linux/capability.h).
    const result = await sshToLab(state, 'node1', "awk '/^CapBnd/ {print $2}' /proc/1/status");
    const bounding = BigInt(`0x${result.stdout.trim()}`);
    const has = (bit: number) => (bounding >> BigInt(bit)) & 1n ? 'yes' : 'no';
    const caps = { NET_ADMIN: 12, NET_RAW: 13, SYS_MODULE: 16, SYS_RAWIO: 17, SYS_ADMIN: 21, SYS_TIME: 25, MAC_OVERRIDE: 32, MAC_ADMIN: 33, SYSLOG: 34, BPF: 39 };
    expect(Object.fromEntries(Object.entries(caps).map(([name, bit]) => [name, has(bit)]))).to.deep.equal({
      NET_ADMIN: 'yes', NET_RAW: 'yes', SYS_MODULE: 'yes', SYS_RAWIO: 'yes', SYS_ADMIN: 'yes', SYS_TIME: 'no', MAC_OVERRIDE: 'no', MAC_ADMIN: 'no', SYSLOG: 'no', BPF: 'no',
    });
    const clock = await sshToLab(state, 'node1', 'date -s @0 2>&1; echo $?');
    expect(clock.stdout).to.match(/^date: cannot set date: Operation not permitted\n/);
    expect(clock.stdout).to.match(/\n1\n$/);
  });

  it('gives each host its own host keys, pinned in known_hosts', async function () {
    const pinned = knownHostKeys(state);
    const ed25519 = await Promise.all(state.hosts.map((host) => hostEd25519Key(state, host.name)));
    expect(new Set(ed25519).size).to.equal(3);
    state.hosts.forEach((host, index) => {
      expect(pinned.get(host.address)?.map((key) => key.split(' ')[0])).to.deep.equal(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa']);
      expect(pinned.get(host.address)).to.include(ed25519[index]);
    });
  });

  it('writes an Ansible inventory that points at the key and known_hosts', function () {
    const text = readFileSync(state.inventoryPath, 'utf8');
    expect(text).to.match(/^# Capstan lab inventory.*\n(#.*\n)*.*capstan lab down/);
    const inventory = parse(text) as { all: { vars: Record<string, string>; hosts: Record<string, { ansible_host: string }> } };
    expect(inventory.all.vars).to.deep.equal({
      ansible_user: 'root',
      ansible_ssh_private_key_file: state.keyPath,
      capstan_known_hosts_file: state.knownHostsPath,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${state.knownHostsPath}`,
    });
    expect(inventory.all.hosts.node3?.ansible_host).to.equal(hostAddress(2));
  });

  it('stopHost powers a host off (port closed) and startHost brings it back with the same key', async function () {
    const before = await hostEd25519Key(state, 'node2');
    await stopHost('node2');
    expect(await portOpen(hostAddress(1), 22)).to.equal(false);
    expect((await labStatus())?.hosts.map((host) => host.up)).to.deep.equal([true, false, true]);
    await startHost('node2');
    expect(await hostEd25519Key(state, 'node2')).to.equal(before);
    expect((await labStatus())?.hosts.every((host) => host.up)).to.equal(true);
  });

  it('a host whose nspawn was killed leaves no process behind: stopHost kills the orphaned container, startHost boots it clean, its sshd restarts (rekeyHost)', async function () {
    const record = JSON.parse(readFileSync(join(labDir(), 'state.json'), 'utf8')) as { hosts: { name: string; pid: number }[] };
    const nspawn = record.hosts.find((host) => host.name === 'node2')!.pid;
    const init = Number(readFileSync(`/proc/${nspawn}/task/${nspawn}/children`, 'utf8').trim().split(/\s+/)[0]);
    process.kill(nspawn, 'SIGKILL');
    // What a kill after the grace period leaves: the container's systemd outlives nspawn.
    await new Promise((resolve) => setTimeout(resolve, 500));
    console.log(`      [lab] container init ${init} ${processAlive(init) ? 'outlived' : 'died with'} its killed nspawn`);
    await stopHost('node2');
    expect(processAlive(init), 'the orphaned container\'s systemd').to.equal(false);
    expect(await portOpen(hostAddress(1), 22)).to.equal(false);
    await startHost('node2');
    expect((await labStatus())?.hosts.every((host) => host.up)).to.equal(true);
    // In CI an orphan on port 22 made this `systemctl restart ssh` fail in the host booted after it.
    await rekeyHost('node2');
    expect((await sshToLab(state, 'node2', 'true')).stderr).to.include('Host key verification failed');
  });

  it('rekeyHost gives a host new keys, which OpenSSH with StrictHostKeyChecking=yes refuses', async function () {
    await rekeyHost('node3');
    const result = await sshToLab(state, 'node3', 'true');
    expect(result.code).to.equal(255);
    expect(result.stderr).to.include('Host key verification failed');
  });

  it('replaces the lab that is up with one of named hosts in groups, with fresh host keys', async function () {
    const oldKeys = knownHostKeys(state);
    const inventoryOut = join(tmpdir(), `capstan-lab-test-${process.pid}.yaml`);
    state = await labUp({
      hosts: [
        { name: 'web1', groups: ['web'], vars: { http_port: 8080 } },
        { name: 'db1', groups: ['db', 'backup'] },
      ],
      inventoryOut,
    });
    expect(existsSync(`/run/netns/${netnsName(hostAddress(2))}`)).to.equal(false);
    expect((await sshToLab(state, 'web1', 'hostname')).stdout.trim()).to.equal('web1');
    expect(knownHostKeys(state).get(hostAddress(0))).to.not.deep.equal(oldKeys.get(hostAddress(0)));
    const inventory = parse(readFileSync(inventoryOut, 'utf8')) as {
      all: { hosts: Record<string, Record<string, unknown>>; children: Record<string, { hosts: Record<string, null> }> };
    };
    expect(inventory.all.hosts.web1).to.deep.equal({ http_port: 8080, ansible_host: hostAddress(0) });
    expect(Object.keys(inventory.all.children)).to.deep.equal(['web', 'db', 'backup']);
    expect(inventory.all.children.backup?.hosts).to.deep.equal({ db1: null });
  });

  it('labDown leaves no netns, veth, bridge, mount or process behind, and may run again', async function () {
    const record = JSON.parse(readFileSync(join(state.dir, 'state.json'), 'utf8')) as { aptProxyPid: number };
    const pids = [...state.hosts.map((host) => host.pid), record.aptProxyPid];
    await labDown();
    // Only this lab's names: other labs (CAPSTAN_LAB_NET) may be up beside it.
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).to.not.include(`capstan-lab-${LAB_NET}-`);
    const links = execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' });
    expect(links).to.not.match(new RegExp(`^(${BRIDGE}|capv${LAB_NET}x\\d+)\\b`, 'm'));
    expect(readFileSync('/proc/mounts', 'utf8')).to.not.include(join(state.dir, 'hosts'));
    expect(pids.filter(processAlive)).to.deep.equal([]);
    expect(existsSync(state.inventoryPath)).to.equal(false);
    expect(await labStatus()).to.equal(null);
    await labDown();
  });
});
