import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { InputError, PlaybookError } from '../../runner/errors.js';
import { PlayResult, type HostPlayResult, type PlaybookContext } from '../../runner/playbook.js';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { Pending, type Task } from '../../runner/task.js';
import {
  fleetNotes,
  fleetProblems,
  formatPreflightFailure,
  formatTable,
  parseListeners,
  parsePreflightProbe,
  preflight,
  preflightProbe,
  PREFLIGHT_PROBE,
  type HostReport,
  type UnprobedHost,
} from '../../tasks/preflight.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/system/${name}`, import.meta.url), 'utf8');

describe('preflight: parsing', () => {
  it('parses ss -ltnpH: addresses (IPv4, [IPv6], *, %iface), ports and process names', () => {
    expect(parseListeners(fixture('ss-ltnpH-lab.txt'))).to.deep.equal([
      { address: '0.0.0.0', port: 22, processes: ['sshd'] },
      { address: '0.0.0.0', port: 6443, processes: ['python3'] },
      { address: '[::1]', port: 10250, processes: ['python3'] },
      { address: '[::]', port: 22, processes: ['sshd'] },
    ]);
    expect(parseListeners(fixture('ss-ltnH-lab.txt')).map((l) => [l.address, l.port, l.processes.length])).to.deep.equal([
      ['0.0.0.0', 22, 0],
      ['0.0.0.0', 6443, 0],
      ['[::1]', 10250, 0],
      ['[::]', 22, 0],
    ]);
    const cp = parseListeners(fixture('probe-vm-cp1.txt').split('@@listeners\n')[1]!);
    expect(cp.find((l) => l.port === 53)).to.deep.equal({ address: '127.0.0.53%lo', port: 53, processes: ['systemd-resolve'] });
    expect(cp.find((l) => l.port === 6443)).to.deep.equal({ address: '*', port: 6443, processes: ['kube-apiserver'] });
    expect(cp.find((l) => l.port === 8888)).to.deep.equal({ address: '0.0.0.0', port: 8888, processes: ['haproxy'] });
  });

  it('parses a lab host (no product_uuid, cgroup v1 hierarchy, no swap)', () => {
    expect(parsePreflightProbe(fixture('probe-lab-node1.txt'))).to.deep.equal({
      hostname: 'node1',
      macs: [{ interface: 'eth0', mac: '52:54:00:77:13:0b' }],
      productUuid: null,
      cpus: 2,
      memoryMiB: 24105,
      memoryCgroup: true,
      swaps: [],
      listeners: [
        { address: '0.0.0.0', port: 22, processes: ['sshd'] },
        { address: '[::]', port: 22, processes: ['sshd'] },
      ],
    });
  });

  it('parses a VM (product_uuid lowercased, cgroup v2, swap file, MACs lowercased once each, no ipip)', () => {
    const vm = parsePreflightProbe(fixture('probe-vm-cp1.txt'));
    expect(vm.macs).to.deep.equal([
      { interface: 'enp0s3', mac: '08:00:27:8d:c0:4d' },
      { interface: 'enp0s8', mac: '08:00:27:3a:91:0c' },
    ]);
    expect([vm.hostname, vm.productUuid, vm.cpus, vm.memoryMiB, vm.memoryCgroup, vm.swaps]).to.deep.equal([
      'cp1.internal',
      '7a1e4f0b-5c2d-4e3a-9b1c-2d3e4f5a6b7c',
      2,
      1966,
      true,
      ['/swapfile'],
    ]);
  });

  it('parses a Raspberry Pi without the memory cgroup, with zram swap', () => {
    const pi = parsePreflightProbe(fixture('probe-raspberrypi.txt'));
    expect([pi.productUuid, pi.cpus, pi.memoryMiB, pi.memoryCgroup, pi.swaps]).to.deep.equal([null, 4, 3791, false, ['/dev/zram0']]);
  });

  it('a host where ss cannot run has unknown listeners, and its required ports are a problem', () => {
    const text = fixture('probe-lab-node1.txt').replace(/@@listeners\n[^]*$/, '@@listeners\n?unavailable\n');
    const report = { host: 'node1', ...parsePreflightProbe(text), requiredPorts: [6443, 10250] };
    expect(report.listeners).to.equal(null);
    expect(fleetProblems([report])).to.deep.equal([{ host: 'node1', check: 'port', problem: 'cannot check ports 6443, 10250: ss (iproute2) could not run' }]);
    expect(fleetProblems([{ ...report, requiredPorts: [] }])).to.deep.equal([]);
  });

  it('the probe command only reads', () => {
    expect(PREFLIGHT_PROBE.text).to.equal(
      [
        'echo @@hostname; hostname',
        'echo @@links; ip -o link show 2>/dev/null',
        'echo @@product_uuid; cat /sys/class/dmi/id/product_uuid 2>/dev/null',
        'echo @@cpus; nproc 2>/dev/null',
        "echo @@meminfo; grep '^MemTotal:' /proc/meminfo 2>/dev/null",
        'echo @@cgroups; cat /proc/cgroups 2>/dev/null',
        'echo @@controllers; cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null',
        'echo @@swaps; cat /proc/swaps 2>/dev/null',
        "echo @@listeners; ss -ltnpH 2>/dev/null || ss -ltnH 2>/dev/null || echo '?unavailable'",
        'true',
      ].join('\n'),
    );
  });
});

