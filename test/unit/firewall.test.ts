import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ensureFirewallPorts,
  FIREWALL_PROBE,
  firewallDrift,
  firewallPortsForRole,
  missingRules,
  parseFirewallProbe,
  parseRuleSpec,
  parseUfwStatus,
  ruleSpec,
} from '../../tasks/firewall.js';
import { parseFacts } from '../../runner/facts.js';
import type { RunResult } from '../../runner/contract.js';
import type { ApplyContext } from '../../runner/task.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/firewall/', import.meta.url));
const fixture = (name: string) => readFileSync(`${FIXTURES}${name}`, 'utf8');
const specs = (output: string) => parseUfwStatus(output).rules.map(ruleSpec);

/** A fake host whose FIREWALL_PROBE answers with `probeOutput()`; the commands run are recorded and may change that answer. */
function fakeHost(probeOutput: () => string, onRun: (display: string) => void = () => undefined) {
  const commands: string[] = [];
  const ok = (stdout: string): RunResult => ({ code: 0, stdout, stderr: '', bytes: Buffer.from(stdout) });
  const ctx: ApplyContext = {
    host: { name: 'node', vars: {}, facts: parseFacts('') },
    checkMode: false,
    pendingChanges: [],
    probe: async (command) => {
      if (command.text !== FIREWALL_PROBE.text) throw new Error(`unexpected probe ${command.display}`);
      return ok(probeOutput());
    },
    readFile: async () => null,
    readText: async () => null,
    stat: async () => null,
    run: async (command) => {
      commands.push(command.display);
      onRun(command.display);
      return ok('');
    },
    exec: async (command) => {
      commands.push(command.display);
      return ok('');
    },
    writeFile: async () => {
      throw new Error('the firewall task writes no file');
    },
    log: () => undefined,
    onHost: async () => {
      throw new Error('no other host');
    },
    reconnect: async () => undefined,
  };
  return { ctx, commands };
}

describe('firewall rule specs', () => {
  it('parses ports, ranges and IP protocols, canonically', () => {
    expect(parseRuleSpec('6443/tcp')).to.deep.equal({ kind: 'port', from: 6443, to: 6443, transport: 'tcp' });
    expect(parseRuleSpec('30000-32767/udp')).to.deep.equal({ kind: 'port', from: 30000, to: 32767, transport: 'udp' });
    expect(parseRuleSpec('protocol/112')).to.deep.equal({ kind: 'protocol', number: 112 });
    expect(ruleSpec(parseRuleSpec('10250-10250/tcp'))).to.equal('10250/tcp');
  });

  it('rejects malformed specs when the playbook loads, naming them', () => {
    expect(() => parseRuleSpec('6443')).to.throw(/PORT\/tcp.*"6443"/);
    expect(() => parseRuleSpec('70000/tcp')).to.throw(/1-65535.*"70000\/tcp"/);
    expect(() => parseRuleSpec('2380-2379/tcp')).to.throw(/range goes up/);
    expect(() => parseRuleSpec('protocol/300')).to.throw(/0-255/);
    expect(() => ensureFirewallPorts({ ports: ['6443/tcp', '6783/sctp'] })).to.throw(/invalid parameters for firewall task: .*"6783\/sctp"/);
  });

  it('counts a wanted range inside an open range as open, not a range only partly open', () => {
    const open = ['30000-32767/tcp', '10250/tcp', 'protocol/4'].map(parseRuleSpec);
    const wanted = ['30000-30100/tcp', '10250-10255/tcp', '30000-32767/udp', 'protocol/4', 'protocol/112'].map(parseRuleSpec);
    expect(missingRules(open, wanted).map(ruleSpec)).to.deep.equal(['10250-10255/tcp', '30000-32767/udp', 'protocol/112']);
  });
});

describe('ufw status (ufw 0.36.2, Debian 12)', () => {
  it('reads the IPv4 rules allowed from anywhere: ranges with a colon, lists, protocol-less rules as tcp and udp', () => {
    const status = parseUfwStatus(fixture('ufw-status-active.txt'));
    expect(status.active).to.equal(true);
    expect(status.rules.map(ruleSpec)).to.deep.equal(['22/tcp', '6443/tcp', '30000-32767/tcp', '6783/tcp', '6783/udp', '80/tcp', '443/tcp']);
  });

  it('an inactive ufw has no rules and is not active', () => {
    expect(parseUfwStatus(fixture('ufw-status-inactive.txt'))).to.deep.equal({ active: false, rules: [] });
    expect(specs('')).to.deep.equal([]);
  });
});

