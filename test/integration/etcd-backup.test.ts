import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { labDown, type LabState } from '../../runner/lab/index.js';
import { capstan, eventsOf } from '../helpers/cli.js';
import { skipUnlessLabSupported, sshToLab, withLab } from '../helpers/lab.js';
import { installKubernetesStandIns } from '../lab/install.js';
import { makeTestPki } from '../lab/hardway.js';
import { runTasks } from '../helpers/tasks.js';
import type { HostView } from '../../runner/task.js';
import { ensureEtcdMember } from '../../tasks/etcd.js';

/**
 * etcd backup and restore (playbooks/etcd-backup.ts, etcd-restore.ts) on a 2-control-plane kubeadm
 * cluster of stand-ins whose etcd is the REAL one (Debian's etcd-server as the stacked members).
 * One cluster for the whole describe: built once (init + control-plane join), then backed up,
 * changed, restored.
 */
describe('etcd backup and restore on a stacked kubeadm cluster (real etcd members)', function () {
  this.timeout(900_000);
  let lab: LabState;
  let backups: string;
  const admin = 'KUBECONFIG=/etc/kubernetes/admin.conf';
  const etcdctl = 'ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key';
  const ip = (host: string) => lab.hosts.find((h) => h.name === host)!.address;
  const ok = async (host: string, command: string) => {
    const result = await sshToLab(lab, host, command);
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  };
  const backup = (...extra: string[]) => capstan(['run', 'playbooks/etcd-backup.ts', '-i', lab.inventoryPath, '-e', `dir=${backups}`, ...extra]);

  before(async function () {
    skipUnlessLabSupported(this);
    backups = mkdtempSync(join(tmpdir(), 'capstan-etcd-backups-'));
    lab = await withLab([{ name: 'cp1', groups: ['control_plane'] }, { name: 'cp2', groups: ['control_plane'] }]);
    await installKubernetesStandIns(lab);
    await Promise.all(['cp1', 'cp2'].map((host) =>
      ok(host, 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null && containerd config default | sed "s/SystemdCgroup = false/SystemdCgroup = true/" > /etc/containerd/config.toml && systemctl restart containerd && sysctl -qw net.ipv4.ip_forward=1')));
    await ok('cp1', `kubeadm init --control-plane-endpoint ${ip('cp1')}:6443 --apiserver-advertise-address ${ip('cp1')} --upload-certs > /root/init.log`);
    const key = /\n([0-9a-f]{64})\n$/.exec(await ok('cp1', 'kubeadm init phase upload-certs --upload-certs'))![1];
    const joinCommand = (await ok('cp1', 'kubeadm token create --print-join-command')).trim();
    await ok('cp2', `${joinCommand} --control-plane --certificate-key ${key} --apiserver-advertise-address=${ip('cp2')}`);
  });

  after(async function () {
    if (backups) rmSync(backups, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('a control-plane join added its etcd member: both are started members of one cluster', async () => {
    const list = await ok('cp2', `${etcdctl} member list`);
    const rows = list.trim().split('\n').map((line) => line.split(', ').slice(1, 4)).sort();
    expect(rows).to.deep.equal([['started', 'cp1', `https://${ip('cp1')}:2380`], ['started', 'cp2', `https://${ip('cp2')}:2380`]]);
    expect(await ok('cp2', "sed -n 's/^ *- --initial-cluster-state=//p' /etc/kubernetes/manifests/etcd.yaml")).to.equal('existing\n');
    // The static Pod is Debian's etcd with the manifest's flags; the package's own etcd.service never ran.
    expect(await ok('cp2', 'readlink /proc/$(systemctl show -p MainPID --value etcd-pod)/exe; systemctl is-enabled etcd.service; systemctl is-active etcd.service; ls /var/lib/etcd'))
      .to.equal('/usr/bin/etcd\ndisabled\ninactive\nmember\n');
  });

  it('backup --check says where it would save and writes nothing', async () => {
    const result = await backup('--check', '--json');
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    const task = eventsOf(result.stdout).find((e) => e.type === 'task' && String(e.task).startsWith('etcd-snapshot:')) as { host: string; status: string; drift: { subject: string; desired: string }[] };
    expect([task.host, task.status, task.drift[0]!.subject]).to.deep.equal(['cp1', 'changed', 'snapshot']);
    expect(task.drift[0]!.desired).to.match(new RegExp(`^${backups}/etcd-cp1-\\d{8}T\\d{6}Z\\.db$`));
    expect(readdirSync(backups)).to.deep.equal([]);
  });

  it('backup → delete a ConfigMap → restore → the ConfigMap is back and the cluster healthy', async () => {
    await ok('cp1', `${admin} kubectl create configmap capstan-keep --from-literal=answer=42 2>/dev/null || printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: capstan-keep, namespace: default}\\ndata: {answer: "42"}\\n' | ${admin} kubectl apply -f -`);
    const saved = await backup();
    expect(saved.code, saved.stdout + saved.stderr).to.equal(0);
    const files = readdirSync(backups).sort();
    expect(files).to.have.length(2);
    const db = join(backups, files[0]!);
    expect(saved.stdout).to.include(db);
    expect(statSync(db).mode & 0o777).to.equal(0o600);
    expect(readFileSync(`${db}.sha256`, 'utf8')).to.equal(`${createHash('sha256').update(readFileSync(db)).digest('hex')}  ${files[0]}\n`);

    await ok('cp1', `${admin} kubectl delete configmap capstan-keep -n default`);
    expect((await sshToLab(lab, 'cp1', `${admin} kubectl get configmap capstan-keep -n default`)).code).to.equal(1);

    const restore = (...extra: string[]) => capstan(['run', 'playbooks/etcd-restore.ts', '-i', lab.inventoryPath, '-e', `snapshot=${db}`, ...extra]);
    const refused = await restore();
    expect(refused.code).to.equal(1);
    expect(refused.stdout + refused.stderr).to.include('cp1, cp2 of cluster "kubernetes": every change since the snapshot is lost');
    const state = () => Promise.all(['cp1', 'cp2'].map((h) => ok(h, 'ls /etc/kubernetes/manifests /var/lib; sha256sum /etc/kubernetes/manifests/*')));
    const before = await state();
    const check = await restore('--check', '--json');
    expect(check.code, check.stdout + check.stderr).to.equal(0);
    const planned = eventsOf(check.stdout).filter((e) => e.type === 'task' && e.status === 'changed').map((e) => `${String(e.host)} ${String(e.task)}`).sort();
    expect(planned).to.deep.equal(['cp1 etcd-restore:data', 'cp1 etcd-restore:start:etcd', 'cp1 etcd-restore:start:kube-apiserver', 'cp1 etcd-restore:stop',
      'cp2 etcd-restore:data', 'cp2 etcd-restore:start:etcd', 'cp2 etcd-restore:start:kube-apiserver', 'cp2 etcd-restore:stop']);
    expect(await state()).to.deep.equal(before);
    const restored = await capstan(['run', 'playbooks/etcd-restore.ts', '-i', lab.inventoryPath, '-e', `snapshot=${db}`, '-e', 'confirm=kubernetes']);
    expect(restored.code, restored.stdout + restored.stderr).to.equal(0);
    expect(await ok('cp2', `${admin} kubectl get configmap capstan-keep -n default -o jsonpath='{.data.answer}'`)).to.equal('42');
    const health = await ok('cp1', `${etcdctl.replace('--endpoints=https://127.0.0.1:2379', `--endpoints=https://${ip('cp1')}:2379,https://${ip('cp2')}:2379`)} endpoint health 2>&1`);
    expect(health.trim().split('\n').map((l) => l.split(' ').slice(0, 3).join(' ')).sort()).to.deep.equal([
      `https://${ip('cp1')}:2379 is healthy:`, `https://${ip('cp2')}:2379 is healthy:`]);
    expect(await ok('cp1', 'curl -sk https://127.0.0.1:6443/readyz')).to.equal('ok');
    // The previous data is kept beside the restored one.
    expect(await ok('cp2', 'ls -d /var/lib/etcd.before-restore-* | wc -l')).to.equal('1\n');
  });

  it('a damaged snapshot is refused before any host is contacted', async () => {
    const db = join(backups, readdirSync(backups).find((f) => f.endsWith('.db'))!);
    const copy = `${db}.damaged.db`;
    writeFileSync(copy, Buffer.concat([readFileSync(db), Buffer.from('x')]));
    writeFileSync(`${copy}.sha256`, readFileSync(`${db}.sha256`, 'utf8').replace(/  .*/, `  ${basename(copy)}`));
    const result = await capstan(['run', 'playbooks/etcd-restore.ts', '-i', lab.inventoryPath, '-e', `snapshot=${copy}`, '-e', 'confirm=kubernetes', '--json']);
    expect(result.code).to.equal(1);
    expect(result.stdout + result.stderr).to.include(`snapshot ${copy} does not match ${basename(copy)}.sha256`);
    expect(eventsOf(result.stdout).filter((e) => e.type === 'task')).to.deep.equal([]);
  });

  it('kubeadm reset on a control plane removes its etcd member', async () => {
    const reset = await ok('cp2', 'kubeadm reset -f');
    expect(reset).to.include('[reset] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...\n' +
      "[reset] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n");
    expect(reset).to.include('[reset] Deleted contents of the etcd data directory: /var/lib/etcd\n');
    expect(reset).to.not.include('Failed to remove etcd member');
    const list = await ok('cp1', `${etcdctl} member list`);
    expect(list.trim().split('\n').map((line) => line.split(', ').slice(1, 3).join(' '))).to.deep.equal(['started cp1']);
    // One member left: it elects itself leader (requests in between fail with "leader changed", as on
    // a real cluster), then serves the data.
    await ok('cp1', `for i in $(seq 30); do ${etcdctl} endpoint health >/dev/null 2>&1 && exit 0; sleep 1; done; ${etcdctl} endpoint health`);
    expect(await ok('cp1', `${admin} kubectl get configmap capstan-keep -n default -o jsonpath='{.data.answer}'`)).to.equal('42');
  });
});

/**
 * The hard way's etcd (etcd.service members over TLS, /etc/etcd certificates; tasks/etcd.ts) on 3
 * controllers: a backup passes over a member that is down, then backup → delete a key → restore →
 * the key is back, every member healthy.
 */
describe('etcd backup and restore, the hard way (etcd.service members)', function () {
  this.timeout(900_000);
  let lab: LabState;
  let backups: string;
  let pki: string;
  let members: { name: string; ip: string }[];
  const files = { certFile: '/etc/etcd/kubernetes.pem', keyFile: '/etc/etcd/kubernetes-key.pem', trustedCaFile: '/etc/etcd/ca.pem' };
  const etcdctl = `ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${files.trustedCaFile} --cert=${files.certFile} --key=${files.keyFile}`;
  const ok = async (host: string, command: string, input?: string) => {
    const result = await sshToLab(lab, host, command, input === undefined ? {} : { input });
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  };

  before(async function () {
    skipUnlessLabSupported(this);
    backups = mkdtempSync(join(tmpdir(), 'capstan-etcd-backups-'));
    lab = await withLab(['controller-0', 'controller-1', 'controller-2'].map((name) => ({ name, groups: ['controllers'] })));
    members = lab.hosts.map((host) => ({ name: host.name, ip: host.address }));
    pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'capstan-etcd-pki-')), [
      { name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', ipAddresses: [...members.map((m) => m.ip), '127.0.0.1'], dnsNames: ['kubernetes'] },
    ]);
    await Promise.all(members.map(async ({ name }) => {
      await ok(name, 'mkdir -p /etc/etcd');
      for (const [file, mode] of [['ca.pem', '0644'], ['kubernetes.pem', '0644'], ['kubernetes-key.pem', '0600']] as const) {
        await ok(name, `install -m ${mode} /dev/stdin /etc/etcd/${file}`, readFileSync(join(pki, file), 'utf8'));
      }
    }));
    const formed = await runTasks(lab, 'all', [...ensureEtcdMember({
      name: (host: HostView) => host.name,
      ip: (host: HostView) => members.find((member) => member.name === host.name)!.ip,
      members: () => members,
      ...files,
    })]);
    expect(formed.exitCode, JSON.stringify(formed.tasks.filter((t) => t.status === 'failed'))).to.equal(0);
  });

  after(async function () {
    for (const dir of [backups, pki]) if (dir) rmSync(dir, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('a backup is taken on the first healthy member: a stopped one is passed over', async () => {
    await ok('controller-0', 'systemctl stop etcd');
    try {
      const saved = await capstan(['run', 'playbooks/etcd-backup.ts', '-i', lab.inventoryPath, '-e', `dir=${backups}`, '--json']);
      expect(saved.code, saved.stdout + saved.stderr).to.equal(0);
      const snapshot = eventsOf(saved.stdout).find((e) => e.type === 'task' && String(e.task).startsWith('etcd-snapshot:'));
      expect([snapshot?.host, snapshot?.status]).to.deep.equal(['controller-1', 'changed']);
      expect(readdirSync(backups).filter((f) => f.endsWith('.db'))).to.have.length(1);
    } finally {
      await ok('controller-0', 'systemctl start etcd');
    }
    rmSync(backups, { recursive: true, force: true });
  });

  it('backup → delete a key → restore → the key is back, every member healthy', async () => {
    await ok('controller-0', `${etcdctl} put /registry/configmaps/default/capstan-keep 42`);
    const saved = await capstan(['run', 'playbooks/etcd-backup.ts', '-i', lab.inventoryPath, '-e', `dir=${backups}`]);
    expect(saved.code, saved.stdout + saved.stderr).to.equal(0);
    const db = join(backups, readdirSync(backups).find((f) => f.endsWith('.db'))!);
    expect(db).to.match(/\/etcd-controller-0-\d{8}T\d{6}Z\.db$/);
    await ok('controller-1', `${etcdctl} del /registry/configmaps/default/capstan-keep`);
    const restored = await capstan(['run', 'playbooks/etcd-restore.ts', '-i', lab.inventoryPath, '-e', `snapshot=${db}`, '-e', 'confirm=kubernetes']);
    expect(restored.code, restored.stdout + restored.stderr).to.equal(0);
    expect(await ok('controller-1', `${etcdctl} get /registry/configmaps/default/capstan-keep --print-value-only`)).to.equal('42\n');
    const list = await ok('controller-0', `${etcdctl} member list`);
    expect(list.trim().split('\n').map((line) => line.split(', ').slice(1, 3).join(' ')).sort()).to.deep.equal(['started controller-0', 'started controller-1', 'started controller-2']);
    expect(await ok('controller-1', 'systemctl is-active etcd; ls -d /var/lib/etcd.before-restore-* | wc -l')).to.equal('active\n1\n');
  });
});
