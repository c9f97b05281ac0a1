/**
 * The day-2 playbooks that read and renew on one small kubeadm cluster (cp1 + w1, the Kubernetes
 * stand-ins), built once:
 * - status.ts: the Nodes table as kubectl lists the nodes, /readyz ok, the certificate rows, a token
 *   made with `kubeadm token create` shown by its id while its secret appears nowhere (stdout,
 *   --json, run log), --check showing the same, and nothing changed;
 * - then certs.ts: the table, then the stand-ins' clock moved 360 days forward (the test-only
 *   /etc/standin/clock-offset), the table flags what expires, renew --check lists it and changes
 *   nothing, renew applies (kubeadm certs renew all, static Pods restarted, /readyz), the API server
 *   serves the new certificate, and a second renew run changes nothing.
 * status runs first: it expects certificates a year from their issue.
 */
import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import type { LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, eventsOf } from '../helpers/cli.js';
import { expectNothingChanged } from '../helpers/recap.js';
import { installKubernetesStandIns } from '../lab/install.js';
import { formatExpiry, parseOpensslEndDate } from '../../tasks/certs-parse.js';

const LEAVES = ['admin.conf', 'apiserver', 'apiserver-etcd-client', 'apiserver-kubelet-client', 'controller-manager.conf', 'etcd-healthcheck-client',
  'etcd-peer', 'etcd-server', 'front-proxy-client', 'scheduler.conf', 'super-admin.conf'];
const CAS = ['ca', 'etcd-ca', 'front-proxy-ca'];
const STATE = 'find /etc/kubernetes /var/lib/kubelet/pki -type f -exec sha256sum {} + | sort | sha256sum';

type TaskEvent = { type: 'task'; host: string; task: string; status: string; message?: string; drift: { subject: string; current?: string; desired?: string }[] };

function task(stdout: string, host: string, id: string): TaskEvent {
  const found = eventsOf(stdout).find((e) => e.type === 'task' && e.host === host && e.task === id);
  if (!found) throw new Error(`no ${id} event for ${host} in: ${stdout.slice(-2000)}`);
  return found as unknown as TaskEvent;
}

const ETCDCTL = 'ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key';

/** The playbook's certificate table (its `report` event in --json): the rows, columns checked. */
function certificateRows(stdout: string): string[][] {
  const found = eventsOf(stdout).find((e) => e.type === 'report' && e.title === 'Certificates');
  if (!found) throw new Error(`no Certificates report in: ${stdout.slice(-2000)}`);
  expect(found.columns).to.deep.equal(['HOST', 'CERTIFICATE', 'EXPIRES', 'RESIDUAL TIME', 'CERTIFICATE AUTHORITY', 'NOTE']);
  return found.rows as string[][];
}

type Report = { title: string; columns: string[]; rows: string[][] };

function reportsOf(stdout: string): Report[] {
  return eventsOf(stdout).filter((e) => e.type === 'report').map((e) => ({ title: String(e.title), columns: e.columns as string[], rows: e.rows as string[][] }));
}

function report(stdout: string, title: string): Report {
  const found = reportsOf(stdout).find((r) => r.title === title);
  if (!found) throw new Error(`no ${title} report in: ${stdout.slice(-2000)}`);
  return found;
}

async function sh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

