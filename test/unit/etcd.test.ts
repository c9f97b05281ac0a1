import { expect } from 'chai';
import {
  ensureEtcdMember,
  etcdArgs,
  etcdctlCommand,
  etcdHealthDrift,
  etcdHealthy,
  etcdServiceDrift,
  parseEndpointHealth,
  parseEtcdServiceState,
  parseMemberList,
  renderEtcdUnit,
  validateEtcdMember,
  type EtcdMemberParams,
} from '../../tasks/etcd.js';

const members = [
  { name: 'controller-0', ip: '10.240.0.10' },
  { name: 'controller-1', ip: '10.240.0.11' },
  { name: 'controller-2', ip: '10.240.0.12' },
];
const seed: EtcdMemberParams = {
  name: 'controller-0',
  ip: '10.240.0.10',
  members,
  certFile: '/etc/etcd/kubernetes.pem',
  keyFile: '/etc/etcd/kubernetes-key.pem',
  trustedCaFile: '/etc/etcd/ca.pem',
};

describe('tasks/etcd', () => {
  it('renders the seed\'s etcd.service exactly, with Debian\'s /usr/bin/etcd', () => {
    expect(renderEtcdUnit(seed)).to.equal(`[Unit]
Description=etcd
Documentation=https://github.com/coreos

[Service]
Type=notify
ExecStart=/usr/bin/etcd \\
  --name controller-0 \\
  --cert-file=/etc/etcd/kubernetes.pem \\
  --key-file=/etc/etcd/kubernetes-key.pem \\
  --peer-cert-file=/etc/etcd/kubernetes.pem \\
  --peer-key-file=/etc/etcd/kubernetes-key.pem \\
  --trusted-ca-file=/etc/etcd/ca.pem \\
  --peer-trusted-ca-file=/etc/etcd/ca.pem \\
  --peer-client-cert-auth \\
  --client-cert-auth \\
  --initial-advertise-peer-urls https://10.240.0.10:2380 \\
  --listen-peer-urls https://10.240.0.10:2380 \\
  --listen-client-urls https://10.240.0.10:2379,https://127.0.0.1:2379 \\
  --advertise-client-urls https://10.240.0.10:2379 \\
  --initial-cluster-token etcd-cluster-0 \\
  --initial-cluster controller-0=https://10.240.0.10:2380,controller-1=https://10.240.0.11:2380,controller-2=https://10.240.0.12:2380 \\
  --initial-cluster-state new \\
  --data-dir=/var/lib/etcd
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`);
  });

  it('builds the argv systemd will run (what the running member is compared with), with options and IPv6 brackets', () => {
    const argv = etcdArgs({ ...seed, name: 'b', ip: 'fd00::2', members: [{ name: 'a', ip: 'fd00::1' }, { name: 'b', ip: 'fd00::2' }], dataDir: '/srv/etcd', clusterToken: 'prod-1' });
    expect(argv.slice(0, 3)).to.deep.equal(['/usr/bin/etcd', '--name', 'b']);
    expect(argv).to.include.members(['https://[fd00::2]:2380', 'https://[fd00::2]:2379,https://127.0.0.1:2379', 'a=https://[fd00::1]:2380,b=https://[fd00::2]:2380', 'prod-1', '--data-dir=/srv/etcd']);
    // The unit splits into exactly this argv (whitespace-separated, nothing quoted).
    const exec = renderEtcdUnit(seed).split('\n').filter((line) => line.startsWith('ExecStart=') || line.startsWith('  ')).join(' ');
    expect(exec.replace('ExecStart=', '').replace(/\\/g, ' ').trim().split(/\s+/)).to.deep.equal(etcdArgs(seed));
  });

  it('rejects parameters that cannot make a working member, with the reason', () => {
    const bad = (patch: Partial<EtcdMemberParams>) => () => validateEtcdMember({ ...seed, ...patch });
    expect(bad({ name: 'controller-9' })).to.throw('member controller-9 is not in members (controller-0, controller-1, controller-2)');
    expect(bad({ ip: '10.240.0.99' })).to.throw('member controller-0 has address 10.240.0.10 in members but ip 10.240.0.99');
    expect(bad({ ip: 'controller-0.local' })).to.throw('ip must be an IP address');
    expect(bad({ members: [...members, { name: 'controller-0', ip: '10.240.0.13' }] })).to.throw('member controller-0 is listed twice');
    expect(bad({ members: [...members, { name: 'x', ip: '10.240.0.10' }] })).to.throw('address 10.240.0.10 is listed twice');
    expect(bad({ certFile: 'kubernetes.pem' })).to.throw('certFile must be an absolute path');
    expect(bad({ keyFile: '/etc/etcd/my key.pem' })).to.throw("keyFile must not contain spaces, quotes, backslashes, % or $");
    expect(bad({ trustedCaFile: '/etc/%H/ca.pem' })).to.throw('trustedCaFile must not contain');
    expect(bad({ dataDir: '/var/lib/etcd/default' })).to.throw("dataDir must not be /var/lib/etcd/default: Debian's package may have run its own single-node member there");
    expect(bad({ clusterToken: 'a b' })).to.throw('clusterToken must be letters');
    expect(bad({})).not.to.throw();
    // At playbook load, static parameters are validated before any connection.
    expect(() => ensureEtcdMember({ ...seed, name: 'nope' })).to.throw('member nope is not in members');
  });

  it('has three tasks with canonical ids: packages, the unit, the running member', () => {
    const tasks = ensureEtcdMember(seed).map((task) => task.static!.id);
    expect(tasks).to.deep.equal(['etcd:packages', 'systemd-unit:/etc/systemd/system/etcd.service', 'etcd:service']);
  });

  it('parses the service probe, including the running member\'s argv from /proc/PID/cmdline', () => {
    const cmdline = Buffer.from(`${etcdArgs(seed).join('\0')}\0`).toString('base64');
    const state = parseEtcdServiceState(`IsEnabled=enabled\nIsActive=active\nLoadState=loaded\nNeedDaemonReload=no\nMainPID=812\nCmdline=${cmdline}\n`);
    expect(state).to.deep.equal({ enabled: 'enabled', active: 'active', loadState: 'loaded', needDaemonReload: false, mainPid: 812, argv: etcdArgs(seed) });
    expect(parseEtcdServiceState('IsEnabled=disabled\nIsActive=inactive\nLoadState=loaded\nNeedDaemonReload=no\nMainPID=0\n').argv).to.equal(null);
  });

  it('restarts only when the running member\'s flags differ from the unit; starts, enables and reloads as needed', () => {
    const wanted = etcdArgs(seed);
    const running = { enabled: 'enabled', active: 'active', loadState: 'loaded', needDaemonReload: false, mainPid: 812, argv: wanted };
    expect(etcdServiceDrift(running, wanted)).to.deep.equal([]);
    const other = etcdArgs({ ...seed, clusterToken: 'etcd-cluster-1' });
    expect(etcdServiceDrift({ ...running, argv: other }, wanted).map((d) => d.subject)).to.deep.equal(['restart']);
    expect(etcdServiceDrift({ ...running, needDaemonReload: true, argv: other }, wanted).map((d) => d.subject)).to.deep.equal(['daemon-reload', 'restart']);
    expect(etcdServiceDrift({ ...running, enabled: 'disabled', active: 'inactive', argv: null }, wanted)).to.deep.equal([
      { subject: 'enabled', current: 'disabled', desired: 'enabled' },
      { subject: 'running', current: 'inactive', desired: 'active' },
    ]);
    expect(() => etcdServiceDrift({ ...running, enabled: 'masked', loadState: 'masked' }, wanted)).to.throw('etcd.service is masked');
  });

  it('parses etcdctl member list and endpoint health, and says what is unhealthy', () => {
    const list = '8e9e05c52164694d, started, controller-0, https://10.240.0.10:2380, https://10.240.0.10:2379, false\n' +
      '91bc3c398fb3c146, started, controller-1, https://10.240.0.11:2380, https://10.240.0.11:2379, false\n' +
      'fd422379fda50e48, unstarted, , https://10.240.0.12:2380, , false\n';
    expect(parseMemberList(list).map((m) => [m.status, m.name])).to.deep.equal([['started', 'controller-0'], ['started', 'controller-1'], ['unstarted', '']]);
    const health = 'https://10.240.0.10:2379 is healthy: successfully committed proposal: took = 2.1ms\nhttps://10.240.0.11:2379 is unhealthy: failed to commit proposal: context deadline exceeded\n';
    expect([...parseEndpointHealth(health)]).to.deep.equal([['https://10.240.0.10:2379', true], ['https://10.240.0.11:2379', false]]);
    const endpoints = ['https://10.240.0.10:2379', 'https://10.240.0.11:2379'];
    expect(etcdHealthDrift({ endpoints, members: 3 }, { code: 1, stdout: '', stderr: health }, { code: 0, stdout: list, stderr: '' })).to.deep.equal([
      { subject: 'endpoint health', current: `https://10.240.0.11:2379 not healthy: ${health.trim().split('\n').join(' | ')}`, desired: '2 healthy' },
      { subject: 'members', current: '2 started (controller-0, controller-1)', desired: '3 started' },
    ]);
    const healthy = endpoints.map((e) => `${e} is healthy: successfully committed proposal: took = 2ms`).join('\n');
    expect(etcdHealthDrift({ endpoints, members: 2 }, { code: 0, stdout: '', stderr: healthy }, { code: 0, stdout: list, stderr: '' })).to.deep.equal([]);
  });

  it('runs etcdctl over TLS with every value quoted, and validates the verification\'s parameters', () => {
    const command = etcdctlCommand({ endpoints: ['https://10.240.0.10:2379', 'https://10.240.0.11:2379'], cacert: '/etc/etcd/ca.pem', cert: '/etc/etcd/kubernetes.pem', key: '/etc/etcd/kubernetes-key.pem' }, ['member', 'list']);
    expect(command.text).to.equal('ETCDCTL_API=3 etcdctl --endpoints=https://10.240.0.10:2379,https://10.240.0.11:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem --dial-timeout=3s --command-timeout=5s member list');
    expect(() => etcdHealthy({ endpoints: ['http://10.240.0.10:2379'], cacert: '/a', cert: '/b', key: '/c', members: 3 })).to.throw('endpoints must be https:// client URLs');
    expect(() => etcdHealthy({ endpoints: ['https://10.240.0.10:2379'], cacert: '/a', cert: '/b', key: '/c', members: 0 })).to.throw('members must be a positive integer');
    expect(etcdHealthy({ endpoints: ['https://10.240.0.10:2379'], cacert: '/a', cert: '/b', key: '/c', members: 3 }).static!.id).to.equal('etcd-health:https://10.240.0.10:2379');
  });
});
