import { expect } from 'chai';
import { loadInventory } from '../../runner/inventory/index.js';
import { parseFacts } from '../../runner/facts.js';
import type { Command } from '../../runner/quote.js';
import type { ApplyContext, RunResult } from '../../runner/index.js';
import upgradePlaybook from '../../playbooks/upgrade.js';
import { kubeadmUpgrade, upgradePackages } from '../../tasks/upgrade.js';
import { cordonForUpgrade, drainForUpgrade, uncordonAfterUpgrade } from '../../tasks/upgrade-node.js';
import { plays } from '../helpers/plays.js';

const result = (code: number, stdout = '', stderr = ''): RunResult => ({ code, stdout, stderr, bytes: Buffer.from(stdout) });

/**
 * A node for apply: commands on it and on the admin host (the first control plane) are recorded in
 * one list, in order; `answer` gives a command's result (default: exit 0, no output).
 */
function fakeNode(answer: (where: string, command: string) => RunResult = () => result(0), files: Record<string, string> = {}) {
  const commands: string[] = [];
  const writes: { path: string; content: string }[] = [];
  const on = (where: string) => async (command: Command) => {
    commands.push(`${where}: ${command.display}`);
    return answer(where, command.display);
  };
  const run = (where: string) => async (command: Command) => {
    const answered = await on(where)(command);
    if (answered.code !== 0) throw new Error(`${command.display} failed (exit ${answered.code})`);
    return answered;
  };
  const ctx: ApplyContext = {
    host: { name: 'k8s-02', vars: {}, facts: parseFacts('') },
    checkMode: false,
    pendingChanges: [],
    probe: on('probe'),
    readFile: async (path) => (path in files ? Buffer.from(files[path]!) : null),
    readText: async (path) => files[path] ?? null,
    stat: async (path) => (path in files ? { type: 'file', mode: '0644', owner: 'root', group: 'root', size: files[path]!.length } : null),
    run: run('k8s-02'),
    exec: on('k8s-02'),
    writeFile: async (path, content) => void writes.push({ path, content: String(content) }),
    log: () => undefined,
    onHost: async (name) => ({ name, run: run(name), exec: on(name), readFile: async () => null }),
    reconnect: async () => undefined,
  };
  return { ctx, commands, writes };
}

const step = { node: 'k8s-02', version: 'v1.35.1', adminHost: 'k8s-01' };