describe('firewall probe', () => {
  it('reads firewalld runtime and permanent lists, protocol names as numbers', () => {
    const state = parseFirewallProbe(fixture('firewalld-probe.txt'));
    expect(state.firewall).to.equal('firewalld');
    if (state.firewall !== 'firewalld') return;
    expect(state.runtime.map(ruleSpec)).to.deep.equal(['6443/tcp', '10250-10255/tcp', '8472/udp', 'protocol/112']);
    expect(state.permanent.map(ruleSpec)).to.deep.equal(['6443/tcp', '2379-2380/tcp']);
  });

  it('reads ufw behind its marker, and no firewall as none', () => {
    const state = parseFirewallProbe(`== ufw\n${fixture('ufw-status-active.txt')}`);
    expect(state.firewall === 'ufw' && state.open.map(ruleSpec)).to.deep.equal(['22/tcp', '6443/tcp', '30000-32767/tcp', '6783/tcp', '6783/udp', '80/tcp', '443/tcp']);
    expect(parseFirewallProbe('== none\n')).to.deep.equal({ firewall: 'none' });
  });

  it('drift names each rule to open; runtime-only and permanent-only rules are told apart', () => {
    const wanted = ['6443/tcp', '2379-2380/tcp', '10250-10255/tcp', '8472/udp', 'protocol/112', '10256/tcp'].map(parseRuleSpec);
    expect(firewallDrift(parseFirewallProbe(fixture('firewalld-probe.txt')), wanted)).to.deep.equal([
      { subject: 'firewalld: 2379-2380/tcp', current: 'closed at runtime (permanent only)', desired: 'open (runtime and permanent)' },
      { subject: 'firewalld: 10250-10255/tcp', current: 'open until reload (not permanent)', desired: 'open (runtime and permanent)' },
      { subject: 'firewalld: 8472/udp', current: 'open until reload (not permanent)', desired: 'open (runtime and permanent)' },
      { subject: 'firewalld: protocol/112', current: 'open until reload (not permanent)', desired: 'open (runtime and permanent)' },
      { subject: 'firewalld: 10256/tcp', current: 'closed', desired: 'open (runtime and permanent)' },
    ]);
    expect(firewallDrift({ firewall: 'none' }, wanted)).to.deep.equal([]);
  });
});

describe('ensureFirewallPorts', () => {
  it('on a host without an active firewall: no drift and no command', async () => {
    const host = fakeHost(() => '== none\n');
    const task = ensureFirewallPorts({ ports: ['6443/tcp'] }).static!;
    expect(await task.check(host.ctx)).to.deep.equal([]);
    await task.apply(host.ctx, []);
    expect(host.commands).to.deep.equal([]);
  });

  it('ufw: allows exactly the missing rules, then has no drift', async () => {
    let status = fixture('ufw-status-active.txt');
    const host = fakeHost(
      () => `== ufw\n${status}`,
      (command) => {
        // what `ufw allow` adds: the rule at the end of the IPv4 list
        const rule = command.replace(/^ufw allow /, '');
        status = status.replace('22/tcp (v6)', `${rule.padEnd(27)}ALLOW       Anywhere\n22/tcp (v6)`);
      },
    );
    const task = ensureFirewallPorts({ ports: ['6443/tcp', '10250-10255/tcp', '30000-32767/tcp', '30000-32767/udp', '6783/udp'] }).static!;
    expect((await task.check(host.ctx)).map((d) => d.subject)).to.deep.equal(['ufw: 10250-10255/tcp', 'ufw: 30000-32767/udp']);
    await task.apply(host.ctx, []);
    expect(host.commands).to.deep.equal(['ufw allow 10250:10255/tcp', 'ufw allow 30000:32767/udp']);
    expect(await task.check(host.ctx)).to.deep.equal([]);
  });

  it('ufw: a whole IP protocol fails with what to do instead', async () => {
    const host = fakeHost(() => `== ufw\n${fixture('ufw-status-active.txt')}`);
    const task = ensureFirewallPorts({ ports: ['protocol/112'] }).static!;
    expect(await task.check(host.ctx)).to.deep.equal([{ subject: 'ufw: protocol/112', current: 'closed', desired: 'allowed' }]);
    let failure: unknown;
    await task.apply(host.ctx, []).catch((error: unknown) => (failure = error));
    expect(String(failure)).to.match(/ufw cannot allow IP protocol 112.*\/etc\/ufw\/before\.rules/);
    expect(host.commands).to.deep.equal([]);
  });

  it('firewalld: adds permanent and runtime rules, each only where missing, no reload; ports and protocols in separate calls (firewall-cmd refuses them mixed)', async () => {
    const host = fakeHost(() => fixture('firewalld-probe.txt'));
    await ensureFirewallPorts({ ports: ['6443/tcp', '2379-2380/tcp', '8472/udp', 'protocol/112', '10256/tcp'] }).static!.apply(host.ctx, []);
    expect(host.commands).to.deep.equal([
      'firewall-cmd --permanent --add-port=8472/udp --add-port=10256/tcp',
      'firewall-cmd --permanent --add-protocol=112',
      'firewall-cmd --add-port=2379-2380/tcp --add-port=10256/tcp',
    ]);
  });
});

