import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labStatus, type LabState } from '../../runner/lab/index.js';
import type { RunEvent } from '../../runner/events.js';
import { capstan, type CliResult } from '../helpers/cli.js';
import { skipUnlessLabSupported, sshToLab } from '../helpers/lab.js';

/**
 * `playbooks/upgrade.ts` end to end on ONE two-node lab cluster (k8s-01 control plane, k8s-02
 * worker) built once at 1.34 with `capstan run playbooks/single-node.ts --lab`: the upgrade's
 * --check (the plan, nothing changed, nothing cordoned), a skipped minor refused with exit 1, the
 * upgrade to 1.35 stopped at the worker's drain by a pod without a controller (the node uncordoned,
 * the run saying what to do), the same command finishing it once the pod is gone (the steps' order
 * from the JSON events, every node at v1.35.1, packages held), and a run that changes nothing. The packages come from the lab's pkgs.k8s.io-shaped
 * repository (stand-ins, test/lab/README.md), which `--lab` serves.
 */
describe('playbooks/upgrade.ts on a lab cluster built at 1.34 (one control plane, one worker)', function () {
  this.timeout(900_000);
  let lab: LabState;
  let scratch: string;
  let inventory: string;
  const backups = () => join(scratch, 'etcd-backups');
  const upgrade = (...extra: string[]) => capstan(['run', 'playbooks/upgrade.ts', '--lab', '-i', inventory, '--json', '-e', `etcd_backup_dir=${backups()}`, ...extra]);
  const snapshotStep = () => `k8s-01 changed etcd snapshot to ${backups()} on this machine`;
  const hosts = ['k8s-01', 'k8s-02'];

  async function ok(host: string, command: string): Promise<string> {
    const result = await sshToLab(lab, host, command);
    expect(result.code, `${host}: ${command}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }
  const etcHashes = () => Promise.all(hosts.map((host) => ok(host, 'find /etc -xdev -type f -exec sha256sum {} + | sort | sha256sum; apt-mark showhold')));
  const nodes = () => ok('k8s-01', "kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable}{\"\\n\"}{end}'");
  const events = (result: CliResult) => result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as RunEvent);
  const recap = (result: CliResult) => events(result).find((e) => e.type === 'recap') as Extract<RunEvent, { type: 'recap' }>;
  /** The plan the run reported (ctx.report): its title, then one line per row, cells joined by " | ". */
  const planOf = (result: CliResult) =>
    events(result)
      .filter((e): e is Extract<RunEvent, { type: 'report' }> => e.type === 'report')
      .flatMap((table) => [table.title, ...table.rows.map((row) => row.join(' | '))]);

  before(async function () {
    skipUnlessLabSupported(this);
    scratch = mkdtempSync(join(tmpdir(), 'capstan-upgrade-'));
    inventory = join(scratch, 'two-nodes.yaml');
    writeFileSync(
      inventory,
      [
        'all:', '  vars:', '    kubernetes_version: "1.34"', '    smoke_test: false', '  children:',
        '    control_plane:', '      hosts:', '        k8s-01:', '          ansible_host: 192.168.0.150',
        '    workers:', '      hosts:', '        k8s-02:', '          ansible_host: 192.168.0.151', '',
      ].join('\n'),
    );
    await labDown(); // a fresh cluster: --lab would reuse one already upgraded
    const build = await capstan(['run', 'playbooks/single-node.ts', '--lab', '-i', inventory]);
    expect(build.code, build.stdout + build.stderr).to.equal(0);
    lab = (await labStatus())!;
    expect(await nodes()).to.equal('k8s-01 v1.34.1 \nk8s-02 v1.34.1 \n');
  });

  after(async function () {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('--check prints the plan node by node, reports every step as pending, changes nothing and cordons nothing', async function () {
    const before = await etcHashes();
    const check = await upgrade('-e', 'kubernetes_version=1.35', '--check');
    expect(check.code, check.stderr).to.equal(0);
    expect(planOf(check)).to.deep.equal([
      'upgrade plan: v1.35.1 (packages 1.35.1-1.1), one node at a time',
      '1 | k8s-01 | control plane | v1.34.1 | kubeadm 1.35.1-1.1, kubeadm upgrade apply v1.35.1, cordon, drain, kubelet + kubectl 1.35.1-1.1, restart kubelet, wait Ready, uncordon',
      '2 | k8s-02 | worker | v1.34.1 | kubeadm 1.35.1-1.1, kubeadm upgrade node, cordon, drain, kubelet + kubectl 1.35.1-1.1, restart kubelet, wait Ready, uncordon',
    ]);
    const tasks = events(check).filter((e): e is Extract<RunEvent, { type: 'task' }> => e.type === 'task' && e.host === 'k8s-02');
    const worker = tasks.slice(tasks.findIndex((t) => t.title === 'kubeadm 1.35.1-1.1 (held)'));
    expect(worker.map((t) => `${t.status} ${t.title}`)).to.deep.equal([
      'changed kubeadm 1.35.1-1.1 (held)', 'changed kubeadm upgrade node', 'changed cordon k8s-02', 'changed drain k8s-02',
      'changed kubelet + kubectl 1.35.1-1.1 (held)', 'changed restart kubelet (v1.35.1)', 'changed k8s-02 Ready at v1.35.1', 'changed uncordon k8s-02',
    ]);
    // The worker's first step waits for the control plane's upgrade apply, on another host.
    expect(worker[1]!.drift).to.deep.equal([{ subject: 'kubelet configuration', current: 'v1.34.1', desired: 'v1.35.1', pending: 'kubeadm upgrade apply v1.35.1 on k8s-01' }]);
    // On the control plane itself, each step names the one before it.
    const cp = events(check).filter((e): e is Extract<RunEvent, { type: 'task' }> => e.type === 'task' && e.host === 'k8s-01' && e.title === 'drain k8s-01');
    expect(cp.map((t) => t.drift)).to.deep.equal([[{ subject: 'pods', current: 'running on k8s-01', desired: 'evicted (DaemonSets stay)', pending: 'cordon k8s-01' }]]);
    expect(await etcHashes()).to.deep.equal(before);
    expect(await nodes()).to.equal('k8s-01 v1.34.1 \nk8s-02 v1.34.1 \n');
  });

  it('refuses a skipped minor (1.36) with exit 1, naming the rule and the nodes, before any change', async function () {
    const before = await etcHashes();
    const refused = await upgrade('-e', 'kubernetes_version=1.36');
    expect(refused.code).to.equal(1);
    expect(planOf(refused)).to.deep.equal([]);
    const error = events(refused).find((e) => e.type === 'error') as Extract<RunEvent, { type: 'error' }>;
    expect(error.message.split('\n')).to.deep.equal([
      'upgrade to v1.36.0 refused before any change:',
      `  not-in-repository: v1.36.0 is not in the package repository: http://${lab.hosts[0]!.address.replace(/\.\d+$/, '.1')}:8380/core:/stable:/v1.36/deb/ answered curl: (22) The requested URL returned error: 404`,
      '  skipped-minor: v1.36.0 skips a minor on k8s-01 (kubelet v1.34.1, kubeadm v1.34.1, kube-apiserver v1.34.1), k8s-02 (kubelet v1.34.1, kubeadm v1.34.1): upgrade one minor at a time (to v1.35 first)',
    ]);
    expect(Object.values(recap(refused).hosts).map((h) => h.changed)).to.deep.equal([0, 0]);
    expect(await etcHashes()).to.deep.equal(before);
  });

  it('upgrades the control plane; a drain that cannot finish stops the run at the worker, uncordoned, saying what to do', async function () {
    // A pod without a controller: kubectl drain refuses it without --force, which the upgrade never passes.
    await ok('k8s-01', "kubectl apply -f - <<'EOF'\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: default\nspec:\n  nodeName: k8s-02\n  containers:\n  - name: nginx\n    image: nginx\nEOF");
    const started = Date.now();
    const apply = await upgrade('-e', 'kubernetes_version=1.35');
    console.log(`      upgrade stopped at the drain: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(apply.code, apply.stdout + apply.stderr).to.equal(2);
    const tasks = events(apply).filter((e): e is Extract<RunEvent, { type: 'task' }> => e.type === 'task' && e.status !== 'ok');
    const steps = tasks.map((e) => `${e.host} ${e.status} ${e.title}`).filter((line) => !/apt (key|repository)|apt-get update/.test(line));
    expect(steps).to.deep.equal([
      snapshotStep(),
      'k8s-01 changed kubeadm 1.35.1-1.1 (held)', 'k8s-01 changed kubeadm upgrade apply v1.35.1', 'k8s-01 changed cordon k8s-01', 'k8s-01 changed drain k8s-01',
      'k8s-01 changed kubelet + kubectl 1.35.1-1.1 (held)', 'k8s-01 changed restart kubelet (v1.35.1)', 'k8s-01 changed uncordon k8s-01',
      'k8s-02 changed kubeadm 1.35.1-1.1 (held)', 'k8s-02 changed kubeadm upgrade node', 'k8s-02 changed cordon k8s-02', 'k8s-02 failed drain k8s-02',
    ]);
    // The etcd snapshot first (0600 here, its sha256 beside it), then the repository switch on every
    // node, before the first package.
    const saved = readdirSync(backups());
    expect(saved.map((name) => name.replace(/\d{8}T\d{6}Z/, 'TIME'))).to.deep.equal(['etcd-k8s-01-TIME.db', 'etcd-k8s-01-TIME.db.sha256']);
    expect(statSync(join(backups(), saved[0]!)).mode & 0o777).to.equal(0o600);
    const firstPackage = tasks.findIndex((e) => e.title === 'kubeadm 1.35.1-1.1 (held)');
    expect(`${tasks[0]!.host} ${tasks[0]!.status} ${tasks[0]!.title}`).to.equal(snapshotStep());
    expect(tasks.slice(1, firstPackage).map((e) => `${e.host} ${e.title}`).sort()).to.deep.equal([
      'k8s-01 apt key /etc/apt/keyrings/kubernetes-apt-keyring.gpg', 'k8s-01 apt repository kubernetes', 'k8s-01 apt-get update',
      'k8s-02 apt key /etc/apt/keyrings/kubernetes-apt-keyring.gpg', 'k8s-02 apt repository kubernetes', 'k8s-02 apt-get update',
    ]);
    expect(tasks.at(-1)!.message).to.equal(
      'kubectl drain k8s-02 failed (exit 1):\n' +
        'error: unable to drain node "k8s-02" due to error: cannot delete Pods that declare no controller (use --force to override): default/bare, continuing command...\n' +
        'There are pending nodes to be drained:\n k8s-02\ncannot delete Pods that declare no controller (use --force to override): default/bare\n' +
        'k8s-02 was uncordoned; its kubelet was not upgraded. Make the drain possible (a PodDisruptionBudget that allows an eviction, a controller for bare pods, or a longer drain_timeout), then run the same command again.',
    );
    expect(await nodes()).to.equal('k8s-01 v1.35.1 \nk8s-02 v1.34.1 \n');
    expect(await ok('k8s-02', 'ls /var/lib/capstan/upgrade-cordoned 2>&1 || true')).to.match(/No such file/);
  });

  it('the same command again finishes the worker: kubelet and kubectl, restart, uncordon; every node at v1.35.1, packages held', async function () {
    await ok('k8s-01', 'kubectl delete pod bare');
    const started = Date.now();
    const resumed = await upgrade('-e', 'kubernetes_version=1.35');
    console.log(`      the rest of the upgrade: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(0);
    expect(planOf(resumed)).to.deep.equal([
      'upgrade plan: v1.35.1 (packages 1.35.1-1.1), one node at a time',
      '1 | k8s-02 | worker | v1.34.1 | kubeadm upgrade node, cordon, drain, kubelet + kubectl 1.35.1-1.1, restart kubelet, wait Ready, uncordon',
      '- | k8s-01 | control plane | v1.35.1 | untouched: at v1.35.1',
    ]);
    const changed = events(resumed).filter((e): e is Extract<RunEvent, { type: 'task' }> => e.type === 'task' && e.status === 'changed');
    expect(changed.map((e) => `${e.host} ${e.title}`)).to.deep.equal([
      snapshotStep().replace(' changed', ''),
      'k8s-02 kubeadm upgrade node', 'k8s-02 cordon k8s-02', 'k8s-02 drain k8s-02', 'k8s-02 kubelet + kubectl 1.35.1-1.1 (held)', 'k8s-02 restart kubelet (v1.35.1)', 'k8s-02 uncordon k8s-02',
    ]);
    expect(await nodes()).to.equal('k8s-01 v1.35.1 \nk8s-02 v1.35.1 \n');
    for (const host of hosts) {
      expect(await ok(host, "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' kubeadm kubelet kubectl; kubeadm version -o short; cat /etc/apt/sources.list.d/kubernetes.list")).to.equal(
        'kubeadm 1.35.1-1.1 hi \nkubectl 1.35.1-1.1 hi \nkubelet 1.35.1-1.1 hi \nv1.35.1\n' +
          `deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] http://${lab.hosts[0]!.address.replace(/\.\d+$/, '.1')}:8380/core:/stable:/v1.35/deb/ /\n`,
      );
    }
    expect(await ok('k8s-01', "sed -n 's/^ *image: //p' /etc/kubernetes/manifests/kube-apiserver.yaml")).to.equal('registry.k8s.io/kube-apiserver:v1.35.1\n');
  });

  it('a second run plans nothing and changes nothing', async function () {
    const again = await upgrade('-e', 'kubernetes_version=1.35');
    expect(again.code, again.stderr).to.equal(0);
    expect(planOf(again)).to.deep.equal([
      'upgrade plan: every node is at v1.35.1, nothing to do',
      '- | k8s-01 | control plane | v1.35.1 | untouched: at v1.35.1',
      '- | k8s-02 | worker | v1.35.1 | untouched: at v1.35.1',
    ]);
    expect(Object.values(recap(again).hosts).map((h) => [h.changed, h.failed])).to.deep.equal([[0, 0], [0, 0]]);
  });
});
