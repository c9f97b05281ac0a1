import { expect } from 'chai';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadInventory, parseInventory } from '../../runner/inventory/index.js';
import type { HostView } from '../../runner/task.js';
import { parseFacts } from '../../runner/facts.js';
import {
  ensureClusterObjects,
  ensureControlPlane,
  ensureFrontEndHaproxy,
  ensureHealthzProxy,
  ensureKubeletApiRbac,
  httpAnswerProblem,
  httpAnswers,
  KUBELET_API_RBAC_MANIFEST,
  kubeApiserverFlags,
  objectDifferences,
  parseClusterObjects,
  parseHttpAnswer,
  renderFrontEndHaproxyConfig,
  renderHealthzSite,
  renderKubeApiserverUnit,
  renderKubeControllerManagerUnit,
  renderKubeSchedulerConfig,
  renderKubeSchedulerUnit,
  schedulerConfigApiVersion,
  validateKubeApiserverOptions,
} from '../../tasks/control-plane.js';
import hardWay, { binarySource, firstServiceIp, HARD_WAY_BINARIES, readHardWayVars } from '../../playbooks/hard-way.js';
import { VarReader } from '../../playbooks/vars.js';
import { localHost, run } from '../helpers/local.js';
import { recordingContext } from '../helpers/apply-context.js';
import { plays } from '../helpers/plays.js';

/** Seed 003's kube-apiserver.service heredoc as it lands on disk (`\\` → `\`), INTERNAL_IP=10.240.0.10. */
const SEED_APISERVER_UNIT = `[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/kubernetes/kubernetes

[Service]
ExecStart=/usr/local/bin/kube-apiserver \\
  --advertise-address=10.240.0.10 \\
  --allow-privileged=true \\
  --apiserver-count=3 \\
  --audit-log-maxage=30 \\
  --audit-log-maxbackup=3 \\
  --audit-log-maxsize=100 \\
  --audit-log-path=/var/log/audit.log \\
  --authorization-mode=Node,RBAC \\
  --bind-address=0.0.0.0 \\
  --client-ca-file=/var/lib/kubernetes/ca.pem \\
  --enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota \\
  --etcd-cafile=/var/lib/kubernetes/ca.pem \\
  --etcd-certfile=/var/lib/kubernetes/kubernetes.pem \\
  --etcd-keyfile=/var/lib/kubernetes/kubernetes-key.pem \\
  --etcd-servers=https://10.240.0.10:2379,https://10.240.0.11:2379,https://10.240.0.12:2379 \\
  --event-ttl=1h \\
  --encryption-provider-config=/var/lib/kubernetes/encryption-config.yaml \\
  --kubelet-certificate-authority=/var/lib/kubernetes/ca.pem \\
  --kubelet-client-certificate=/var/lib/kubernetes/kubernetes.pem \\
  --kubelet-client-key=/var/lib/kubernetes/kubernetes-key.pem \\
  --kubelet-https=true \\
  --runtime-config='api/all=true' \\
  --service-account-key-file=/var/lib/kubernetes/service-account.pem \\
  --service-cluster-ip-range=10.32.0.0/24 \\
  --service-node-port-range=30000-32767 \\
  --tls-cert-file=/var/lib/kubernetes/kubernetes.pem \\
  --tls-private-key-file=/var/lib/kubernetes/kubernetes-key.pem \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`;

const CONTROLLERS = ['10.240.0.10', '10.240.0.11', '10.240.0.12'];
const apiserverOptions = (version: string) => ({
  kubernetesVersion: version,
  advertiseAddress: '10.240.0.10',
  etcdServers: CONTROLLERS.map((ip) => `https://${ip}:2379`),
  apiserverCount: 3,
  serviceAccountIssuer: 'https://10.240.0.40:6443',
});