describe('firewallPortsForRole', () => {
  it('kubeadm control plane with Weave (seed 000): API server, etcd, scheduler, controller-manager, kubelet range, kube-proxy, Weave', () => {
    expect(firewallPortsForRole({ role: 'control-plane', cni: 'weave' })).to.deep.equal([
      '6443/tcp', '2379-2380/tcp', '10257/tcp', '10259/tcp', '10250-10255/tcp', '10256/tcp', '6783/tcp', '6783-6784/udp',
    ]);
  });

  it('single node: the control plane runs workloads, so NodePorts too', () => {
    expect(firewallPortsForRole({ role: 'control-plane', cni: 'flannel', runsWorkloads: true })).to.deep.equal([
      '6443/tcp', '2379-2380/tcp', '10257/tcp', '10259/tcp', '10250-10255/tcp', '10256/tcp', '8472/udp', '30000-32767/tcp', '30000-32767/udp',
    ]);
  });

  it('workers: kubelet, kube-proxy, the CNI and NodePorts tcp+udp', () => {
    expect(firewallPortsForRole({ role: 'worker', cni: 'calico' })).to.deep.equal(['10250-10255/tcp', '10256/tcp', '179/tcp', 'protocol/4', '30000-32767/tcp', '30000-32767/udp']);
    expect(firewallPortsForRole({ role: 'worker', cni: 'cilium' })).to.deep.equal(['10250-10255/tcp', '10256/tcp', '8472/udp', '4240/tcp', '30000-32767/tcp', '30000-32767/udp']);
  });

  it('stacked HA, VIP variant (seed 004): haproxy port and VRRP on the control planes', () => {
    expect(firewallPortsForRole({ role: 'control-plane', cni: 'flannel', vip: { port: 8888 } }).slice(-2)).to.deep.equal(['8888/tcp', 'protocol/112']);
  });

  it('stacked HA balancer (seed 002) and the hard way (seed 003)', () => {
    expect(firewallPortsForRole({ role: 'balancer' })).to.deep.equal(['6443/tcp']);
    expect(firewallPortsForRole({ role: 'hard-way-balancer', statsPort: 9999 })).to.deep.equal(['6443/tcp', '9999/tcp']);
    expect(firewallPortsForRole({ role: 'hard-way-controller' })).to.deep.equal(['6443/tcp', '2379-2380/tcp', '80/tcp']);
  });

  it('every role gives valid specs', () => {
    for (const role of ['control-plane', 'worker', 'balancer', 'hard-way-controller', 'hard-way-balancer'] as const) {
      for (const spec of firewallPortsForRole({ role, cni: 'calico', vip: { port: 8888 }, statsPort: 9999 })) expect(() => parseRuleSpec(spec)).not.to.throw();
    }
  });
});
