/**
 * The upgrade planner: from every node's versions and Ready state and a target version, the ordered
 * per-node plan of kubeadm's upgrade procedure, or the refusals that stop it before any change.
 * Pure: it contacts no host (the upgrade playbook reads the facts, then asks this what to do).
 *
 * The procedure (kubeadm's "Upgrading kubeadm clusters" and the version skew policy):
 * 1. the first control plane: kubeadm package, `kubeadm upgrade apply <target>`;
 * 2. the other control planes, one at a time: kubeadm package, `kubeadm upgrade node`;
 * 3. every node, control planes first, then workers in batches: kubeadm package and
 *    `kubeadm upgrade node` (workers), cordon and drain, kubelet and kubectl packages, restart the
 *    kubelet, wait for Ready, uncordon.
 * A node whose kubeadm, kubelet (and API server) are at the target has nothing to do, so a second
 * run plans nothing.
 *
 * Refusals, all of them at once, each naming the nodes and the rule:
 * - `invalid-version`: the target is not a released version (1.35.1);
 * - `not-in-repository`: the package repository does not carry the target;
 * - `downgrade`: a node has a component newer than the target;
 * - `skipped-minor`: a node has a component more than one minor below the target (kubeadm upgrades
 *   one minor at a time; a kubelet is upgraded through every minor with its node);
 * - `node-not-ready`: a node is not Ready (draining and waiting for it would not end well);
 * - `api-server-not-ready`: a control plane's API server does not answer /readyz with 200;
 * - `etcd-unhealthy`: a control plane's stacked etcd member does not answer endpoint health (the
 *   message says when quorum is lost): kubeadm upgrade apply would refuse it half-way.
 * A node at the target that an interrupted run left cordoned is planned an uncordon only.
 */
import semver from 'semver';
import { releasedVersion } from '../../tasks/kubernetes-version.js';

/** What the playbook read from one node. Versions as the tools print them ("v1.34.1" or "1.34.1"). */
export interface NodeVersions {
  name: string;
  controlPlane: boolean;
  kubelet: string;
  kubeadm: string;
  /** The API server this node runs (control planes only). */
  apiServer?: string;
  ready: boolean;
  /** Control planes: its API server answers /readyz with 200 (unset: not read). */
  apiServerReady?: boolean;
  /** An earlier upgrade run cordoned it and did not uncordon it (it stopped half-way). */
  cordonedForUpgrade?: boolean;
  /** Whether this control plane's stacked etcd member answers `etcdctl endpoint health` (undefined: not read). */
  etcdHealthy?: boolean;
}

export interface UpgradeRequest {
  /** Control planes first in this order (the first one runs `upgrade apply`), then workers in this order. */
  nodes: readonly NodeVersions[];
  /** The version to reach, "1.35.1" or "v1.35.1". */
  target: string;
  /** The versions the package repository carries (from `apt-cache madison kubeadm`). */
  available: readonly string[];
  /** How many workers are drained and upgraded at once (default 1). */
  workerBatchSize?: number;
}

export type RefusalRule = 'invalid-version' | 'not-in-repository' | 'downgrade' | 'skipped-minor' | 'node-not-ready' | 'api-server-not-ready' | 'etcd-unhealthy';

export interface Refusal {
  rule: RefusalRule;
  nodes: string[];
  message: string;
}

/** One thing done to a node, in order. */
export type UpgradeAction =
  | 'kubeadm-package'
  | 'kubeadm-upgrade-apply'
  | 'kubeadm-upgrade-node'
  | 'drain'
  | 'kubelet-kubectl-packages'
  | 'restart-kubelet'
  | 'wait-ready'
  | 'uncordon';

export interface NodePlan {
  node: string;
  controlPlane: boolean;
  actions: UpgradeAction[];
}

export type UpgradePlan =
  | { ok: true; target: string; /** In order; a batch's nodes may go together. */ batches: NodePlan[][] }
  | { ok: false; refusals: Refusal[] };


function versionsOf(node: NodeVersions): { component: string; version: string }[] {
  return [
    { component: 'kubelet', version: node.kubelet },
    { component: 'kubeadm', version: node.kubeadm },
    ...(node.controlPlane && node.apiServer ? [{ component: 'kube-apiserver', version: node.apiServer }] : []),
  ];
}

