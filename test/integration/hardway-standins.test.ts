import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, type LabState } from '../../runner/lab/index.js';
import type { HostView } from '../../runner/task.js';
import { ensureEtcdMember, etcdHealthy } from '../../tasks/etcd.js';
import { skipUnlessLabSupported, sshToLab, withLab, type SshResult } from '../helpers/lab.js';
import { runTasks } from '../helpers/tasks.js';
import { buildHardWayBinaries, HARDWAY_HOST_PACKAGES, makeTestKubeconfig, makeTestPki, serveFiles, type StandInBinary } from '../lab/hardway.js';
import { KUBELET_API_RBAC_MANIFEST } from '../../tasks/control-plane.js';

/**
 * The hard-way stand-ins (single-file kube-apiserver, kube-controller-manager, kube-scheduler,
 * kubectl) on 3 lab hosts with a REAL 3-member etcd cluster over TLS: the API server runs as the
 * seed's systemd unit and keeps its state in etcd; kubectl applies the seed's RBAC (idempotently);
 * componentstatuses shows the scheduler, controller manager and etcd; etcd failover; and with
 * every etcd member stopped /healthz fails as the real one does.
 */
describe('hard-way stand-ins against a real etcd cluster on 3 lab hosts', function () {
  this.timeout(600_000);
  let lab: LabState;
  let work: string;
  let binaries: StandInBinary[];
  let members: { name: string; ip: string }[];
  const dir = '/var/lib/kubernetes';
  const ip = (host: string) => members.find((m) => m.name === host)!.ip;
  const run = (host: string, command: string, input?: string): Promise<SshResult> => sshToLab(lab, host, command, input === undefined ? {} : { input });
  async function ok(host: string, command: string, input?: string): Promise<string> {
    const result = await run(host, command, input);
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }
  const kubectl = `kubectl --kubeconfig ${dir}/admin.kubeconfig`;
  const etcdctl = `ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem`;
  const healthz = `curl -sS --max-time 10 --cacert ${dir}/ca.pem -w ' %{http_code}' https://127.0.0.1:6443/healthz`;

  /** The seed's kube-apiserver.service, with v1.34's changes (no --kubelet-https; a service-account issuer and signing key). */
  const apiserverUnit = (host: string) => `[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/kubernetes/kubernetes

[Service]
ExecStart=/usr/local/bin/kube-apiserver \\
  --advertise-address=${ip(host)} \\
  --allow-privileged=true \\
  --apiserver-count=3 \\
  --audit-log-maxage=30 \\
  --audit-log-maxbackup=3 \\
  --audit-log-maxsize=100 \\
  --audit-log-path=/var/log/audit.log \\
  --authorization-mode=Node,RBAC \\
  --bind-address=0.0.0.0 \\
  --client-ca-file=${dir}/ca.pem \\
  --enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota \\
  --etcd-cafile=${dir}/ca.pem \\
  --etcd-certfile=${dir}/kubernetes.pem \\
  --etcd-keyfile=${dir}/kubernetes-key.pem \\
  --etcd-servers=${members.map((m) => `https://${m.ip}:2379`).join(',')} \\
  --event-ttl=1h \\
  --encryption-provider-config=${dir}/encryption-config.yaml \\
  --kubelet-certificate-authority=${dir}/ca.pem \\
  --kubelet-client-certificate=${dir}/kubernetes.pem \\
  --kubelet-client-key=${dir}/kubernetes-key.pem \\
  --runtime-config='api/all=true' \\
  --service-account-issuer=https://${ip('node1')}:6443 \\
  --service-account-key-file=${dir}/service-account.pem \\
  --service-account-signing-key-file=${dir}/service-account-key.pem \\
  --service-cluster-ip-range=10.32.0.0/24 \\
  --service-node-port-range=30000-32767 \\
  --tls-cert-file=${dir}/kubernetes.pem \\
  --tls-private-key-file=${dir}/kubernetes-key.pem \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`;
  const controllerManagerUnit = `[Unit]
Description=Kubernetes Controller Manager

[Service]
ExecStart=/usr/local/bin/kube-controller-manager \\
  --bind-address=0.0.0.0 \\
  --cluster-cidr=10.200.0.0/16 \\
  --cluster-name=kubernetes \\
  --cluster-signing-cert-file=${dir}/ca.pem \\
  --cluster-signing-key-file=${dir}/ca-key.pem \\
  --kubeconfig=${dir}/kube-controller-manager.kubeconfig \\
  --leader-elect=true \\
  --root-ca-file=${dir}/ca.pem \\
  --service-account-private-key-file=${dir}/service-account-key.pem \\
  --service-cluster-ip-range=10.32.0.0/24 \\
  --use-service-account-credentials=true \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`;
  const schedulerUnit = `[Unit]
Description=Kubernetes Scheduler

[Service]
ExecStart=/usr/local/bin/kube-scheduler \\
  --config=/etc/kubernetes/config/kube-scheduler.yaml \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`;
  const schedulerConfig = (apiVersion: string) => `apiVersion: ${apiVersion}
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: "${dir}/kube-scheduler.kubeconfig"
leaderElection:
  leaderElect: true
`;
  // The seed's two objects, as the playbook applies them (rbac.authorization.k8s.io/v1).
  const rbac = KUBELET_API_RBAC_MANIFEST;

  async function waitFor(host: string, command: string, want: (out: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const result = await run(host, command);
      last = `${result.stdout}${result.stderr}`;
      if (want(result.stdout)) return result.stdout;
      if (Date.now() > deadline) throw new Error(`${host}: ${command} never answered as wanted; last: ${last}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  before(async function () {
    skipUnlessLabSupported(this);
    work = mkdtempSync(join(tmpdir(), 'capstan-hardway-'));
    const [state, built] = await Promise.all([withLab(3), buildHardWayBinaries(join(work, 'bin'))]);
    lab = state;
    binaries = built;
    members = lab.hosts.map((host) => ({ name: host.name, ip: host.address }));
    const pki = join(work, 'pki');
    await makeTestPki(pki, [
      { name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', ipAddresses: [...members.map((m) => m.ip), '127.0.0.1', '10.32.0.1'], dnsNames: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'] },
      { name: 'admin', commonName: 'admin', organization: 'system:masters' },
      { name: 'kube-controller-manager', commonName: 'system:kube-controller-manager', organization: 'system:kube-controller-manager' },
      { name: 'kube-scheduler', commonName: 'system:kube-scheduler', organization: 'system:kube-scheduler' },
      { name: 'service-account', commonName: 'service-accounts', organization: 'Kubernetes' },
    ]);
    for (const [name, user] of [['admin', 'admin'], ['kube-controller-manager', 'system:kube-controller-manager'], ['kube-scheduler', 'system:kube-scheduler']] as const) {
      await makeTestKubeconfig(pki, { name, certificate: name, user, server: 'https://127.0.0.1:6443' });
    }
    const encryption = `kind: EncryptionConfig\napiVersion: v1\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: ${Buffer.alloc(32, 7).toString('base64')}\n      - identity: {}\n`;
    // Files where the seed puts them; the binaries into /usr/local/bin; the packages the stand-ins need.
    const put = async (host: string, path: string, data: Buffer | string, mode: string) =>
      ok(host, `mkdir -p "$(dirname ${path})" && base64 -d > ${path}.tmp && chmod ${mode} ${path}.tmp && mv ${path}.tmp ${path}`, Buffer.from(data).toString('base64'));
    await Promise.all(
      members.map(async ({ name }) => {
        await ok(name, `DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${HARDWAY_HOST_PACKAGES.join(' ')} >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${HARDWAY_HOST_PACKAGES.join(' ')} >/dev/null; }`);
        for (const file of ['ca.pem', 'kubernetes.pem']) {
          await put(name, `/etc/etcd/${file}`, readFileSync(join(pki, file)), '0644');
          await put(name, `${dir}/${file}`, readFileSync(join(pki, file)), '0644');
        }
        await put(name, '/etc/etcd/kubernetes-key.pem', readFileSync(join(pki, 'kubernetes-key.pem')), '0600');
        for (const file of ['ca-key.pem', 'kubernetes-key.pem', 'service-account-key.pem', 'admin.kubeconfig', 'kube-controller-manager.kubeconfig', 'kube-scheduler.kubeconfig']) {
          await put(name, `${dir}/${file}`, readFileSync(join(pki, file)), '0600');
        }
        await put(name, `${dir}/service-account.pem`, readFileSync(join(pki, 'service-account.pem')), '0644');
        await put(name, `${dir}/encryption-config.yaml`, encryption, '0600');
        for (const binary of binaries) await put(name, `/usr/local/bin/${binary.name}`, readFileSync(binary.path), '0755');
      }),
    );
    const etcd = await runTasks(lab, 'all', [
      ...ensureEtcdMember({
        name: (host: HostView) => host.name,
        ip: (host: HostView) => ip(host.name),
        members: () => members,
        certFile: '/etc/etcd/kubernetes.pem',
        keyFile: '/etc/etcd/kubernetes-key.pem',
        trustedCaFile: '/etc/etcd/ca.pem',
      }),
      etcdHealthy({ endpoints: () => members.map((m) => `https://${m.ip}:2379`), cacert: '/etc/etcd/ca.pem', cert: '/etc/etcd/kubernetes.pem', key: '/etc/etcd/kubernetes-key.pem', members: 3 }),
    ]);
    expect(etcd.exitCode, JSON.stringify(etcd.tasks.filter((t) => t.status === 'failed'))).to.equal(0);
    await Promise.all(
      members.map(async ({ name }) => {
        await put(name, '/etc/systemd/system/kube-apiserver.service', apiserverUnit(name), '0644');
        await put(name, '/etc/systemd/system/kube-controller-manager.service', controllerManagerUnit, '0644');
        await put(name, '/etc/systemd/system/kube-scheduler.service', schedulerUnit, '0644');
        await put(name, '/etc/kubernetes/config/kube-scheduler.yaml', schedulerConfig('kubescheduler.config.k8s.io/v1'), '0644');
        await ok(name, 'systemctl daemon-reload && systemctl enable --now kube-apiserver kube-controller-manager kube-scheduler 2>/dev/null');
      }),
    );
    await Promise.all(members.map(({ name }) => waitFor(name, healthz, (out) => out === 'ok 200')));
  });

  after(async function () {
    if (work) rmSync(work, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('builds single-file executables whose sha256 is that of the bytes served over HTTP on 127.0.0.1', async function () {
    expect(binaries.map((b) => b.name)).to.deep.equal(['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl']);
    const again = await buildHardWayBinaries(join(work, 'bin2'));
    expect(again.map((b) => b.sha256)).to.deep.equal(binaries.map((b) => b.sha256));
    const server = await serveFiles(binaries.map((b) => ({ name: b.name, path: b.path })));
    try {
      expect(server.baseUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
      for (const binary of binaries) {
        const body = Buffer.from(await (await fetch(`${server.baseUrl}/${binary.name}`)).arrayBuffer());
        expect(body.subarray(0, 19).toString()).to.equal('#!/usr/bin/python3\n');
        expect(createHash('sha256').update(body).digest('hex')).to.equal(binary.sha256);
      }
      expect((await fetch(`${server.baseUrl}/etcd`)).status).to.equal(404);
    } finally {
      await server.close();
    }
    expect(await ok('node1', 'sha256sum /usr/local/bin/kube-apiserver | cut -d" " -f1')).to.equal(`${binaries[0]!.sha256}\n`);
    expect(await ok('node1', 'kube-apiserver --version; kubectl version --client')).to.equal('Kubernetes v1.34.1\nClient Version: v1.34.1\nKustomize Version: v5.7.1\n');
  });

  it('rejects what the real v1.34 binaries reject: an unknown flag, a missing file, the seed\'s scheduler v1alpha1', async function () {
    const unknown = await run('node1', 'kube-apiserver --kubelet-https=true');
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr).to.match(/^Usage:\n  kube-apiserver \[flags\]\n/);
    expect(unknown.stderr.trim().split('\n').pop()).to.equal('Error: unknown flag: --kubelet-https');
    const flags = (await ok('node1', 'systemctl show -p ExecStart --value kube-apiserver')).match(/argv\[\]=(\S+) ([^;]*);/)![2]!.trim();
    const missing = await run('node1', `${flags.replace(`--tls-cert-file=${dir}/kubernetes.pem`, '--tls-cert-file=/nonexistent/kubernetes.pem').replace(/^/, 'kube-apiserver ')}`);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/^E\d{4} [\d:.]+ +\d+ run\.go:72\] "command failed" err="unable to load server certificate: open \/nonexistent\/kubernetes\.pem: no such file or directory"$/m);
    const noIssuer = await run('node1', `kube-apiserver --etcd-servers=https://127.0.0.1:2379 --service-account-key-file=${dir}/service-account.pem`);
    expect(noIssuer.stderr).to.include('"command failed" err="[service-account-issuer is a required flag, --service-account-signing-key-file and --service-account-issuer are required flags]"');
    await ok('node2', `cat > /tmp/v1alpha1.yaml`, schedulerConfig('kubescheduler.config.k8s.io/v1alpha1'));
    const old = await run('node2', 'kube-scheduler --config=/tmp/v1alpha1.yaml --v=2');
    expect(old.code).to.equal(1);
    expect(old.stderr).to.include('"command failed" err="no kind \\"KubeSchedulerConfiguration\\" is registered for version \\"kubescheduler.config.k8s.io/v1alpha1\\" in scheme \\"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme/scheme.go:30\\""');
    const noKubeconfig = await run('node2', 'kube-controller-manager --kubeconfig=/nonexistent.kubeconfig');
    expect([noKubeconfig.code, noKubeconfig.stderr]).to.satisfy(([code, err]: [number, string]) => code === 1 && err.includes('"command failed" err="stat /nonexistent.kubeconfig: no such file or directory"'));
  });

  it('serves /healthz, /livez, /readyz and /version over HTTPS with the CA, and refuses anonymous API calls', async function () {
    for (const host of ['node1', 'node2', 'node3']) {
      expect(await ok(host, healthz)).to.equal('ok 200');
      expect(await ok(host, `curl -sS --cacert ${dir}/ca.pem https://${ip(host)}:6443/livez https://${ip(host)}:6443/readyz`)).to.equal('okok');
    }
    const version = JSON.parse(await ok('node1', `curl -sS --cacert ${dir}/ca.pem https://${ip('node2')}:6443/version`));
    expect(version).to.deep.include({ major: '1', minor: '34', gitVersion: 'v1.34.1', platform: 'linux/amd64' });
    const untrusted = await run('node1', `curl -sS https://127.0.0.1:6443/healthz`);
    expect(untrusted.code).to.equal(60); // curl: the server's certificate is not signed by a CA it trusts
    const anonymous = JSON.parse(await ok('node1', `curl -sS --cacert ${dir}/ca.pem -X POST -d '{}' https://127.0.0.1:6443/standin/v1/op`));
    expect(anonymous).to.deep.include({ kind: 'Status', code: 403, reason: 'Forbidden' });
  });

  it('applies the seed\'s RBAC with kubectl (created, then unchanged), stores it in etcd, and every API server sees it', async function () {
    const first = await ok('node1', `${kubectl} apply -f -`, rbac);
    expect(first).to.equal('clusterrole.rbac.authorization.k8s.io/system:kube-apiserver-to-kubelet created\nclusterrolebinding.rbac.authorization.k8s.io/system:kube-apiserver created\n');
    const second = await ok('node1', `${kubectl} apply -f -`, rbac);
    expect(second).to.equal('clusterrole.rbac.authorization.k8s.io/system:kube-apiserver-to-kubelet unchanged\nclusterrolebinding.rbac.authorization.k8s.io/system:kube-apiserver unchanged\n');
    const keys = await ok('node2', `${etcdctl} get --prefix /registry/ --keys-only | grep -v '^$'`);
    expect(keys.split('\n')).to.include.members(['/registry/clusterroles/system:kube-apiserver-to-kubelet', '/registry/clusterrolebindings/system:kube-apiserver']);
    const stored = JSON.parse(await ok('node3', `${etcdctl} get /registry/clusterroles/system:kube-apiserver-to-kubelet --print-value-only`));
    expect(stored.rules).to.deep.equal([{ apiGroups: [''], resources: ['nodes/proxy', 'nodes/stats', 'nodes/log', 'nodes/spec', 'nodes/metrics'], verbs: ['*'] }]);
    // node3's API server reads the same etcd: same object, same creation time.
    const viaNode3 = await ok('node3', `kubectl --kubeconfig ${dir}/admin.kubeconfig --server https://${ip('node3')}:6443 get clusterrole system:kube-apiserver-to-kubelet`);
    expect(viaNode3).to.equal(`NAME                               CREATED AT\nsystem:kube-apiserver-to-kubelet   ${stored.metadata.creationTimestamp}\n`);
    expect(await ok('node2', `${kubectl} get clusterrolebinding system:kube-apiserver`)).to.match(/^NAME +ROLE +AGE\nsystem:kube-apiserver +ClusterRole\/system:kube-apiserver-to-kubelet +\d+s\n$/);
    // The seed's rbac.authorization.k8s.io/v1beta1 is no longer served (v1.22+): kubectl's real error.
    const beta = await run('node1', `${kubectl} apply -f -`, rbac.replace(/rbac\.authorization\.k8s\.io\/v1\n/g, 'rbac.authorization.k8s.io/v1beta1\n'));
    expect(beta.code).to.equal(1);
    expect(beta.stderr).to.equal('error: resource mapping not found for name: "system:kube-apiserver-to-kubelet" namespace: "" from "STDIN": no matches for kind "ClusterRole" in version "rbac.authorization.k8s.io/v1beta1"\nensure CRDs are installed first\n');
  });

  it('encrypts Secrets in etcd with the aescbc key of --encryption-provider-config', async function () {
    const secret = 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: kubernetes-the-hard-way\n  namespace: default\ndata:\n  mykey: bXlkYXRh\n';
    expect(await ok('node1', `${kubectl} apply -f -`, secret)).to.equal('secret/kubernetes-the-hard-way created\n');
    const raw = await ok('node1', `${etcdctl} get /registry/secrets/default/kubernetes-the-hard-way --print-value-only | head -c 22`);
    expect(raw).to.equal('k8s:enc:aescbc:v1:key1');
    expect(await ok('node2', `${kubectl} get secret kubernetes-the-hard-way -o jsonpath='{.data.mykey}'`)).to.equal('bXlkYXRh');
  });

  it('runs kube-controller-manager and kube-scheduler: healthz on 10257/10259, one leader each, componentstatuses', async function () {
    for (const host of ['node1', 'node2', 'node3']) {
      expect(await ok(host, 'curl -sSk https://127.0.0.1:10257/healthz; echo; curl -sSk https://127.0.0.1:10259/healthz')).to.equal('ok\nok');
    }
    const holder = async (name: string) => JSON.parse(await waitFor('node1', `${etcdctl} get /registry/leases/kube-system/${name} --print-value-only`, (out) => out.includes('holderIdentity'))).spec.holderIdentity as string;
    expect(await holder('kube-scheduler')).to.match(/^node[123]_[0-9a-f-]{36}$/);
    expect(await holder('kube-controller-manager')).to.match(/^node[123]_[0-9a-f-]{36}$/);
    const cs = await run('node1', `${kubectl} get componentstatuses`);
    expect(cs.code).to.equal(0);
    expect(cs.stderr).to.equal('Warning: v1 ComponentStatus is deprecated in v1.19+\n');
    expect(cs.stdout).to.equal(['NAME                 STATUS    MESSAGE   ERROR', 'scheduler            Healthy   ok        ', 'controller-manager   Healthy   ok        ', 'etcd-0               Healthy   ok        ', ''].join('\n'));
    // Without the API's client certificate a component gets nowhere: it says so and keeps trying.
    await ok('node3', 'systemctl stop kube-scheduler');
    const down = await run('node3', `${kubectl} get cs scheduler`);
    expect(down.stdout).to.equal('NAME        STATUS      MESSAGE   ERROR\nscheduler   Unhealthy             Get "https://127.0.0.1:10259/healthz": dial tcp 127.0.0.1:10259: connect: connection refused\n');
    await ok('node3', 'systemctl start kube-scheduler');
  });

  it('fails over to the next etcd server, and /healthz fails as the real one does when no etcd answers', async function () {
    await ok('node1', 'systemctl stop etcd');
    try {
      expect(await ok('node1', healthz)).to.equal('ok 200');
      expect(await ok('node1', `${kubectl} get clusterrole system:kube-apiserver-to-kubelet -o jsonpath='{.metadata.name}'`)).to.equal('system:kube-apiserver-to-kubelet');
      await Promise.all(['node2', 'node3'].map((host) => ok(host, 'systemctl stop etcd')));
      const failing = await ok('node1', healthz);
      expect(failing).to.match(/^\[\+\]ping ok\n\[\+\]log ok\n\[-\]etcd failed: reason withheld\n(\[\+\]\S+ ok\n)+healthz check failed\n 500$/);
      const readyz = await ok('node2', `curl -sS --cacert ${dir}/ca.pem https://127.0.0.1:6443/readyz`);
      expect(readyz).to.include('[-]etcd failed: reason withheld\n[-]etcd-readiness failed: reason withheld\n');
      expect(await ok('node2', `curl -sS --cacert ${dir}/ca.pem https://127.0.0.1:6443/livez`)).to.equal('ok');
    } finally {
      await Promise.all(members.map(({ name }) => run(name, 'systemctl start etcd')));
    }
    await Promise.all(members.map(({ name }) => waitFor(name, healthz, (out) => out === 'ok 200')));
  });
});
