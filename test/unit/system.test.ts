import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { InputError } from '../../runner/errors.js';
import type { CheckContext } from '../../runner/task.js';
import {
  alternativesDrift,
  editHostnameLine,
  editHosts,
  editKubeletExtraArgs,
  ensureAlternatives,
  ensureHostname,
  ensureHostsEntries,
  ensureIptablesLegacy,
  ensureKubeletExtraArgs,
  kubeletEnvironmentFile,
  parseAlternatives,
  type HostsEntry,
} from '../../tasks/system.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/system/${name}`, import.meta.url), 'utf8');

describe('update-alternatives (pure)', () => {
  it('parses --query: mode, value, alternatives with priorities (Debian bookworm, iptables)', () => {
    expect(parseAlternatives(fixture('alternatives-iptables-auto-nft.txt'))).to.deep.equal({
      name: 'iptables',
      link: '/usr/sbin/iptables',
      status: 'auto',
      best: '/usr/sbin/iptables-nft',
      value: '/usr/sbin/iptables-nft',
      alternatives: [
        { path: '/usr/sbin/iptables-legacy', priority: 10 },
        { path: '/usr/sbin/iptables-nft', priority: 20 },
      ],
    });
    const legacy = parseAlternatives(fixture('alternatives-iptables-manual-legacy.txt'));
    expect([legacy.status, legacy.value]).to.deep.equal(['manual', '/usr/sbin/iptables-legacy']);
  });

  it('drift: wrong value, then auto mode (pinned with --set), then in sync', () => {
    const auto = parseAlternatives(fixture('alternatives-iptables-auto-nft.txt'));
    expect(alternativesDrift(auto, '/usr/sbin/iptables-legacy')).to.deep.equal([{ subject: 'iptables', current: '/usr/sbin/iptables-nft', desired: '/usr/sbin/iptables-legacy' }]);
    expect(alternativesDrift(auto, '/usr/sbin/iptables-nft')).to.deep.equal([{ subject: 'iptables mode', current: 'auto', desired: 'manual' }]);
    expect(alternativesDrift(parseAlternatives(fixture('alternatives-iptables-manual-legacy.txt')), '/usr/sbin/iptables-legacy')).to.deep.equal([]);
  });

  it('a path that is not an alternative fails, listing those that are', () => {
    expect(() => alternativesDrift(parseAlternatives(fixture('alternatives-iptables-auto-nft.txt')), '/usr/sbin/iptables-old')).to.throw(
      '/usr/sbin/iptables-old is not an alternative for iptables; registered: /usr/sbin/iptables-legacy, /usr/sbin/iptables-nft',
    );
  });

  it('check mode on a fresh host: a group not registered yet is pending on the packages task, not an error or a silent skip', async () => {
    const absent = { code: 2, stdout: '', stderr: 'update-alternatives: error: no alternatives for arptables\n', bytes: Buffer.alloc(0) };
    const ctx = (pendingChanges: string[]) =>
      ({ checkMode: true, pendingChanges, probe: async () => absent }) as unknown as CheckContext;
    const arptables = ensureAlternatives({ name: 'arptables', path: '/usr/sbin/arptables-legacy', skipWhenAbsent: true }).static!;
    const iptables = ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' }).static!;
    const pending = ['ensure files', 'packages iptables, arptables'];
    expect(await arptables.check(ctx(pending))).to.deep.equal([{ subject: 'alternative arptables', desired: '/usr/sbin/arptables-legacy', pending: 'packages iptables, arptables' }]);
    expect(await iptables.check(ctx(pending))).to.deep.equal([{ subject: 'alternative iptables', desired: '/usr/sbin/iptables-legacy', pending: 'packages iptables, arptables' }]);
    // Nothing pending: the skip is real, and a missing required group is the clear error.
    expect(await arptables.check(ctx([]))).to.deep.equal([]);
    let error: unknown;
    await iptables.check(ctx(['ensure files'])).catch((e: unknown) => (error = e));
    expect(String(error)).to.match(/update-alternatives --query iptables failed: .*no alternatives for arptables.*is the package that provides iptables installed/);
  });

  it('tasks: ids, validation, and the legacy set of seed 002', () => {
    expect(ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' }).static!.id).to.equal('alternatives:iptables');
    expect(() => ensureAlternatives({ name: 'iptables', path: 'iptables-legacy' })).to.throw(InputError, /path must be an absolute path/);
    expect(() => ensureAlternatives({ name: '../x', path: '/x' })).to.throw(InputError, /not an alternatives group name/);
    expect(ensureIptablesLegacy().map((t) => t.static!.title)).to.deep.equal([
      'alternative iptables → /usr/sbin/iptables-legacy',
      'alternative ip6tables → /usr/sbin/ip6tables-legacy',
      'alternative arptables → /usr/sbin/arptables-legacy',
      'alternative ebtables → /usr/sbin/ebtables-legacy',
    ]);
  });
});

describe('editHosts (pure)', () => {
  const nodes: HostsEntry[] = [
    { ip: '10.77.3.11', names: ['node1'] },
    { ip: '10.77.3.12', names: ['node2'] },
  ];

  it('appends missing entries and moves the hostname off 127.0.1.1 (lab /etc/hosts)', () => {
    expect(editHosts(fixture('hosts-debian-lab.txt'), nodes)).to.equal(
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n10.77.3.11 node1\n10.77.3.12 node2\n',
    );
  });

  it('adds names to an address that already has a line, keeping its spacing (seed 004 file)', () => {
    expect(
      editHosts(fixture('hosts-seed004.txt'), [
        { ip: '192.168.0.61', names: ['node1.internal', 'node1'] },
        { ip: '192.168.0.66', names: ['k8s-api.internal'] },
      ]),
    ).to.equal(
      fixture('hosts-seed004.txt').replace('192.168.0.61    node1.internal\n', '192.168.0.61    node1.internal node1\n') + '192.168.0.66 k8s-api.internal\n',
    );
  });

  it('a file already in sync is returned byte for byte', () => {
    const text = fixture('hosts-seed004.txt');
    expect(editHosts(text, [{ ip: '192.168.0.62', names: ['node2.internal'] }])).to.equal(text);
    expect(editHosts(text, [{ ip: '127.0.0.1', names: ['LOCALHOST'] }])).to.equal(text); // names compare case-insensitively
  });

  it('hand-edited file: a name at another address is moved (trailing comment kept), IPv6 and commented lines untouched, no final newline fixed only when appending', () => {
    const text = fixture('hosts-hand-edited.txt');
    expect(
      editHosts(text, [
        { ip: '10.0.0.2', names: ['node2'] },
        { ip: '10.0.0.1', names: ['gateway.lan', 'gw'] },
        { ip: '10.0.0.3', names: ['node3.lan', 'node3'] },
      ]),
    ).to.equal(
      '# /etc/hosts, edited by hand\n127.0.0.1\tlocalhost\n127.0.1.1\told-name.lan   old-name  # installer\n\n' +
        '10.0.0.9    registry.lan   # moved away later\n10.0.0.1\tgateway.lan gw\nfe80::9     node2\n#10.0.0.2 node2 (commented out)\n10.0.0.3    node3 node3.lan\n10.0.0.2 node2\n',
    );
    // Removing the last name of a line removes the line; a file without a final newline keeps it so when nothing is appended.
    expect(editHosts(text, [{ ip: '10.0.0.3', names: ['registry.lan', 'node2'] }])).to.equal(
      '# /etc/hosts, edited by hand\n127.0.0.1\tlocalhost\n127.0.1.1\told-name.lan   old-name  # installer\n\n' +
        '10.0.0.1\tgateway.lan\nfe80::9     node2\n#10.0.0.2 node2 (commented out)\n10.0.0.3    node3 node3.lan registry.lan node2',
    );
  });

  it('removing a first name keeps the spacing after the address', () => {
    expect(editHosts('10.0.0.9\tnode2  other # c\n', [{ ip: '10.0.0.2', names: ['node2'] }])).to.equal('10.0.0.9\tother # c\n10.0.0.2 node2\n');
    expect(editHosts('10.0.0.9 a   node2 b  c\n', [{ ip: '10.0.0.2', names: ['node2', 'b'] }])).to.equal('10.0.0.9 a  c\n10.0.0.2 node2 b\n');
  });

  it('is idempotent: a second edit changes nothing', () => {
    for (const file of ['hosts-debian-lab.txt', 'hosts-seed004.txt', 'hosts-hand-edited.txt', '']) {
      const once = editHosts(file ? fixture(file) : '', nodes);
      expect(editHosts(once, nodes)).to.equal(once);
    }
  });

  it('validates entries when the playbook loads', () => {
    expect(() => ensureHostsEntries([{ ip: '10.0.0.300', names: ['a'] }])).to.throw(InputError, 'entries[0].ip is not an IP address: "10.0.0.300"');
    expect(() => ensureHostsEntries([{ ip: '10.0.0.1', names: ['a b'] }])).to.throw(InputError, 'entries[0].names[0] is not a host name: "a b"');
    expect(() => ensureHostsEntries([{ ip: '10.0.0.1', names: ['a#b'] }])).to.throw(InputError, /is not a host name/);
    expect(() => ensureHostsEntries([{ ip: '10.0.0.1', names: ['a'] }, { ip: '10.0.0.2', names: ['A'] }])).to.throw(InputError, 'A is wanted at both 10.0.0.1 and 10.0.0.2');
    expect(() => ensureHostsEntries([{ ip: '10.0.0.1', names: ['a'] }, { ip: 'fd00::1', names: ['a'] }])).not.to.throw();
    expect(ensureHostsEntries(nodes).static!.id).to.equal('hosts:node1,node2');
  });
});

describe('editHostnameLine (pure)', () => {
  it('renames the 127.0.1.1 line: FQDN then short name (Debian layout)', () => {
    expect(editHostnameLine(fixture('hosts-debian-lab.txt'), 'cp1.internal', 'node1')).to.equal(
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\tcp1.internal cp1\n',
    );
    expect(editHostnameLine(fixture('hosts-debian-lab.txt'), 'node1', 'node1')).to.equal(fixture('hosts-debian-lab.txt'));
  });

  it('inserts a 127.0.1.1 line after 127.0.0.1 when there is none (seed 004 file), or into an empty file', () => {
    const text = fixture('hosts-seed004.txt');
    const lines = text.split('\n');
    lines.splice(1, 0, '127.0.1.1\tnode9.internal node9');
    expect(editHostnameLine(text, 'node9.internal', 'localhost.localdomain')).to.equal(lines.join('\n'));
    expect(editHostnameLine('', 'node9', 'x')).to.equal('127.0.1.1\tnode9\n');
  });

  it('when the hostname is mapped to another address, the 127.0.1.1 line loses our and the previous names', () => {
    expect(editHostnameLine(fixture('hosts-hand-edited.txt'), 'node3', 'old-name.lan')).to.equal(
      '# /etc/hosts, edited by hand\n127.0.0.1\tlocalhost\n\n10.0.0.9    registry.lan node2   # moved away later\n10.0.0.1\tgateway.lan\nfe80::9     node2\n#10.0.0.2 node2 (commented out)\n10.0.0.3    node3 node3.lan',
    );
    expect(editHostnameLine('127.0.1.1\tnode3 keep\n10.0.0.3 node3\n', 'node3', 'node3')).to.equal('127.0.1.1\tkeep\n10.0.0.3 node3\n');
  });

  it('ensureHostsEntries and ensureHostname converge together, in either order', () => {
    const entries: HostsEntry[] = [{ ip: '10.77.3.11', names: ['cp1.internal', 'cp1'] }];
    const start = fixture('hosts-debian-lab.txt');
    const hostsThenName = editHostnameLine(editHosts(start, entries), 'cp1.internal', 'node1');
    const nameThenHosts = editHosts(editHostnameLine(start, 'cp1.internal', 'node1'), entries);
    const expected = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n10.77.3.11 cp1.internal cp1\n';
    expect(hostsThenName).to.equal(expected);
    expect(nameThenHosts).to.equal(expected);
    // and the next run (hostname now cp1.internal) changes nothing in either order
    expect(editHostnameLine(editHosts(expected, entries), 'cp1.internal', 'cp1.internal')).to.equal(expected);
    expect(editHosts(editHostnameLine(expected, 'cp1.internal', 'cp1.internal'), entries)).to.equal(expected);
  });

  it('hostnames must be valid Kubernetes node names', () => {
    expect(() => ensureHostname('Node1')).to.throw(InputError, /hostname must be lowercase letters/);
    expect(() => ensureHostname('node_1')).to.throw(InputError, /hostname must be lowercase/);
    expect(() => ensureHostname(`${'a'.repeat(60)}.internal`)).to.throw(InputError, /at most 64 characters/);
    expect(ensureHostname('node1.internal').static!.id).to.equal('hostname');
  });
});

describe('kubelet environment file per distribution (pure)', () => {
  it('is /etc/default/kubelet on Debian-family hosts and /etc/sysconfig/kubelet on the RHEL family (the packages\' drop-ins)', () => {
    expect(['debian', 'ubuntu', 'raspbian'].map(kubeletEnvironmentFile)).to.deep.equal(Array(3).fill('/etc/default/kubelet'));
    expect(['centos', 'rhel', 'rocky', 'almalinux', 'fedora', 'ol'].map(kubeletEnvironmentFile)).to.deep.equal(Array(6).fill('/etc/sysconfig/kubelet'));
  });
});

describe('editKubeletExtraArgs (pure)', () => {
  const nodeIp = { 'node-ip': '10.0.0.7' };

  it("fills the package's empty KUBELET_EXTRA_ARGS=, or writes the line into an empty file", () => {
    expect(editKubeletExtraArgs(fixture('kubelet-package-default.txt'), nodeIp)).to.equal('KUBELET_EXTRA_ARGS=--node-ip=10.0.0.7\n');
    expect(editKubeletExtraArgs('', nodeIp)).to.equal('KUBELET_EXTRA_ARGS=--node-ip=10.0.0.7\n');
  });

  it("replaces the seed 002 value, keeping its single quotes; the same value is kept byte for byte", () => {
    expect(editKubeletExtraArgs(fixture('kubelet-seed002.txt'), nodeIp)).to.equal("KUBELET_EXTRA_ARGS='--node-ip=10.0.0.7'\n");
    expect(editKubeletExtraArgs(fixture('kubelet-seed002.txt'), { 'node-ip': '172.27.11.10' })).to.equal(fixture('kubelet-seed002.txt'));
  });

  it('merges with other flags: "--node-ip X" becomes --node-ip=X in place, others kept in order, new ones appended', () => {
    expect(editKubeletExtraArgs(fixture('kubelet-other-flags.txt'), nodeIp)).to.equal(
      '# extra flags for this node\nKUBELET_EXTRA_ARGS="--cgroup-driver=systemd --node-ip=10.0.0.7 --max-pods=150"\n',
    );
    expect(editKubeletExtraArgs(fixture('kubelet-other-flags.txt'), { ...nodeIp, 'max-pods': '110', 'fail-swap-on': 'false' })).to.equal(
      '# extra flags for this node\nKUBELET_EXTRA_ARGS="--cgroup-driver=systemd --node-ip=10.0.0.7 --max-pods=110 --fail-swap-on=false"\n',
    );
  });

  it('edits the last KUBELET_EXTRA_ARGS line (the one systemd uses), quoting once it has several flags', () => {
    expect(editKubeletExtraArgs(fixture('kubelet-two-lines.txt'), nodeIp)).to.equal(
      'KUBELET_EXTRA_ARGS=--v=2\n# later override\nexport KUBELET_EXTRA_ARGS="--fail-swap-on=false --node-ip=10.0.0.7"\nOTHER=1\n',
    );
  });

  it('drops repeats of a managed flag and is idempotent', () => {
    const text = "KUBELET_EXTRA_ARGS='--node-ip=1.1.1.1 --v=2 --node-ip 2.2.2.2'\n";
    const once = editKubeletExtraArgs(text, nodeIp);
    expect(once).to.equal("KUBELET_EXTRA_ARGS='--node-ip=10.0.0.7 --v=2'\n");
    expect(editKubeletExtraArgs(once, nodeIp)).to.equal(once);
  });

  it('validates nodeIp and flags when the playbook loads', () => {
    expect(() => ensureKubeletExtraArgs({ nodeIp: '10.0.0' })).to.throw(InputError, /nodeIp must be an IP address/);
    expect(() => ensureKubeletExtraArgs({ nodeIp: '10.0.0.7,fd00::7' })).not.to.throw();
    expect(() => ensureKubeletExtraArgs({ flags: { '--v': '2' } })).to.throw(InputError, /flag name must be like "cgroup-driver"/);
    expect(() => ensureKubeletExtraArgs({ flags: { v: '2 --x' } })).to.throw(InputError, /without blanks/);
    expect(() => ensureKubeletExtraArgs({})).to.throw(InputError, /nothing to set/);
    expect(ensureKubeletExtraArgs({ nodeIp: '10.0.0.7' }).static!.title).to.equal('kubelet --node-ip=10.0.0.7');
  });
});