describe('control plane: unit files (pure)', () => {
  it('renders the seed\'s kube-apiserver.service byte for byte for the seed\'s v1.18.6', () => {
    expect(renderKubeApiserverUnit(apiserverOptions('v1.18.6'))).to.equal(SEED_APISERVER_UNIT);
  });

  it('for current Kubernetes: no --kubelet-https (removed in 1.22), the service-account issuer and signing key (required since 1.20)', () => {
    const expected = SEED_APISERVER_UNIT.replace('  --kubelet-https=true \\\n', '')
      .replace('  --service-account-key-file=', '  --service-account-issuer=https://10.240.0.40:6443 \\\n  --service-account-key-file=')
      .replace('service-account.pem \\\n', 'service-account.pem \\\n  --service-account-signing-key-file=/var/lib/kubernetes/service-account-key.pem \\\n');
    expect(renderKubeApiserverUnit(apiserverOptions('1.34.1'))).to.equal(expected);
    expect(kubeApiserverFlags(apiserverOptions('1.21.14'))).to.include('--kubelet-https=true');
    expect(kubeApiserverFlags(apiserverOptions('1.22.0'))).not.to.include('--kubelet-https=true');
    expect(kubeApiserverFlags(apiserverOptions('1.19.16')).some((f) => f.startsWith('--service-account-issuer'))).to.equal(false);
    expect(kubeApiserverFlags(apiserverOptions('1.20.0'))).to.include('--service-account-issuer=https://10.240.0.40:6443');
  });

  it('takes other addresses, counts, ranges and directories from its options', () => {
    const flags = kubeApiserverFlags({ ...apiserverOptions('1.34.1'), advertiseAddress: '10.77.5.11', etcdServers: ['https://10.77.5.11:2379'], apiserverCount: 1, serviceClusterIpRange: '10.96.0.0/12', dir: '/srv/k8s', verbosity: 4 });
    expect(flags).to.include.members(['--advertise-address=10.77.5.11', '--apiserver-count=1', '--etcd-servers=https://10.77.5.11:2379', '--service-cluster-ip-range=10.96.0.0/12', '--tls-cert-file=/srv/k8s/kubernetes.pem', '--v=4']);
  });

  it('refuses options that would make a broken unit, naming them', () => {
    const ok = apiserverOptions('1.34.1');
    expect(() => validateKubeApiserverOptions({ ...ok, advertiseAddress: 'controller-0' })).to.throw(/advertiseAddress must be an IP address/);
    expect(() => validateKubeApiserverOptions({ ...ok, etcdServers: [] })).to.throw(/etcdServers must list/);
    expect(() => validateKubeApiserverOptions({ ...ok, etcdServers: ['http://10.0.0.1:2379'] })).to.throw(/not https:\/\/<address>:<port>/);
    expect(() => validateKubeApiserverOptions({ ...ok, apiserverCount: 0 })).to.throw(/apiserverCount/);
    expect(() => validateKubeApiserverOptions({ ...ok, serviceClusterIpRange: '10.32.0.0' })).to.throw(/serviceClusterIpRange must be an IPv4 CIDR/);
    const { serviceAccountIssuer: _, ...noIssuer } = ok;
    expect(() => validateKubeApiserverOptions(noIssuer)).to.throw(/serviceAccountIssuer is required from Kubernetes 1.20/);
    expect(() => validateKubeApiserverOptions({ ...noIssuer, kubernetesVersion: '1.18.6' })).not.to.throw();
    expect(() => validateKubeApiserverOptions({ ...ok, dir: '/var/lib/kube rnetes' })).to.throw(/cannot go into a systemd ExecStart line/);
    expect(() => validateKubeApiserverOptions({ ...ok, dir: '/var/%n' })).to.throw(/cannot go into a systemd ExecStart line/);
    expect(() => validateKubeApiserverOptions({ ...ok, kubernetesVersion: 'latest' })).to.throw(/not a Kubernetes version/);
  });

  it('renders the seed\'s kube-controller-manager.service', () => {
    expect(renderKubeControllerManagerUnit()).to.equal(`[Unit]
Description=Kubernetes Controller Manager
Documentation=https://github.com/kubernetes/kubernetes

[Service]
ExecStart=/usr/local/bin/kube-controller-manager \\
  --bind-address=0.0.0.0 \\
  --cluster-cidr=10.200.0.0/16 \\
  --cluster-name=kubernetes \\
  --cluster-signing-cert-file=/var/lib/kubernetes/ca.pem \\
  --cluster-signing-key-file=/var/lib/kubernetes/ca-key.pem \\
  --kubeconfig=/var/lib/kubernetes/kube-controller-manager.kubeconfig \\
  --leader-elect=true \\
  --root-ca-file=/var/lib/kubernetes/ca.pem \\
  --service-account-private-key-file=/var/lib/kubernetes/service-account-key.pem \\
  --service-cluster-ip-range=10.32.0.0/24 \\
  --use-service-account-credentials=true \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`);
    expect(renderKubeControllerManagerUnit({ clusterCidr: '10.244.0.0/16' })).to.include('  --cluster-cidr=10.244.0.0/16 \\\n');
    expect(() => renderKubeControllerManagerUnit({ clusterCidr: '10.244.0.0/33' })).to.throw(/clusterCidr must be an IPv4 CIDR/);
  });

  it('renders the seed\'s kube-scheduler.yaml with the apiVersion the binary reads, and its unit', () => {
    const seed = `apiVersion: kubescheduler.config.k8s.io/v1alpha1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: "/var/lib/kubernetes/kube-scheduler.kubeconfig"
leaderElection:
  leaderElect: true
`;
    expect(renderKubeSchedulerConfig({ kubernetesVersion: '1.18.6' })).to.equal(seed);
    expect(renderKubeSchedulerConfig({ kubernetesVersion: '1.34.1' })).to.equal(seed.replace('v1alpha1', 'v1'));
    expect(['1.18.6', '1.19.0', '1.22.17', '1.23.0', '1.24.9', '1.25.0', 'v1.34.1'].map(schedulerConfigApiVersion)).to.deep.equal([
      'kubescheduler.config.k8s.io/v1alpha1',
      'kubescheduler.config.k8s.io/v1beta1',
      'kubescheduler.config.k8s.io/v1beta1',
      'kubescheduler.config.k8s.io/v1beta3',
      'kubescheduler.config.k8s.io/v1beta3',
      'kubescheduler.config.k8s.io/v1',
      'kubescheduler.config.k8s.io/v1',
    ]);
    expect(renderKubeSchedulerUnit({ kubernetesVersion: '1.34.1' })).to.equal(`[Unit]
Description=Kubernetes Scheduler
Documentation=https://github.com/kubernetes/kubernetes

[Service]
ExecStart=/usr/local/bin/kube-scheduler \\
  --config=/etc/kubernetes/config/kube-scheduler.yaml \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`);
  });
});