/** A fleet with every kind of problem: cloned VMs, two Raspberry Pis from one image, a lab host, an unreachable host. */
function mixedFleet(): (HostReport | UnprobedHost)[] {
  const cp = parsePreflightProbe(fixture('probe-vm-cp1.txt'));
  const pi = parsePreflightProbe(fixture('probe-raspberrypi.txt'));
  return [
    { host: 'cp1', ...cp, requiredPorts: [6443, 10250, 8888] },
    { host: 'cp2', ...cp, requiredPorts: [6443, 10250] },
    { host: 'pi1', ...pi, requiredPorts: [10250] },
    { host: 'pi2', ...pi, macs: [{ interface: 'eth0', mac: 'd8:3a:dd:00:00:01' }], requiredPorts: [10250, 631] },
    { host: 'node1', ...parsePreflightProbe(fixture('probe-lab-node1.txt')), requiredPorts: [22] },
    { host: 'node4', unprobed: 'unreachable' },
  ];
}

describe('preflight: fleetProblems (pure)', () => {
  it('names every host and problem in one table, exactly', () => {
    const fleet = mixedFleet();
    const rows = fleetProblems(fleet, { minMemoryMiB: 2000, minCpus: 4, requireSwapOff: true });
    expect(`${formatPreflightFailure(rows, fleet)}\n`).to.equal(fixture('fleet-table.txt'));
  });

  it('the API server, kubelet and etcd of a converged cluster may hold the ports (a second run passes)', () => {
    const cp = { host: 'cp1', ...parsePreflightProbe(fixture('probe-vm-cp1.txt')), requiredPorts: [6443, 10250, 2379, 2380, 10257, 10259] };
    expect(fleetProblems([cp])).to.deep.equal([]);
    expect(fleetProblems([cp], { portOwners: [] }).map((r) => r.problem)).to.deep.equal([
      '6443 is in use by kube-apiserver (*:6443)',
      '10250 is in use by kubelet (*:10250)',
      '2379 is in use by etcd (192.168.0.61:2379, 127.0.0.1:2379)',
      '2380 is in use by etcd (192.168.0.61:2380)',
      '10257 is in use by kube-controller (127.0.0.1:10257)',
      '10259 is in use by kube-scheduler (127.0.0.1:10259)',
    ]);
  });

  it('swap is only reported by default (a later play turns it off); the memory cgroup check can be waived', () => {
    const pi = { host: 'pi1', ...parsePreflightProbe(fixture('probe-raspberrypi.txt')), requiredPorts: [] };
    expect(fleetProblems([pi]).map((r) => r.check)).to.deep.equal(['cgroup']);
    expect(fleetProblems([pi], { requireMemoryCgroup: false })).to.deep.equal([]);
  });

  it('planned hostnames are compared instead of the current ones', () => {
    const pi = parsePreflightProbe(fixture('probe-raspberrypi.txt'));
    const a = { host: 'pi1', ...pi, macs: [], requiredPorts: [], memoryCgroup: true };
    const b = { ...a, host: 'pi2' };
    expect(fleetProblems([a, b]).map((r) => `${r.host}: ${r.problem}`)).to.deep.equal([
      'pi1: "raspberrypi" is also the hostname of pi2',
      'pi2: "raspberrypi" is also the hostname of pi1',
    ]);
    expect(fleetProblems([{ ...a, plannedHostname: 'pi1' }, { ...b, plannedHostname: 'pi2' }])).to.deep.equal([]);
    expect(fleetProblems([{ ...a, plannedHostname: 'k' }, { ...b, plannedHostname: 'K' }]).map((r) => r.problem)).to.deep.equal([
      'planned "k" is also the hostname of pi2',
      'planned "k" is also the hostname of pi1',
    ]);
  });

  it('unknown product_uuids are not compared, only noted', () => {
    const fleet = mixedFleet().slice(2, 5);
    expect(fleetProblems(fleet, { minCpus: 1 }).some((r) => r.check === 'product_uuid')).to.equal(false);
    expect(fleetNotes(fleet).map((r) => r.host)).to.deep.equal(['pi1', 'pi2', 'node1']);
  });

  it('formats an aligned table', () => {
    expect(formatTable([{ host: 'a-long-host', check: 'cpus', problem: 'x' }])).to.equal('HOST         CHECK  PROBLEM\na-long-host  cpus   x');
  });
});

