/**
 * Upgrades a kubeadm cluster (single-node, pi-cluster, stacked-ha) by one minor, or to a newer
 * patch, the way kubeadm's "Upgrading kubeadm clusters" does, one node at a time:
 *
 *   upgrade preflight  every node's kubeadm and running kubelet version, Ready state and cordon,
 *                      each control plane's API server version and /readyz, the kubeadm versions
 *                      in the target minor's repository; the planner (playbooks/lib/upgrade-plan.ts)
 *                      refuses a downgrade, a skipped minor, a NotReady node, an API server that
 *                      is not ready, an unhealthy etcd member (`etcdctl endpoint health` on each
 *                      control plane, with etcd_snapshot) or a target the repository lacks (exit 1, nothing changed), or
 *                      prints the plan, node by node
 *   etcd snapshot      when anything is to be upgraded: `etcdctl snapshot save` on the first control
 *                      plane, copied to `etcd_backup_dir` here (0600, sha256 beside it; see
 *                      playbooks/etcd-backup.ts); a failed snapshot stops the run before any change
 *   repository         the target minor's pkgs.k8s.io repository on every node (the key is kept)
 *   per node, in order the first control plane: kubeadm package (unhold, install the exact version,
 *                      hold), `kubeadm upgrade plan` (shown with -v), `kubeadm upgrade apply vX.Y.Z -y`,
 *                      /readyz; the other control planes and the workers: kubeadm package,
 *                      `kubeadm upgrade node`; then on each: cordon, drain, kubelet + kubectl
 *                      packages, daemon-reload and restart the kubelet, Ready at the new version,
 *                      uncordon. Workers go `upgrade_worker_batch_size` at a time (default 1).
 *
 * A node already at the target is untouched, so a second run changes nothing, and a run that
 * stopped half-way finishes on the next (a node it left cordoned is uncordoned once upgraded).
 * `--check` prints the same plan and reports every step as a pending change; nothing is drained.
 *
 * Variables: `kubernetes_version` (the target: `1.35` for the newest 1.35 patch the repository
 * has, or `1.35.1`), `kubernetes_repo_url` and `kubernetes_repo_key_fingerprint` (as the topology
 * playbooks), `upgrade_worker_batch_size` (1), `drain_timeout` (300 s), `nodes_ready_timeout` (300 s),
 * `etcd_snapshot` (true; the first control plane needs `etcdctl`, Debian's etcd-client),
 * `etcd_backup_dir` (`etcd-backups`, relative to the current directory).
 *
 * @example capstan run playbooks/upgrade.ts -i inventory/home.yaml -e kubernetes_version=1.35 --check
 * @example capstan run playbooks/upgrade.ts --lab -e kubernetes_version=1.35
 */
import { InputError, PlaybookError, playbook, type HostView, type PlaybookContext, type Task } from '../runner/index.js';
import {
  cordonForUpgrade,
  drainForUpgrade,
  ensureAptSource,
  etcdMemberHealth,
  etcdSnapshot,
  kubeadmUpgrade,
  kubernetesMinor,
  kubernetesRepo,
  kubernetesRepoUrl,
  nodeReadyAtVersion,
  restartKubeletForUpgrade,
  uncordonAfterUpgrade,
  upgradeFacts,
  upgradePackages,
  upstreamVersion,
  type UpgradeHostFacts,
} from '../tasks/index.js';
import { planUpgrade, type NodePlan, type NodeVersions } from './lib/upgrade-plan.js';
import { formatRefusals, upgradePlanTable } from './lib/upgrade-report.js';
import { resolveTarget } from './lib/upgrade-target.js';
import { clusterSource, groupsPattern, hostIp, hostsOf, readKubernetesRepository, requireHostIps } from './vars.js';

/** The example inventory; `capstan run playbooks/upgrade.ts --lab` upgrades lab hosts shaped like it. */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