describe('control plane: tasks and their ids', () => {
  const view = (name: string, ip: string): HostView => ({ name, vars: { ip }, facts: parseFacts('hostname=x\narch=amd64\nosId=debian\ncodename=bookworm\n') });

  it('writes the config dir, three units and kube-scheduler.yaml, each notifying its own restart; services enabled, running, restarted on newer certificates', () => {
    const tasks = ensureControlPlane({ kubernetesVersion: '1.34.1', advertiseAddress: (host) => String(host.vars.ip), controllers: CONTROLLERS, serviceAccountIssuer: 'https://10.240.0.40:6443' });
    const bound = tasks.map((t) => t.bind(view('controller-1', '10.240.0.11')));
    expect(bound.map((b) => b.id)).to.deep.equal([
      'directory:/etc/kubernetes/config',
      'systemd-unit:/etc/systemd/system/kube-apiserver.service',
      'systemd-unit:/etc/systemd/system/kube-controller-manager.service',
      'file:/etc/kubernetes/config/kube-scheduler.yaml',
      'systemd-unit:/etc/systemd/system/kube-scheduler.service',
      'service:kube-apiserver',
      'service:kube-controller-manager',
      'service:kube-scheduler',
    ]);
    expect(tasks.slice(1, 5).map((t) => t.options.notify!.map((h) => h.static!.id))).to.deep.equal([
      ['service:kube-apiserver:restart'],
      ['service:kube-controller-manager:restart'],
      ['service:kube-scheduler:restart'],
      ['service:kube-scheduler:restart'],
    ]);
    // The per-host unit: this controller's address, every controller's etcd.
    const unit = (bound[1]!.desired as { content: string }).content;
    expect(unit).to.include('  --advertise-address=10.240.0.11 \\\n');
    expect(unit).to.include('  --etcd-servers=https://10.240.0.10:2379,https://10.240.0.11:2379,https://10.240.0.12:2379 \\\n');
    expect(bound[5]!.desired).to.deep.equal({
      name: 'kube-apiserver.service',
      enabled: true,
      running: true,
      restartOn: ['/var/lib/kubernetes/ca.pem', '/var/lib/kubernetes/encryption-config.yaml', '/var/lib/kubernetes/kubernetes-key.pem', '/var/lib/kubernetes/kubernetes.pem', '/var/lib/kubernetes/service-account-key.pem', '/var/lib/kubernetes/service-account.pem'],
    });
    expect((bound[7]!.desired as { restartOn: string[] }).restartOn).to.deep.equal(['/var/lib/kubernetes/kube-scheduler.kubeconfig']);
  });

  it('with no per-host parameter, renders and validates once, when the playbook loads', () => {
    const tasks = ensureControlPlane({ kubernetesVersion: '1.34.1', advertiseAddress: '10.240.0.10', controllers: CONTROLLERS, serviceAccountIssuer: 'https://10.240.0.40:6443' });
    expect(tasks.every((t) => t.static !== undefined)).to.equal(true);
    expect(() => ensureControlPlane({ kubernetesVersion: '1.34.1', advertiseAddress: 'nope', controllers: CONTROLLERS, serviceAccountIssuer: 'https://x:6443' })).to.throw(/advertiseAddress must be an IP address/);
  });

  it('nginx: the seed\'s server block, enabled by a link, nginx reloaded on change and enabled', () => {
    expect(renderHealthzSite()).to.equal(`server {
  listen      80;
  server_name kubernetes.default.svc.cluster.local;

  location /healthz {
     proxy_pass                    https://127.0.0.1:6443/healthz;
     proxy_ssl_trusted_certificate /var/lib/kubernetes/ca.pem;
  }
}
`);
    const [site, service] = ensureHealthzProxy();
    expect(site!.static!.id).to.equal('nginx-site:kubernetes.default.svc.cluster.local');
    expect(site!.options.notify!.map((h) => h.static!.id)).to.deep.equal(['service:nginx:reload']);
    expect(service!.static!.desired).to.deep.equal({ name: 'nginx.service', enabled: true, running: true, restartOn: undefined });
  });

  it('HAProxy: the seed\'s haproxy.cfg with the controllers, checked by haproxy -c, restarted on change', () => {
    const servers = CONTROLLERS.map((address, i) => ({ name: `controller-${i}`, address }));
    expect(renderFrontEndHaproxyConfig(servers)).to.equal(`# Managed by Capstan: the Kubernetes API front end (seed 003). Changes here are overwritten.
global
        log /dev/log    local0
        log /dev/log    local1 notice
        chroot /var/lib/haproxy
        stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
        stats timeout 30s
        user haproxy
        group haproxy
        daemon

        # Default SSL material locations
        ca-base /etc/ssl/certs
        crt-base /etc/ssl/private

        # See: https://ssl-config.mozilla.org/#server=haproxy&server-version=2.0.3&config=intermediate
        ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384
        ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
        ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
        log     global
        mode    tcp
        option  tcplog
        option  dontlognull
        timeout connect 5000
        timeout client  50000
        timeout server  50000
        errorfile 400 /etc/haproxy/errors/400.http
        errorfile 403 /etc/haproxy/errors/403.http
        errorfile 408 /etc/haproxy/errors/408.http
        errorfile 500 /etc/haproxy/errors/500.http
        errorfile 502 /etc/haproxy/errors/502.http
        errorfile 503 /etc/haproxy/errors/503.http
        errorfile 504 /etc/haproxy/errors/504.http

frontend proxynode
        bind *:80
        bind *:6443
        stats uri /proxystats
        default_backend k8sServers

backend k8sServers
        balance roundrobin
        server controller-0 10.240.0.10:6443 check
        server controller-1 10.240.0.11:6443 check
        server controller-2 10.240.0.12:6443 check

listen stats
        bind :9999
        mode http
        stats enable
        stats hide-version
        stats uri /stats
`);
    const [config, service] = ensureFrontEndHaproxy({ servers });
    expect(config!.static!.id).to.equal('file:/etc/haproxy/haproxy.cfg');
    expect(config!.options.notify!.map((h) => h.static!.id)).to.deep.equal(['service:haproxy:restart']);
    expect(service!.static!.desired).to.deep.equal({ name: 'haproxy.service', enabled: true, running: true, restartOn: ['/etc/haproxy/haproxy.cfg'] });
    expect(() => renderFrontEndHaproxyConfig([])).to.throw(/at least one controller/);
    expect(() => renderFrontEndHaproxyConfig([{ name: 'a', address: 'controller-0' }])).to.throw(/not an IP address/);
  });

  it('HAProxy applies with one write whose temp file haproxy -c checks before the rename (no candidate file beside it)', async () => {
    const servers = CONTROLLERS.map((address, i) => ({ name: `controller-${i}`, address }));
    const { ctx, log, writes } = recordingContext();
    await ensureFrontEndHaproxy({ servers })[0]!.static!.apply(ctx, []);
    expect(log).to.deep.equal([
      'run mkdir -p -m 0755 /etc/haproxy',
      'write /etc/haproxy/haproxy.cfg mode=0644 validate: haproxy -c -f /etc/haproxy/.capstan.0123456789abcdef',
    ]);
    expect(writes[0]!.content).to.equal(renderFrontEndHaproxyConfig(servers));
  });
});