describe('preflight: the playbook helper', () => {
  const inventory = inventoryFromHosts(['node1', 'node2', 'node3'].map((name) => ({ name, vars: {} })));
  const lab = (host: string, hostname: string): HostReport => ({ host, ...parsePreflightProbe(fixture('probe-lab-node1.txt')), hostname, macs: [], requiredPorts: [6443] });

  /** A PlaybookContext whose play returns what `values` gives for each host (as the engine would, in any order). */
  function fakeContext(values: Record<string, HostReport | Pending | undefined>, statuses: Record<string, HostPlayResult['status']> = {}, planning = false) {
    const plays: { title: string; pattern: string; tasks: Task<unknown>[] }[] = [];
    const ctx: Pick<PlaybookContext, 'play' | 'planning' | 'inventory'> = {
      planning,
      inventory,
      play: async (title, pattern, tasks) => {
        plays.push({ title, pattern, tasks });
        if (planning) return new PlayResult(title, new Map(), true);
        const hosts = new Map<string, HostPlayResult>();
        for (const [host, value] of Object.entries(values)) {
          hosts.set(host, { status: statuses[host] ?? 'ok', values: new Map(value === undefined ? [] : [[tasks[0]!, value]]) });
        }
        return new PlayResult(title, hosts);
      },
    };
    return { ctx, plays };
  }

  it('runs one play with the read-only probe and returns the reports in inventory order', async () => {
    const { ctx, plays } = fakeContext({ node3: lab('node3', 'node3'), node1: lab('node1', 'node1') });
    const result = await preflight(ctx, 'all', { ports: [6443] });
    expect(plays.map((p) => [p.title, p.pattern, p.tasks.map((t) => t.static!.id)])).to.deep.equal([['preflight', 'all', ['preflight', 'certificates:expiry-warning']]]);
    expect(result.reports.map((r) => r.host)).to.deep.equal(['node1', 'node3']);
    expect(result.notes.map((n) => n.host)).to.deep.equal(['node1', 'node3']);
  });

  it('throws a PlaybookError with the table when a host has a problem, and counts unprobed hosts as problems', async () => {
    const { ctx } = fakeContext({ node2: lab('node2', 'twin'), node1: lab('node1', 'twin'), node3: undefined }, { node3: 'unreachable' });
    let error: unknown;
    try {
      await preflight(ctx, 'all', { minCpus: 64 });
    } catch (caught) {
      error = caught;
    }
    expect(error).to.be.instanceOf(PlaybookError);
    expect((error as Error).message).to.equal(
      [
        'preflight failed: 5 problems on 3 of 3 hosts',
        'HOST   CHECK     PROBLEM',
        'node1  hostname  "twin" is also the hostname of node2',
        'node1  cpus      2 CPUs, fewer than the 64 required',
        'node2  hostname  "twin" is also the hostname of node1',
        'node2  cpus      2 CPUs, fewer than the 64 required',
        'node3  probe     not probed: unreachable',
        'not compared: product_uuid unknown on node1, node2',
      ].join('\n'),
    );
  });

  it('a value still pending (check mode after a pending change) is reported, not trusted', async () => {
    const { ctx } = fakeContext({ node1: new Pending('preflight probe on node1') });
    let message = '';
    await preflight(ctx, 'all').catch((error: Error) => (message = error.message));
    expect(message).to.include('node1  probe  not probed: pending: preflight probe on node1');
  });

  it('while planning it only validates', async () => {
    const { ctx, plays } = fakeContext({}, {}, true);
    expect(await preflight(ctx, 'all', { minCpus: 2 })).to.deep.equal({ reports: [], notes: [] });
    expect(plays).to.have.length(1);
    await preflight(ctx, 'all', { minCpus: -1 }).then(
      () => expect.fail('should reject'),
      (error: Error) => expect(error).to.be.instanceOf(InputError),
    );
    expect(() => preflightProbe({ ports: [70000] })).to.throw(InputError, /ports must be a list of TCP port numbers/);
  });

  it('the probe task never reports drift, and its result is the report', async () => {
    const task = preflightProbe({ ports: [6443] }).static!;
    const output = fixture('probe-lab-node1.txt');
    const ctx = {
      host: { name: 'node1', vars: {}, facts: {} },
      checkMode: true,
      pendingChanges: [],
      probe: async () => ({ code: 0, stdout: output, stderr: '', bytes: Buffer.from(output) }),
    } as never;
    expect(await task.check(ctx)).to.deep.equal([]);
    expect(await task.result!(ctx)).to.deep.equal({ host: 'node1', ...parsePreflightProbe(output), requiredPorts: [6443] });
  });
});