export default playbook('upgrade', async (ctx) => {
  const { play, inventory } = ctx;
  if (!inventory.groups.has('control_plane')) {
    throw new InputError(`upgrade.ts upgrades kubeadm clusters, whose inventories have a control_plane group; ${inventory.source} has none`);
  }
  const vars = clusterSource(ctx);
  const requested = vars.string('kubernetes_version', '');
  if (!requested) throw new InputError(`variable kubernetes_version (${vars.where}) is required: the version to upgrade to, like 1.35 or 1.35.1`);
  let minor: string;
  try {
    minor = kubernetesMinor(requested);
  } catch {
    throw new InputError(`variable kubernetes_version (${vars.where}) must be a Kubernetes version like 1.35 or 1.35.1, got ${JSON.stringify(requested)}`);
  }
  const repository = readKubernetesRepository(vars);
  const workerBatchSize = vars.integer('upgrade_worker_batch_size', 1, 1, 1000);
  const drainTimeout = vars.integer('drain_timeout', 300, 10, 86_400);
  const readyTimeout = vars.integer('nodes_ready_timeout', 300, 10, 86_400);
  const snapshotFirst = vars.bool('etcd_snapshot', true);
  const backupDir = vars.string('etcd_backup_dir', 'etcd-backups', /^[^\0]+$/, 'a directory on this machine');
  const controlPlanes = hostsOf(inventory, 'control_plane').map((h) => h.name);
  const workers = hostsOf(inventory, 'workers').map((h) => h.name);
  const addresses = requireHostIps(inventory, 'control_plane');
  const first = controlPlanes[0]!;
  const nodes = groupsPattern(inventory, 'control_plane', 'workers');
  const repositoryUrl = kubernetesRepoUrl(minor, repository.baseUrl);

  const facts = upgradeFacts({
    apiServerAddress: (host: HostView) => (controlPlanes.includes(host.name) ? hostIp(host) : undefined),
    repositoryUrl: (host: HostView) => (host.name === first ? repositoryUrl : undefined),
  });
  const preflightPlay = await play('upgrade preflight', nodes, [facts]);
  // etcd's health needs etcdctl on the control planes, as the snapshot does: read with it.
  const etcdProbe = snapshotFirst ? etcdMemberHealth({ layout: 'kubeadm' }) : undefined;
  const etcdPlay = etcdProbe ? await play('etcd health', 'control_plane', [etcdProbe]) : undefined;
  if (ctx.planning) return;

  const read = new Map<string, UpgradeHostFacts>();
  for (const name of [...controlPlanes, ...workers]) {
    const value = preflightPlay.value(facts, name);
    if (!value || typeof value !== 'object' || !('kubeadm' in value)) {
      throw new PlaybookError(`upgrade preflight could not read ${name} (see its task above): nothing was changed`);
    }
    read.set(name, value);
  }
  const cluster = read.get(first)!.cluster!;
  const versions = 'versions' in cluster.repository ? cluster.repository.versions : [];
  const { target, debian } = resolveTarget(requested, versions);
  const nodeVersions: NodeVersions[] = [...controlPlanes, ...workers].map((name) => {
    const host = read.get(name)!;
    const node = cluster.nodes.find((candidate) => candidate.name === host.node);
    if (!node) throw new PlaybookError(`${name} is not a node of the cluster (the API server has no node ${host.node}; it has ${cluster.nodes.map((n) => n.name).join(', ')}): nothing was changed`);
    return {
      name,
      controlPlane: controlPlanes.includes(name),
      kubelet: node.kubeletVersion,
      kubeadm: host.kubeadm || 'none',
      ready: node.ready,
      ...(host.apiServer ? { apiServer: host.apiServer.version ?? 'no answer', apiServerReady: host.apiServer.readyz.ok } : {}),
      ...(host.cordonedForUpgrade ? { cordonedForUpgrade: true } : {}),
      ...(etcdProbe && controlPlanes.includes(name) ? { etcdHealthy: etcdPlay!.value(etcdProbe, name) === true } : {}),
    };
  });
  const plan = planUpgrade({ nodes: nodeVersions, target, available: versions.map(upstreamVersion), workerBatchSize });
  if (!plan.ok) {
    const refusals = plan.refusals.map((refusal) =>
      refusal.rule === 'not-in-repository' && 'error' in cluster.repository ? { ...refusal, message: `${refusal.message}: ${cluster.repository.url} answered ${cluster.repository.error}` } : refusal,
    );
    throw new InputError(formatRefusals(target, refusals));
  }
  ctx.report(upgradePlanTable(plan.target, debian!, plan.batches, nodeVersions, workerBatchSize));

  // Before the first change, and only when there is one: the cluster's state to go back to
  // (playbooks/etcd-restore.ts) if the upgrade goes wrong. A failed snapshot stops the run here.
  if (snapshotFirst && plan.batches.length) await play('etcd snapshot', first, [etcdSnapshot({ dir: backupDir, layout: 'kubeadm' })], { anyErrorsFatal: true });
  await play(`kubernetes repository ${minor}`, nodes, ensureAptSource(kubernetesRepo(minor, repository)));
  const nodeName = (host: HostView) => read.get(host.name)!.node;
  const applyOn = plan.batches.flat().find((p) => p.actions.includes('kubeadm-upgrade-apply'))?.node;
  for (const batch of plan.batches) {
    const steps = upgradeSteps(ctx, batch, {
      target,
      debian: debian!,
      adminHost: first,
      nodeName,
      address: (host) => addresses.get(host.name)!,
      drainTimeout,
      readyTimeout,
      ...(applyOn ? { after: `kubeadm upgrade apply ${target} on ${applyOn}` } : {}),
    });
    const names = batch.map((p) => p.node);
    await play(`upgrade ${names.join(', ')}`, names.join(':'), steps, { anyErrorsFatal: true });
  }
});