describe('upgrade tasks (tasks/upgrade.ts, upgrade-node.ts): exact commands', function () {
  it('packages: unhold, install the exact version, hold; held again when the install fails, the error saying the node stays cordoned', async function () {
    const { ctx, commands } = fakeNode();
    await upgradePackages({ packages: ['kubelet', 'kubectl'], debianVersion: '1.35.1-1.1' }).static!.apply(ctx, []);
    expect(commands).to.deep.equal([
      'k8s-02: apt-mark unhold kubelet kubectl',
      'k8s-02: DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get install -y -q -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 --allow-downgrades kubelet=1.35.1-1.1 kubectl=1.35.1-1.1',
      'k8s-02: apt-mark hold kubelet kubectl',
    ]);
    const failing = fakeNode((_where, command) => (command.includes('apt-get install') ? result(100, '', 'E: Broken packages') : result(0)));
    let error: Error | undefined;
    await upgradePackages({ packages: ['kubelet', 'kubectl'], debianVersion: '1.35.1-1.1', cordonedNode: 'k8s-02' }).static!.apply(failing.ctx, []).catch((e: Error) => (error = e));
    expect(failing.commands.at(-1)).to.equal('k8s-02: apt-mark hold kubelet kubectl');
    expect(error?.message).to.equal(
      'apt-get install kubelet=1.35.1-1.1 kubectl=1.35.1-1.1 failed (exit 100):\nE: Broken packages\n' +
        'k8s-02 is left cordoned and drained: run the same command again to finish its upgrade (it is uncordoned once Ready at the new version), or `kubectl uncordon k8s-02` to put it back in service as it is',
    );
  });

  it('kubeadm upgrade plan, then upgrade apply -y, then the API server\'s /readyz', async function () {
    const { ctx, commands } = fakeNode((_where, command) => (command.includes('readyz') ? result(0, '200') : result(0)));
    await kubeadmUpgrade({ ...step, node: 'k8s-01', mode: 'apply', controlPlane: true, address: '10.0.0.1' }).static!.apply(ctx, []);
    expect(commands).to.deep.equal([
      'k8s-02: kubeadm upgrade plan v1.35.1',
      'k8s-02: kubeadm upgrade apply v1.35.1 -y',
      "k8s-02: curl -sk --max-time 5 -o /dev/null -w '%{http_code}' https://10.0.0.1:6443/readyz",
    ]);
    const worker = fakeNode();
    await kubeadmUpgrade({ ...step, mode: 'node', controlPlane: false }).static!.apply(worker.ctx, []);
    expect(worker.commands).to.deep.equal(['k8s-02: kubeadm upgrade node']);
  });

  it('cordon marks the node first; a failed drain uncordons it, removes the mark and says what to do', async function () {
    const cordon = fakeNode();
    await cordonForUpgrade(step).static!.apply(cordon.ctx, []);
    expect(cordon.writes).to.deep.equal([{ path: '/var/lib/capstan/upgrade-cordoned', content: 'v1.35.1\n' }]);
    expect(cordon.commands).to.deep.equal(['k8s-02: mkdir -p -m 0755 /var/lib/capstan', 'k8s-01: kubectl --kubeconfig=/etc/kubernetes/admin.conf cordon k8s-02']);
    const drain = fakeNode((_where, command) => (command.includes(' drain ') ? result(1, '', 'error: cannot evict pod as it would violate the pod\'s disruption budget.') : result(0)));
    let error: Error | undefined;
    await drainForUpgrade({ ...step, timeoutSeconds: 120 }).static!.apply(drain.ctx, []).catch((e: Error) => (error = e));
    expect(drain.commands).to.deep.equal([
      'k8s-01: kubectl --kubeconfig=/etc/kubernetes/admin.conf drain k8s-02 --ignore-daemonsets --delete-emptydir-data --timeout=120s',
      'k8s-01: kubectl --kubeconfig=/etc/kubernetes/admin.conf uncordon k8s-02',
      'k8s-02: rm -f -- /var/lib/capstan/upgrade-cordoned',
    ]);
    expect(error?.message).to.equal(
      "kubectl drain k8s-02 failed (exit 1):\nerror: cannot evict pod as it would violate the pod's disruption budget.\n" +
        'k8s-02 was uncordoned; its kubelet was not upgraded. Make the drain possible (a PodDisruptionBudget that allows an eviction, a controller for bare pods, or a longer drain_timeout), then run the same command again.',
    );
  });

  it('uncordons only a node the upgrade cordoned', async function () {
    const marked = fakeNode(undefined, { '/var/lib/capstan/upgrade-cordoned': 'v1.35.1\n' });
    expect(await uncordonAfterUpgrade(step).static!.check(marked.ctx)).to.deep.equal([{ subject: 'scheduling', current: 'cordoned for the upgrade', desired: 'schedulable' }]);
    await uncordonAfterUpgrade(step).static!.apply(marked.ctx, []);
    expect(marked.commands).to.deep.equal(['k8s-01: kubectl --kubeconfig=/etc/kubernetes/admin.conf uncordon k8s-02', 'k8s-02: rm -f -- /var/lib/capstan/upgrade-cordoned']);
    expect(await uncordonAfterUpgrade(step).static!.check(fakeNode().ctx)).to.deep.equal([]);
  });

  it('the playbook: kubernetes_version and the repository are checked before any host is contacted; the preflight plays (versions, then etcd health unless etcd_snapshot=false) come first', async function () {
    const single = await loadInventory('inventory/single.yaml');
    expect((await plays(upgradePlaybook, single, { kubernetes_version: '1.35' })).map((p) => [p.title, p.pattern, p.tasks])).to.deep.equal([
      ['upgrade preflight', 'control_plane:workers', ['upgrade-facts*']],
      ['etcd health', 'control_plane', ['etcd-health:local']],
    ]);
    expect((await plays(upgradePlaybook, single, { kubernetes_version: '1.35', etcd_snapshot: 'false' })).map((p) => p.title)).to.deep.equal(['upgrade preflight']);
    const rejected = async (extraVars: Record<string, unknown>) => (await plays(upgradePlaybook, single, extraVars).then(() => undefined, (e: Error) => e.message));
    expect(await rejected({ kubernetes_version: 'latest' })).to.equal('variable kubernetes_version (vars of k8s-01 with -e) must be a Kubernetes version like 1.35 or 1.35.1, got "latest"');
    expect(await rejected({ kubernetes_version: '1.35', kubernetes_repo_url: 'ftp://mirror' })).to.equal('variable kubernetes_repo_url (vars of k8s-01 with -e) must be an http(s) URL laid out like https://pkgs.k8s.io, got "ftp://mirror"');
    expect(await rejected({ kubernetes_version: '1.35', upgrade_worker_batch_size: '0' })).to.equal('variable upgrade_worker_batch_size (vars of k8s-01 with -e) must be a whole number from 1 to 1000, got "0"');
  });
});