describe('control plane: RBAC objects (pure)', () => {
  it('is the seed\'s two manifests with rbac.authorization.k8s.io/v1 (v1beta1 is no longer served)', () => {
    // The seed's two heredocs, copied verbatim from seed 003 (the seeds are not part of this repository).
    const seed = readFileSync(fileURLToPath(new URL('../fixtures/seeds/003-rbac.txt', import.meta.url)), 'utf8');
    const heredocs = [...seed.matchAll(/cat <<EOF \| kubectl apply --kubeconfig admin.kubeconfig -f -\n([\s\S]*?)\nEOF/g)].map((m) => `${m[1]}\n`);
    expect(heredocs).to.have.length(2);
    expect(KUBELET_API_RBAC_MANIFEST).to.equal(heredocs.join('---\n').replaceAll('rbac.authorization.k8s.io/v1beta1', 'rbac.authorization.k8s.io/v1'));
    expect(parseClusterObjects(KUBELET_API_RBAC_MANIFEST).map((o) => o.ref)).to.deep.equal([
      { kind: 'ClusterRole', name: 'system:kube-apiserver-to-kubelet', resource: 'clusterroles' },
      { kind: 'ClusterRoleBinding', name: 'system:kube-apiserver', resource: 'clusterrolebindings' },
    ]);
  });

  it('compares what the manifest sets and ignores what the server adds', () => {
    const [role, binding] = parseClusterObjects(KUBELET_API_RBAC_MANIFEST).map((o) => o.object);
    const served = (object: unknown) => {
      const copy = JSON.parse(JSON.stringify(object)) as { metadata: Record<string, unknown> };
      copy.metadata.uid = 'u-1';
      copy.metadata.resourceVersion = '42';
      copy.metadata.annotations = { ...(copy.metadata.annotations as object), 'kubectl.kubernetes.io/last-applied-configuration': '{}' };
      delete copy.metadata.namespace; // the server drops namespace "" of a cluster-scoped object
      return copy;
    };
    expect(objectDifferences(role, served(role))).to.deep.equal([]);
    expect(objectDifferences(binding, served(binding))).to.deep.equal([]);
    const changed = served(role) as unknown as { rules: { verbs: string[] }[] };
    changed.rules[0]!.verbs = ['get'];
    expect(objectDifferences(role, changed)).to.deep.equal(['.rules[0].verbs[0]']);
    const moreResources = served(role) as unknown as { rules: { resources: string[] }[] };
    moreResources.rules[0]!.resources.push('nodes/extra');
    expect(objectDifferences(role, moreResources)).to.deep.equal(['.rules[0].resources']);
    const otherUser = served(binding) as unknown as { subjects: { name: string }[] };
    otherUser.subjects[0]!.name = 'someone';
    expect(objectDifferences(binding, otherUser)).to.deep.equal(['.subjects[0].name']);
  });

  it('refuses kinds it cannot compare and empty manifests', () => {
    expect(() => parseClusterObjects('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n')).to.throw(/kind "ConfigMap" is not one of ClusterRole, ClusterRoleBinding/);
    expect(() => parseClusterObjects('')).to.throw(/no object/);
    expect(() => ensureClusterObjects({ kubeconfig: 'admin.kubeconfig', manifest: KUBELET_API_RBAC_MANIFEST })).to.throw(/kubeconfig must be an absolute path/);
    expect(ensureKubeletApiRbac({ kubeconfig: '/var/lib/kubernetes/admin.kubeconfig' }).static!.id).to.equal('kubernetes-objects:ClusterRole/system:kube-apiserver-to-kubelet,ClusterRoleBinding/system:kube-apiserver');
  });
});