/** Every rule the request breaks (pure). */
export function upgradeRefusals(request: UpgradeRequest): Refusal[] {
  const target = releasedVersion(request.target);
  if (!target) {
    return [{ rule: 'invalid-version', nodes: [], message: `${JSON.stringify(request.target)} is not a released Kubernetes version (like 1.35.1)` }];
  }
  const refusals: Refusal[] = [];
  const wanted = `v${target.version}`;
  if (!request.available.some((version) => releasedVersion(version)?.version === target.version)) {
    const carried = request.available.filter((version) => releasedVersion(version)?.minor === target.minor).map((version) => `v${releasedVersion(version)!.version}`);
    refusals.push({
      rule: 'not-in-repository',
      nodes: [],
      message: `${wanted} is not in the package repository${carried.length > 0 ? ` (it carries ${carried.join(', ')})` : ''}`,
    });
  }
  const offenders = (test: (version: semver.SemVer) => boolean) =>
    request.nodes
      .map((node) => ({ node, bad: versionsOf(node).filter(({ version }) => { const parsed = releasedVersion(version); return parsed !== null && test(parsed); }) }))
      .filter(({ bad }) => bad.length > 0);
  const named = (list: ReturnType<typeof offenders>) => list.map(({ node, bad }) => `${node.name} (${bad.map((b) => `${b.component} ${b.version}`).join(', ')})`).join(', ');
  const newer = offenders((version) => semver.gt(version, target));
  if (newer.length > 0) {
    refusals.push({ rule: 'downgrade', nodes: newer.map(({ node }) => node.name), message: `${wanted} would be a downgrade on ${named(newer)}` });
  }
  const behind = offenders((version) => version.major !== target.major || version.minor < target.minor - 1);
  if (behind.length > 0) {
    refusals.push({
      rule: 'skipped-minor',
      nodes: behind.map(({ node }) => node.name),
      message: `${wanted} skips a minor on ${named(behind)}: upgrade one minor at a time (to v${target.major}.${target.minor - 1} first)`,
    });
  }
  const unparsable = request.nodes.filter((node) => versionsOf(node).some(({ version }) => releasedVersion(version) === null));
  if (unparsable.length > 0) {
    refusals.push({
      rule: 'invalid-version',
      nodes: unparsable.map((node) => node.name),
      message: `unreadable versions on ${unparsable.map((node) => `${node.name} (${versionsOf(node).filter(({ version }) => releasedVersion(version) === null).map((v) => `${v.component} ${JSON.stringify(v.version)}`).join(', ')})`).join(', ')}`,
    });
  }
  const notReady = request.nodes.filter((node) => !node.ready).map((node) => node.name);
  if (notReady.length > 0) refusals.push({ rule: 'node-not-ready', nodes: notReady, message: `not Ready: ${notReady.join(', ')}` });
  const unready = request.nodes.filter((node) => node.controlPlane && node.apiServerReady === false).map((node) => node.name);
  if (unready.length > 0) refusals.push({ rule: 'api-server-not-ready', nodes: unready, message: `the API server does not answer /readyz with 200 on ${unready.join(', ')}` });
  // kubeadm upgrade apply refuses an etcd cluster with an unhealthy member too; said here, before any change.
  const members = request.nodes.filter((node) => node.controlPlane && node.etcdHealthy !== undefined);
  const sick = members.filter((node) => node.etcdHealthy === false).map((node) => node.name);
  if (sick.length > 0) {
    const quorum = Math.floor(members.length / 2) + 1;
    const lost = members.length - sick.length < quorum ? `: etcd has lost quorum (${members.length - sick.length} of ${members.length} members healthy, ${quorum} needed)` : '';
    refusals.push({ rule: 'etcd-unhealthy', nodes: sick, message: `the etcd member does not answer \`etcdctl endpoint health\` (or etcdctl is missing) on ${sick.join(', ')}${lost}` });
  }
  return refusals;
}

/** The ordered plan for the request, or its refusals (pure). */
export function planUpgrade(request: UpgradeRequest): UpgradePlan {
  const batchSize = request.workerBatchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`the worker batch size must be a whole number ≥ 1, not ${batchSize}`);
  const refusals = upgradeRefusals(request);
  if (refusals.length > 0) return { ok: false, refusals };
  const target = releasedVersion(request.target)!;
  const at = (version: string | undefined) => version !== undefined && releasedVersion(version)?.version === target.version;
  const controlPlanes = request.nodes.filter((node) => node.controlPlane);
  const workers = request.nodes.filter((node) => !node.controlPlane);
  // `upgrade apply` once, on the first control plane whose API server is not there yet, unless one already is.
  const applied = controlPlanes.some((node) => at(node.apiServer));
  const applyOn = applied ? undefined : controlPlanes[0]?.name;
  const kubeletSteps = (node: NodeVersions): UpgradeAction[] =>
    at(node.kubelet) ? (node.cordonedForUpgrade ? ['uncordon'] : []) : ['drain', 'kubelet-kubectl-packages', 'restart-kubelet', 'wait-ready', 'uncordon'];
  const planOf = (node: NodeVersions): NodePlan => {
    const actions: UpgradeAction[] = at(node.kubeadm) ? [] : ['kubeadm-package'];
    if (node.controlPlane) {
      if (node.name === applyOn) actions.push('kubeadm-upgrade-apply');
      else if (!at(node.apiServer)) actions.push('kubeadm-upgrade-node');
    } else if (!at(node.kubelet)) {
      actions.push('kubeadm-upgrade-node');
    }
    actions.push(...kubeletSteps(node));
    return { node: node.name, controlPlane: node.controlPlane, actions };
  };
  const batches: NodePlan[][] = controlPlanes.map((node) => [planOf(node)]);
  for (let index = 0; index < workers.length; index += batchSize) batches.push(workers.slice(index, index + batchSize).map(planOf));
  return { ok: true, target: `v${target.version}`, batches: batches.map((batch) => batch.filter((plan) => plan.actions.length > 0)).filter((batch) => batch.length > 0) };
}