interface StepContext {
  target: string;
  debian: string;
  adminHost: string;
  nodeName: (host: HostView) => string;
  address: (host: HostView) => string;
  drainTimeout: number;
  readyTimeout: number;
  /** The first control plane's `upgrade apply`, which every later node waits for in --check. */
  after?: string;
}

/** A batch's tasks: the planned actions in order, each on the hosts whose plan has it (pure). */
function upgradeSteps(ctx: Pick<PlaybookContext, 'checkMode'>, batch: readonly NodePlan[], s: StepContext): Task<unknown>[] {
  const planOf = new Map(batch.map((p) => [p.node, p]));
  const has = (action: NodePlan['actions'][number]) => ({ when: (host: HostView) => planOf.get(host.name)?.actions.includes(action) ?? false });
  const after = (host: HostView) => (ctx.checkMode && s.after && !planOf.get(host.name)?.actions.includes('kubeadm-upgrade-apply') ? s.after : undefined);
  const step = { node: s.nodeName, version: s.target, adminHost: s.adminHost, after };
  const all = new Set(batch.flatMap((p) => p.actions));
  const tasks: Task<unknown>[] = [];
  if (all.has('kubeadm-package')) tasks.push(upgradePackages({ packages: ['kubeadm'], debianVersion: s.debian, after }, has('kubeadm-package')));
  if (all.has('kubeadm-upgrade-apply')) {
    tasks.push(kubeadmUpgrade({ ...step, mode: 'apply', controlPlane: true, address: s.address, readyTimeoutSeconds: s.readyTimeout }, has('kubeadm-upgrade-apply')));
  }
  if (all.has('kubeadm-upgrade-node')) {
    tasks.push(
      kubeadmUpgrade(
        { ...step, mode: 'node', controlPlane: (host: HostView) => planOf.get(host.name)?.controlPlane ?? false, address: (host: HostView) => (planOf.get(host.name)?.controlPlane ? s.address(host) : undefined), readyTimeoutSeconds: s.readyTimeout },
        has('kubeadm-upgrade-node'),
      ),
    );
  }
  if (all.has('drain')) {
    tasks.push(cordonForUpgrade(step, has('drain')));
    tasks.push(drainForUpgrade({ ...step, timeoutSeconds: s.drainTimeout }, has('drain')));
  }
  if (all.has('kubelet-kubectl-packages')) {
    tasks.push(upgradePackages({ packages: ['kubelet', 'kubectl'], debianVersion: s.debian, cordonedNode: s.nodeName, after }, has('kubelet-kubectl-packages')));
  }
  if (all.has('restart-kubelet')) tasks.push(restartKubeletForUpgrade({ ...step, timeoutSeconds: s.readyTimeout }, has('restart-kubelet')));
  if (all.has('wait-ready')) tasks.push(nodeReadyAtVersion({ ...step, timeoutSeconds: s.readyTimeout }, has('wait-ready')));
  if (all.has('uncordon')) tasks.push(uncordonAfterUpgrade(step, has('uncordon')));
  return tasks;
}