describe('control plane: RBAC applied with kubectl only when missing or different (local host, a recording kubectl)', () => {
  let local: ReturnType<typeof localHost>;
  let savedPath: string | undefined;
  let log: string;
  beforeEach(() => {
    local = localHost();
    savedPath = process.env.PATH;
    const bin = join(local.dir, 'bin');
    mkdirSync(bin);
    log = join(local.dir, 'kubectl.log');
    // A kubectl that keeps applied objects as JSON files (python3 parses the YAML) and logs each call.
    writeFileSync(
      join(bin, 'kubectl'),
      `#!/usr/bin/python3
import json, os, sys, yaml
state = ${JSON.stringify(join(local.dir, 'objects'))}
os.makedirs(state, exist_ok=True)
open(${JSON.stringify(log)}, 'a').write(' '.join(sys.argv[1:]) + '\\n')
args = sys.argv[1:]
if args[0] == 'get':
    resource, name = args[3], args[4]
    kind = {'clusterroles': 'ClusterRole', 'clusterrolebindings': 'ClusterRoleBinding'}[resource]
    path = os.path.join(state, kind + '_' + name)
    if not os.path.exists(path):
        sys.stderr.write('Error from server (NotFound): %s "%s" not found\\n' % (resource, name)); sys.exit(1)
    obj = json.load(open(path)); obj['metadata'].pop('namespace', None); obj['metadata']['uid'] = 'u-1'
    print(json.dumps(obj))
elif args[0] == 'apply':
    for doc in yaml.safe_load_all(sys.stdin):
        json.dump(doc, open(os.path.join(state, doc['kind'] + '_' + doc['metadata']['name']), 'w'))
        print('%s/%s configured' % (doc['kind'].lower(), doc['metadata']['name']))
`,
    );
    chmodSync(join(bin, 'kubectl'), 0o755);
    process.env.PATH = `${bin}:${savedPath}`;
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    local.cleanup();
  });

  it('check mode reads only; apply creates both; a second run is in sync; a changed object is applied again', async function () {
    try {
      await import('node:child_process').then(({ execFileSync }) => execFileSync('python3', ['-c', 'import yaml']));
    } catch {
      this.skip(); // python3-yaml is not installed on this machine
    }
    const task = ensureKubeletApiRbac({ kubeconfig: '/var/lib/kubernetes/admin.kubeconfig' });
    const checked = await run(local, task, true);
    expect(checked.status).to.equal('changed');
    expect(checked.drift.map((d) => `${d.subject}: ${d.current} → ${d.desired}`)).to.deep.equal([
      'ClusterRole system:kube-apiserver-to-kubelet: absent → present',
      'ClusterRoleBinding system:kube-apiserver: absent → present',
    ]);
    expect(readFileSync(log, 'utf8')).not.to.include('apply');
    expect((await run(local, task)).status).to.equal('changed');
    expect((await run(local, task)).status).to.equal('ok');
    const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(calls.filter((c) => c.startsWith('apply'))).to.deep.equal(['apply --kubeconfig /var/lib/kubernetes/admin.kubeconfig -f -']);
    expect(calls[0]).to.equal('get --kubeconfig /var/lib/kubernetes/admin.kubeconfig clusterroles system:kube-apiserver-to-kubelet -o json');
    // Someone narrows the role: it is put back.
    const rolePath = join(local.dir, 'objects', 'ClusterRole_system:kube-apiserver-to-kubelet');
    const role = JSON.parse(readFileSync(rolePath, 'utf8')) as { rules: { verbs: string[] }[] };
    role.rules[0]!.verbs = ['get'];
    writeFileSync(rolePath, JSON.stringify(role));
    const drifted = await run(local, task);
    expect(drifted.status).to.equal('changed');
    expect(drifted.drift.map((d) => `${d.subject}: ${d.current}`)).to.deep.equal(['ClusterRole system:kube-apiserver-to-kubelet: differs at .rules[0].verbs[0]']);
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('fails (rather than reporting absent) when kubectl itself cannot run', async () => {
    process.env.PATH = '/nonexistent';
    const outcome = await run(local, ensureKubeletApiRbac({ kubeconfig: '/var/lib/kubernetes/admin.kubeconfig' }), true);
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.match(/^check failed: kubectl get clusterroles system:kube-apiserver-to-kubelet failed: .*kubectl.*not found/);
  });
});

describe('control plane: HTTP checks (curl, against a loopback server)', () => {
  let server: Server;
  let port: number;
  let healthy = false;
  let local: ReturnType<typeof localHost>;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/healthz' && healthy) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(req.headers.host === 'kubernetes.default.svc.cluster.local' ? 'ok' : 'wrong host');
      } else if (req.url === '/version') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ major: '1', minor: '34', gitVersion: 'v1.34.1' }));
      } else {
        res.writeHead(500).end('[-]etcd failed');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  it('parses curl\'s answer and says what is wrong with it', () => {
    expect(parseHttpAnswer('ok\n@@status=200\n', '', 0)).to.deep.equal({ status: 200, body: 'ok' });
    expect(parseHttpAnswer('\n@@status=000\n', 'curl: (7) Failed to connect to 127.0.0.1 port 6443\n', 7)).to.deep.equal({ status: 0, body: '', error: 'curl: (7) Failed to connect to 127.0.0.1 port 6443' });
    expect(httpAnswerProblem({ status: 500, body: '[-]etcd failed' }, {})).to.equal('HTTP 500: [-]etcd failed');
    expect(httpAnswerProblem({ status: 200, body: 'ok\n' }, {})).to.equal(null);
    expect(httpAnswerProblem({ status: 200, body: '{"major":"1"}' }, { expectJsonFields: ['major', 'gitVersion'] })).to.equal('JSON without gitVersion');
  });

  it('reports a failing endpoint in check mode, waits for it on apply, and is in sync once it answers', async () => {
    healthy = false;
    const task = httpAnswers({ url: `http://127.0.0.1:${port}/healthz`, hostHeader: 'kubernetes.default.svc.cluster.local', timeoutSeconds: 10 });
    expect(task.static!.id).to.equal(`http:kubernetes.default.svc.cluster.local@http://127.0.0.1:${port}/healthz`);
    const checked = await run(local, task, true);
    expect(checked.status).to.equal('changed');
    expect(checked.drift[0]!.current).to.equal('HTTP 500: [-]etcd failed');
    setTimeout(() => (healthy = true), 1500);
    expect((await run(local, task)).status).to.equal('changed');
    expect((await run(local, task)).status).to.equal('ok');
    const version = httpAnswers({ url: `http://127.0.0.1:${port}/version`, expectJsonFields: ['major', 'minor', 'gitVersion'] });
    expect((await run(local, version)).status).to.equal('ok');
  });

  it('fails after its timeout with the last answer', async () => {
    healthy = false;
    const outcome = await run(local, httpAnswers({ url: `http://127.0.0.1:${port}/nothing`, timeoutSeconds: 2 }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`http://127.0.0.1:${port}/nothing did not answer within 2 s: HTTP 500: [-]etcd failed`);
  });
});

