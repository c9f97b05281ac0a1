/**
 * The pure half of playbooks/remove-node.ts: which cluster node and etcd member each host to remove
 * is, in which order they go, and whether etcd keeps its quorum through every step. No host is
 * contacted here.
 */
import type { ReportTable } from '../../runner/index.js';
import { quorumAfterRemoval, urlHost, type EtcdMember, type NodeStatus } from '../../tasks/index.js';

/** A host named in `-e node=…`, as the inventory has it. */
export interface RemovalTarget {
  host: string;
  address: string;
  controlPlane: boolean;
  /** The node name it registers as when the cluster's list cannot say (its `hostname` var, else the host's name). */
  plannedName: string;
  /** Whether the host answered the removal's first play. */
  reachable: boolean;
}

/** One host's removal, as planned. */
export interface NodeRemoval {
  host: string;
  controlPlane: boolean;
  reachable: boolean;
  /** Its Node in the cluster, or null when the cluster has none (removed already, or never joined). */
  node: NodeStatus | null;
  /** The name the steps use: the Node's, else the planned one. */
  nodeName: string;
  /** Its etcd member, or null. */
  member: EtcdMember | null;
  drain: boolean;
}

export interface RemovalRefusal {
  rule: 'etcd-quorum';
  hosts: string[];
  message: string;
}

export type RemovalPlan = { ok: true; removals: NodeRemoval[] } | { ok: false; refusals: RemovalRefusal[] };

/**
 * Matches each target to its Node (by InternalIP, else by name) and etcd member (by peer URL host,
 * else by name), orders the removals — control planes whose member does not answer first, as etcd
 * could refuse removing a healthy member while a dead one still counts — and checks etcd's rule at
 * every step: the healthy members left must be a majority of the members left.
 */
export function planRemoval(input: {
  targets: readonly RemovalTarget[];
  nodes: readonly NodeStatus[];
  members: readonly EtcdMember[];
  /** The inventory's control planes, to name the host of a member that does not answer. */
  controlPlanes?: readonly { host: string; address: string }[];
}): RemovalPlan {
  const removals = input.targets.map((t): NodeRemoval => {
    const node = input.nodes.find((n) => n.internalIp === t.address) ?? input.nodes.find((n) => n.name === t.plannedName) ?? null;
    const nodeName = node?.name ?? t.plannedName;
    const member = t.controlPlane ? (input.members.find((m) => urlHost(m.peerUrl) === t.address) ?? input.members.find((m) => m.name !== '' && m.name === nodeName) ?? null) : null;
    // A host that did not answer is not drained even while its Node still says Ready (the 40 s before
    // the node controller notices): its pods could not confirm their end and the drain would wait out
    // its timeout. They are deleted with the Node.
    return { host: t.host, controlPlane: t.controlPlane, reachable: t.reachable, node, nodeName, member, drain: t.reachable && node !== null && node.ready.startsWith('Ready') };
  });
  const deadFirst = (r: NodeRemoval) => (r.member && !r.member.healthy ? 0 : 1);
  const ordered = removals.map((r, i) => [r, i] as const).sort(([a, i], [b, j]) => deadFirst(a) - deadFirst(b) || i - j).map(([r]) => r);

  const removed = new Set<string>();
  for (const removal of ordered) {
    if (!removal.member) continue;
    removed.add(removal.member.id);
    const after = quorumAfterRemoval(input.members, removed);
    if (!after.ok) {
      const unhealthy = input.members
        .filter((m) => !m.healthy && !removed.has(m.id))
        .map((m) => ({ member: m.name || m.id, host: input.controlPlanes?.find((c) => c.address === urlHost(m.peerUrl))?.host }));
      const hosts = unhealthy.flatMap((u) => (u.host ? [u.host] : []));
      return {
        ok: false,
        refusals: [
          {
            rule: 'etcd-quorum',
            hosts: [removal.host],
            message:
              `removing ${removal.host} would leave etcd ${after.healthyLeft} healthy of ${after.left} members, below its quorum of ${after.quorum}: ` +
              `the cluster would stop accepting writes` +
              (unhealthy.length
                ? `. Not answering now: ${unhealthy.map((u) => (u.host ? `${u.member} (host ${u.host})` : `${u.member} (no inventory host)`)).join(', ')} — bring them back, or remove them first` +
                  (hosts.length ? ` (-e node=${hosts.join(',')})` : '')
                : ''),
          },
        ],
      };
    }
  }
  return { ok: true, removals: ordered };
}

/** The refusals, for the error the run stops with (nothing was changed). */
export function formatRemovalRefusals(refusals: readonly RemovalRefusal[]): string {
  return `remove-node refused (nothing was changed):\n${refusals.map((r) => `  [${r.rule}] ${r.message}`).join('\n')}`;
}

/** What will happen to each host, in order, as the steps the playbook runs (pure). */
export function removalSteps(r: NodeRemoval, loadBalanced: boolean): string[] {
  const balancers = r.controlPlane && loadBalanced ? ['load balancers without it'] : [];
  const clusterSide = [...(r.member ? ['etcd member remove'] : []), ...(r.node ? ['delete node'] : [])];
  if (!r.reachable) return ['host unreachable: not drained, not cleaned', ...balancers, ...clusterSide];
  return [...(r.drain ? ['drain'] : r.node ? [`not drained (${r.node.ready.split(',')[0]})`] : []), ...balancers, 'kubeadm reset + cleanup', ...clusterSide];
}

/** The plan as a table: HOST NODE ROLE CLUSTER ETCD STEPS (pure). */
export function removalPlanTable(removals: readonly NodeRemoval[], loadBalanced: boolean): ReportTable {
  return {
    title: 'Removal plan, in order',
    columns: ['HOST', 'NODE', 'ROLE', 'IN CLUSTER', 'ETCD MEMBER', 'STEPS'],
    rows: removals.map((r) => [
      r.host,
      r.nodeName,
      r.controlPlane ? 'control-plane' : 'worker',
      r.node ? r.node.ready : 'no (removed already)',
      r.member ? `${r.member.id} (${r.member.healthy ? 'healthy' : 'not answering'})` : r.controlPlane ? 'none' : '-',
      removalSteps(r, loadBalanced).join(', '),
    ]),
  };
}