describe('day-2 playbooks on one kubeadm cluster (cp1 + w1): status, then certs', function () {
  this.timeout(900_000);
  let lab: LabState;
  let status: string[];
  let certs: string[];
  const started = Date.now();

  before(async () => {
    lab = await withLab([
      { name: 'cp1', groups: ['control_plane'] },
      { name: 'w1', groups: ['workers'] },
    ]);
    await installKubernetesStandIns(lab);
    const url = pathToFileURL('test/fixtures/cni/flannel-lab.yaml').href;
    const built = await capstan(['run', 'test/fixtures/playbooks/kubeadm-lab.ts', '-i', lab.inventoryPath, '-e', `cni_manifest_url=${url}`, '--json']);
    expect(built.code, built.stdout.slice(-3000) + built.stderr).to.equal(0);
    console.log(`      [day-2] cluster cp1 + w1 built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    status = ['run', 'playbooks/status.ts', '-i', lab.inventoryPath];
    certs = ['run', 'playbooks/certs.ts', '-i', lab.inventoryPath, '--json'];
  });

  after(() => console.log(`      [day-2] describe took ${((Date.now() - started) / 1000).toFixed(0)} s`));

  describe('status.ts: the cluster at a glance', () => {
    it('shows the nodes as kubectl lists them, /readyz ok, the certificates; --check shows the same; nothing changed', async () => {
      const before = await sh(lab, 'cp1', STATE);
      const t0 = Date.now();
      const result = await capstan([...status, '--json']);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      console.log(`      [status] status run took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const version = (await sh(lab, 'w1', 'kubelet --version')).trim().replace(/^Kubernetes /, '');
      expect(version).to.match(/^v1\.\d+\.\d+$/);
      const address = (name: string) => lab.hosts.find((h) => h.name === name)!.address;
      expect(report(result.stdout, 'Nodes')).to.deep.equal({
        title: 'Nodes',
        columns: ['NAME', 'ROLES', 'VERSION', 'READY', 'INTERNAL-IP'],
        rows: [
          ['cp1', 'control-plane', version, 'Ready', address('cp1')],
          ['w1', '<none>', version, 'Ready', address('w1')],
        ],
      });
      expect(report(result.stdout, 'Control planes')).to.deep.equal({ title: 'Control planes', columns: ['HOST', 'READYZ'], rows: [['cp1', 'ok']] });
      // The real etcd's one member, as etcdctl lists it on cp1.
      const memberId = (await sh(lab, 'cp1', `${ETCDCTL} member list`)).split(', ')[0];
      expect(memberId).to.match(/^[0-9a-f]+$/);
      expect(report(result.stdout, 'etcd members')).to.deep.equal({
        title: 'etcd members',
        columns: ['NAME', 'ID', 'PEER URL', 'CLIENT URL', 'STATUS'],
        rows: [['cp1', memberId, `https://${address('cp1')}:2380`, `https://${address('cp1')}:2379`, 'healthy']],
      });
      const certificates = report(result.stdout, 'Certificates').rows.map((r) => `${r[0]} ${r[1]} ${r[3]}`);
      expect(certificates).to.include.members(['cp1 apiserver 364d', 'cp1 ca 9y', 'cp1 kubelet-client 364d', 'w1 kubelet-client 364d']);
      expect(reportsOf(result.stdout).map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'etcd members', 'Certificates', 'Join tokens']);
      expectNothingChanged(result.stdout, ['cp1', 'w1']);

      const check = await capstan([...status, '--json', '--check']);
      expect(check.code, check.stderr).to.equal(0);
      // The same tables, but for the ticking TTL of kubeadm init's token and the certificates' residual time.
      const stable = (stdout: string) => reportsOf(stdout).map((r) => (r.title === 'Join tokens' ? { ...r, rows: r.rows.map((row) => [row[0]!, ...row.slice(2)]) } : r));
      expect(stable(check.stdout)).to.deep.equal(stable(result.stdout));
      expectNothingChanged(check.stdout, ['cp1', 'w1']);
      expect(await sh(lab, 'cp1', STATE)).to.equal(before);
    });

    it('shows a join token by its id only: its secret is in no output, --json or run log', async () => {
      const token = (await sh(lab, 'cp1', 'kubeadm token create --ttl 2h --description "status test"')).trim();
      const [id, secret] = token.split('.') as [string, string];
      expect(secret).to.match(/^[a-z0-9]{16}$/);
      for (const json of [true, false]) {
        const result = await capstan([...status, ...(json ? ['--json'] : [])]);
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        const outputs: [string, string][] = [['stdout', result.stdout], ['stderr', result.stderr], ...Object.entries(result.runLogs)];
        for (const [where, text] of outputs) {
          expect(text.includes(secret), `the token's secret in ${where}`).to.equal(false);
        }
        expect(Object.keys(result.runLogs).length, 'a run log was written').to.be.greaterThan(0);
        if (json) {
          const row = report(result.stdout, 'Join tokens').rows.find((r) => r[0] === id);
          expect(row, `token ${id} in the table`).to.not.equal(undefined);
          expect([row![1], row![3], row![4], row![5]]).to.deep.equal(['1h', 'authentication,signing', 'status test', 'system:bootstrappers:kubeadm:default-node-token']);
          expectNothingChanged(result.stdout, ['cp1', 'w1']);
        } else {
          expect(result.stdout).to.match(new RegExp(`^Join tokens:$[\\s\\S]*^${id}\\s+1h\\s`, 'm'));
          console.log(result.stdout.slice(result.stdout.indexOf('Nodes:')));
        }
      }
    });
  });

  describe('certs.ts: certificate lifetimes and renewal', () => {
    it('shows every kubeadm certificate of cp1 and the kubelet client certificate of both nodes, a year left', async () => {
      const result = await capstan(certs);
      expect(result.code, result.stderr).to.equal(0);
      const table = certificateRows(result.stdout);
      expect(table.map((r) => `${r[0]} ${r[1]} ${r[3]} ${r[4]}`)).to.deep.equal([
        ...LEAVES.map((name) => `cp1 ${name} 364d ${name.startsWith('etcd') || name === 'apiserver-etcd-client' ? 'etcd-ca' : name === 'front-proxy-client' ? 'front-proxy-ca' : 'ca'}`),
        ...CAS.map((name) => `cp1 ${name} 9y `),
        'cp1 kubelet-client 364d ca',
        'w1 kubelet-client 364d ca',
      ]);
      // EXPIRES is the certificate file's own notAfter (to the minute, as kubeadm prints it).
      const apiserver = parseOpensslEndDate(await sh(lab, 'cp1', 'openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt'));
      expect(table.find((r) => r[1] === 'apiserver')![2]).to.equal(formatExpiry(apiserver));
      expectNothingChanged(result.stdout, ['cp1', 'w1']);
    });

    it('360 days later: the table notes what expires, renew --check lists it and changes nothing', async () => {
      for (const host of ['cp1', 'w1']) await sh(lab, host, 'mkdir -p /etc/standin && echo 8640h > /etc/standin/clock-offset');
      const result = await capstan(certs);
      expect(result.code, result.stderr).to.equal(0);
      const table = certificateRows(result.stdout);
      for (const name of LEAVES) {
        const row = table.find((r) => r[0] === 'cp1' && r[1] === name)!;
        expect([row[3], row[5]], name).to.deep.equal(['4d', 'expires within 30 days: kubeadm certs renew']);
      }
      // Every topology playbook's preflight warns, and goes on.
      const preflight = await capstan(['run', 'test/fixtures/playbooks/certs-preflight.ts', '-i', lab.inventoryPath, '--json']);
      expect(preflight.code, preflight.stdout.slice(-2000) + preflight.stderr).to.equal(0);
      expect(task(preflight.stdout, 'cp1', 'certificates:expiry-warning')).to.include({
        status: 'ok',
        message: `WARNING: ${LEAVES.map((name) => `${name} (4d)`).join(', ')} expire within 30 days: renew with capstan run playbooks/certs.ts -e renew=true`,
      });
      expect(task(preflight.stdout, 'w1', 'certificates:expiry-warning')).to.not.have.property('message');
      const before = await sh(lab, 'cp1', STATE);
      const check = await capstan([...certs, '-e', 'renew=true', '--check']);
      expect(check.code, check.stderr).to.equal(0);
      const renew = task(check.stdout, 'cp1', 'certificates:renew');
      expect(renew.status).to.equal('changed');
      expect(renew.drift.map((d) => `${d.subject}: ${d.current?.replace(/^expires .* \(/, '(')} → ${d.desired}`)).to.deep.equal(
        LEAVES.map((name) => `certificate ${name}: (4d) → renewed for one year`),
      );
      expect(await sh(lab, 'cp1', STATE)).to.equal(before);
    });

    it('renew applies: every leaf certificate a year from the shifted now, CAs kept, the API server serving the new one, /readyz ok', async () => {
      const caBefore = await sh(lab, 'cp1', 'sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/etcd/ca.crt /etc/kubernetes/pki/front-proxy-ca.crt');
      const servedBefore = await sh(lab, 'cp1', `echo | openssl s_client -connect ${lab.hosts[0]!.address}:6443 2>/dev/null | openssl x509 -noout -serial`);
      const t0 = Date.now();
      const result = await capstan([...certs, '-e', 'renew=true', '-v']);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      console.log(`      [certs] renew on cp1 (renew all, static Pods restarted, /readyz) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      expect(task(result.stdout, 'cp1', 'certificates:renew').status).to.equal('changed');
      const logs = eventsOf(result.stdout).filter((e) => e.type === 'log' && e.host === 'cp1').map((e) => String(e.line));
      expect(logs).to.include('Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates.');
      expect(logs.some((l) => l.startsWith('moving etcd.yaml, kube-apiserver.yaml, kube-controller-manager.yaml, kube-scheduler.yaml out of /etc/kubernetes/manifests'))).to.equal(true);
      const expiration = await sh(lab, 'cp1', 'kubeadm certs check-expiration');
      for (const name of LEAVES) expect(expiration).to.match(new RegExp(`^${name.replace('.', '\\.')}\\s+\\w{3} \\d{2}, \\d{4} \\d{2}:\\d{2} UTC\\s+364d\\s`, 'm'));
      expect(await sh(lab, 'cp1', 'sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/etcd/ca.crt /etc/kubernetes/pki/front-proxy-ca.crt')).to.equal(caBefore);
      // A year from the shifted now: 360 + 365 days from the real clock.
      const end = parseOpensslEndDate(await sh(lab, 'cp1', 'openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt'));
      expect(Math.round((end.getTime() - Date.now()) / 86_400_000)).to.equal(725);
      // The restarted API server serves the renewed certificate, and is ready.
      const served = await sh(lab, 'cp1', `echo | openssl s_client -connect ${lab.hosts[0]!.address}:6443 2>/dev/null | openssl x509 -noout -serial`);
      expect(served).to.not.equal(servedBefore);
      expect(served).to.equal(await sh(lab, 'cp1', 'openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt'));
      expect(await sh(lab, 'cp1', `curl -sS --cacert /etc/kubernetes/pki/ca.crt https://${lab.hosts[0]!.address}:6443/readyz`)).to.equal('ok');
      expect(await sh(lab, 'cp1', 'ls /etc/kubernetes/manifests; test ! -e /etc/kubernetes/capstan-manifests-restarting && echo held-dir-gone')).to.equal(
        'etcd.yaml\nkube-apiserver.yaml\nkube-controller-manager.yaml\nkube-scheduler.yaml\nheld-dir-gone\n',
      );
      expect(await sh(lab, 'cp1', 'kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers | cut -d" " -f1')).to.equal('cp1\nw1\n');
    });

    it('a second renew run changes nothing', async () => {
      const result = await capstan([...certs, '-e', 'renew=true']);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, ['cp1', 'w1']);
    });

    it('a restart interrupted with manifests moved out is finished by the next run', async () => {
      await sh(lab, 'cp1', 'mkdir -m 0700 /etc/kubernetes/capstan-manifests-restarting && mv /etc/kubernetes/manifests/kube-scheduler.yaml /etc/kubernetes/capstan-manifests-restarting/');
      const check = await capstan([...certs, '-e', 'renew=true', '--check']);
      expect(task(check.stdout, 'cp1', 'certificates:renew').drift).to.deep.equal([
        { subject: 'control-plane manifests', current: 'in /etc/kubernetes/capstan-manifests-restarting (a restart was interrupted)', desired: 'in /etc/kubernetes/manifests' },
      ]);
      const result = await capstan([...certs, '-e', 'renew=true']);
      expect(result.code, result.stdout.slice(-2000) + result.stderr).to.equal(0);
      expect(task(result.stdout, 'cp1', 'certificates:renew').status).to.equal('changed');
      expect(await sh(lab, 'cp1', 'ls /etc/kubernetes/manifests; ls -d /etc/kubernetes/capstan-manifests-restarting 2>&1 | grep -c "No such"')).to.equal(
        'etcd.yaml\nkube-apiserver.yaml\nkube-controller-manager.yaml\nkube-scheduler.yaml\n1\n',
      );
      expectNothingChanged((await capstan([...certs, '-e', 'renew=true'])).stdout, ['cp1', 'w1']);
    });
  });
});