/* ------------------------------------------------------------------ the playbook, planned */


const SHA = { kube_apiserver_sha256: 'a'.repeat(64), kube_controller_manager_sha256: 'b'.repeat(64), kube_scheduler_sha256: 'c'.repeat(64), kubectl_sha256: 'd'.repeat(64) };

describe('playbooks/hard-way.ts (planned, no host contacted)', () => {
  const example = () => loadInventory(fileURLToPath(new URL('../../inventory/hard-way.yaml', import.meta.url)));

  it('runs the seed top to bottom on the example inventory', async () => {
    const recorded = await plays(hardWay, await example(), SHA);
    expect(recorded.map((p) => `${p.title} @ ${p.pattern}${Object.keys(p.options).length ? ` ${JSON.stringify(p.options)}` : ''}: ${p.tasks.join(' ')}`)).to.deep.equal([
      'preflight @ controllers: preflight certificates:expiry-warning',
      'preflight (load balancer) @ loadbalancer: preflight certificates:expiry-warning',
      'firewall @ controllers: firewall:ports',
      'firewall (load balancer) @ loadbalancer: firewall:ports',
      `PKI @ localhost: pki:${join(homedir(), '.capstan/pki/hard-way')}`,
      'certificates @ controllers: pki-files:/var/lib/kubernetes:ca.pem,ca-key.pem,kubernetes-key.pem,kubernetes.pem,service-account-key.pem,service-account.pem,encryption-config.yaml,kube-controller-manager.kubeconfig,kube-scheduler.kubeconfig,admin.kubeconfig pki-files:/etc/etcd:ca.pem,kubernetes-key.pem,kubernetes.pem',
      'binaries @ controllers: binary* binary* binary* binary*',
      'etcd @ controllers: etcd:packages systemd-unit* etcd*',
      'etcd healthy @ controllers: etcd-health:https://10.240.0.10:2379,https://10.240.0.11:2379,https://10.240.0.12:2379',
      'control plane @ controllers: directory:/etc/kubernetes/config systemd-unit* systemd-unit:/etc/systemd/system/kube-controller-manager.service file:/etc/kubernetes/config/kube-scheduler.yaml systemd-unit:/etc/systemd/system/kube-scheduler.service service:kube-apiserver service:kube-controller-manager service:kube-scheduler',
      'health checks @ controllers: packages:curl,nginx nginx-site:kubernetes.default.svc.cluster.local service:nginx',
      'control plane ready @ controllers: http:@https://127.0.0.1:6443/healthz http:kubernetes.default.svc.cluster.local@http://127.0.0.1/healthz http:@https://127.0.0.1:10257/healthz http:@https://127.0.0.1:10259/healthz',
      'RBAC for kubelet authorization @ controllers[0] {"runOnce":true}: kubernetes-objects:ClusterRole/system:kube-apiserver-to-kubelet,ClusterRoleBinding/system:kube-apiserver',
      'load balancer @ loadbalancer: packages:haproxy file:/etc/haproxy/haproxy.cfg service:haproxy',
      'front end answers @ controllers[0] {"runOnce":true}: http:@https://10.240.0.40:6443/version',
    ]);
  });

  it('reads its variables with the seed\'s defaults, and checks them before any connection', () => {
    const vars = readHardWayVars(new VarReader({}, 'test'), '10.240.0.40');
    expect({ ...vars, pkiDir: vars.pkiDir.endsWith('/.capstan/pki/hard-way') }).to.deep.equal({
      kubernetesVersion: '1.34.1',
      serviceCidr: '10.32.0.0/24',
      clusterCidr: '10.200.0.0/16',
      pkiDir: true,
      publicAddress: '10.240.0.40',
      minMemoryMiB: 0,
      apiTimeout: 60,
    });
    expect(() => readHardWayVars(new VarReader({ kubernetes_version: '1.34' }, 'test'), '10.0.0.1')).to.throw(/kubernetes_version \(test\) must be a full Kubernetes version like 1.34.1/);
    expect(() => readHardWayVars(new VarReader({ service_cidr: '10.32.0.0/31' }, 'test'), '10.0.0.1')).to.throw(/service_cidr must be an IPv4 CIDR of at most \/30/);
    expect(firstServiceIp('10.32.0.0/24')).to.equal('10.32.0.1');
    expect(firstServiceIp('10.96.0.0/12')).to.equal('10.96.0.1');
  });

  it('downloads from dl.k8s.io for the host\'s architecture unless told otherwise, with a pinned sha256 or the published one', async () => {
    const apiserver = HARD_WAY_BINARIES[0];
    expect(binarySource(SHA, 'test', apiserver, 'arm64', '1.34.1')).to.deep.equal({ url: 'https://dl.k8s.io/release/v1.34.1/bin/linux/arm64/kube-apiserver', sha256: 'a'.repeat(64) });
    expect(binarySource({ ...SHA, kubernetes_binary_url: 'http://127.0.0.1:8080/{binary}' }, 'test', apiserver, 'amd64', '1.34.1').url).to.equal('http://127.0.0.1:8080/kube-apiserver');
    expect(binarySource({ ...SHA, kube_apiserver_url: 'https://mirror.example/k8s/{version}/kube-apiserver' }, 'test', apiserver, 'amd64', '1.34.1').url).to.equal('https://mirror.example/k8s/1.34.1/kube-apiserver');
    expect(binarySource({}, 'vars of controller-0', apiserver, 'amd64', '1.34.1')).to.deep.equal({
      url: 'https://dl.k8s.io/release/v1.34.1/bin/linux/amd64/kube-apiserver',
      sha256Url: 'https://dl.k8s.io/release/v1.34.1/bin/linux/amd64/kube-apiserver.sha256',
    });
    expect(() => binarySource({ ...SHA, kubectl_sha256: 'abc' }, 'test', HARD_WAY_BINARIES[3], 'amd64', '1.34.1')).to.throw(/kubectl_sha256 \(test\) must be 64 hex digits/);
    let error: unknown;
    try {
      await plays(hardWay, await example());
    } catch (e) {
      error = e;
    }
    // The example inventory pins no sum: it plans, and the run fetches the published ones.
    expect(error).to.equal(undefined);
  });

  it('refuses an inventory without controllers or with several balancers', async () => {
    const noLb = parseInventory('all:\n  children:\n    controllers:\n      hosts:\n        controller-0:\n          ip: 10.0.0.10\n', 'x.yaml');
    let error: unknown;
    try {
      await plays(hardWay, noLb, SHA);
    } catch (e) {
      error = e;
    }
    expect(String(error)).to.match(/the loadbalancer group must list exactly one host/);
  });
});
