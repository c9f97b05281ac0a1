/**
 * Removes nodes from a kubeadm cluster (single-node, pi-cluster, stacked-ha), kubeadm's "Remove
 * the node" one node at a time, keeping etcd's quorum and the load balancers right:
 *
 *   refusals (no contact)  `-e node=NAME[,NAME…]` must name control-plane or worker hosts of the
 *                          inventory, and at least one control plane must stay; the operator types
 *                          the cluster's name on a terminal or passes -e confirm=<name>
 *   removal preflight      on the first control plane that stays (the next when it cannot): `kubectl get nodes`; when a control
 *                          plane goes, etcd's members and their health (etcdctl: Debian's etcd-client
 *                          must be installed there, as for etcd-backup.ts); each host to remove is reached (one that does not
 *                          answer is removed from the cluster all the same, its host not cleaned)
 *   plan                   each host's Node (by InternalIP, else name) and etcd member (by peer URL);
 *                          control planes whose member does not answer go first; refused (exit 1,
 *                          nothing changed) when any step would leave etcd's healthy members below
 *                          quorum; the plan is shown as a table
 *   per host, in order     drain (`--ignore-daemonsets --delete-emptydir-data --timeout`; a NotReady
 *                          node is not drained: its pods go with the Node); a control plane of
 *                          stacked-ha leaves haproxy's backends (on the balancer, or on every control
 *                          plane that stays) and stops its own haproxy and keepalived (the VIP moves);
 *                          on the host: admin.conf copies, `kubeadm reset -f` (a control plane's reset
 *                          removes its own etcd member) and what kubeadm leaves (CNI config and
 *                          interfaces, Kubernetes' iptables chains, IPVS); then, on the control plane
 *                          that stays: `etcdctl member remove` for a member still there (the member of
 *                          a host that could not be reached), `kubectl delete node`
 *
 * A second run changes nothing (each step reads the cluster first). A host that could not be reached
 * ends the run with exit 4 and a table saying what is left to do on it. Afterwards delete the host
 * from the inventory: a run of the topology's playbook with it still listed joins it again — which
 * is how a node is replaced (remove, then run the playbook with the new or reinstalled host).
 * `--check` shows the plan and every step as pending; nothing is drained.
 *
 * Variables: `node` (required), `cluster_name` (what must be typed; default "kubernetes"),
 * `kubeconfig_user` (as in the other playbooks), `drain_timeout` (300 s).
 *
 * @example capstan run playbooks/remove-node.ts -i inventory/home.yaml -e node=pi-03 --check
 * @example capstan run playbooks/remove-node.ts -i inventory/ha-vip.yaml -e node=node3 -e confirm=kubernetes
 */
import { InputError, PlaybookError, playbook, type Task } from '../runner/index.js';
import type { InventoryHost } from '../runner/inventory/index.js';
import {
  deleteClusterNode,
  drainForRemoval,
  ensureHaproxy,
  ensureService,
  kubeadmReset,
  readEtcdMembership,
  readKubeadmState,
  readNodes,
  removeAdminKubeconfigCopies,
  removeCniInterfaces,
  removeCniState,
  removeEtcdMember,
  removeKubernetesNetfilter,
  type EtcdMember,
  type NodeStatus,
} from '../tasks/index.js';
import { apiServers, haproxyPlacement } from './lib/ha-load-balancer.js';
import { formatRemovalRefusals, planRemoval, removalPlanTable, type NodeRemoval } from './lib/remove-plan.js';
import { clusterSource, hostIp, hostsOf, plannedHostname, requireHostIps, USER } from './vars.js';

/** The example inventory; any kubeadm topology's inventory will do. */
export const exampleInventory = new URL('../inventory/ha-vip.yaml', import.meta.url);

const HOST_LIST = /^[A-Za-z0-9._-]+(\s*,\s*[A-Za-z0-9._-]+)*$/;

export default playbook('remove-node', async (ctx) => {
  const { play, inventory } = ctx;
  if (!inventory.groups.has('control_plane')) {
    throw new InputError(`remove-node.ts removes nodes of kubeadm clusters, whose inventories have a control_plane group; ${inventory.source} has none`);
  }
  const vars = clusterSource(ctx);
  const requested = vars.string('node', '');
  if (!requested) throw new InputError(`variable node (${vars.where}) is required: the inventory host(s) to remove, -e node=NAME or -e node=NAME1,NAME2`);
  if (!HOST_LIST.test(requested)) throw new InputError(`variable node (${vars.where}) must be inventory host names separated by commas, got ${JSON.stringify(requested)}`);
  const names = [...new Set(requested.split(',').map((n) => n.trim()))];
  const controlPlanes = hostsOf(inventory, 'control_plane');
  const workers = hostsOf(inventory, 'workers');
  const members = new Set([...controlPlanes, ...workers].map((h) => h.name));
  for (const name of names) {
    if (!inventory.hosts.has(name)) throw new InputError(`node ${name}: ${inventory.source} has no host of that name (its nodes: ${[...members].join(', ')})`, { host: name });
    if (!members.has(name)) throw new InputError(`node ${name}: not in the control_plane or workers group of ${inventory.source}: only cluster nodes can be removed`, { host: name });
  }
  const staying = controlPlanes.filter((h) => !names.includes(h.name));
  if (staying.length === 0) {
    throw new InputError(
      `removing ${names.join(', ')} would remove every control plane of the cluster (${controlPlanes.map((h) => h.name).join(', ')}): refused, nothing was changed. ` +
        'To take the whole cluster down, use playbooks/reset.ts',
    );
  }
  requireHostIps(inventory, 'control_plane', 'workers');
  const haproxy = haproxyPlacement(inventory, vars);
  const clusterName = vars.string('cluster_name', 'kubernetes', /^[A-Za-z0-9._-]+$/, 'a cluster name (letters, digits, . _ -)');
  const loginUser = typeof vars.source.ansible_user === 'string' && USER.test(vars.source.ansible_user) ? vars.source.ansible_user : 'root';
  const kubeconfigUser = vars.string('kubeconfig_user', loginUser, USER, 'a user name');
  const drainTimeout = vars.integer('drain_timeout', 300, 10, 86_400);
  const targets = names.map((name) => inventory.hosts.get(name)!);

  await ctx.confirm({
    action: `remove ${names.join(', ')} from cluster "${clusterName}": drained, deleted from the cluster and etcd, and their hosts reset (certificates, kubelet state and the pod network's rules deleted)`,
    answer: clusterName,
  });

  const nodeList = readNodes();
  // etcd is read (etcdctl, Debian's etcd-client, on the control plane that stays) only when a member may go.
  const etcdMembers = targets.some((h) => controlPlanes.includes(h)) ? readEtcdMembership({ layout: 'kubeadm' }) : undefined;
  // Read through the first control plane that stays; when it cannot (down, or not a control plane any
  // more), through the next: removing a node must not depend on the first control plane being alive.
  let cluster: { adminHost: string; nodes: NodeStatus[]; etcd: EtcdMember[] } | undefined;
  for (const host of staying) {
    const read = await play('removal preflight: the cluster', host.name, etcdMembers ? [nodeList, etcdMembers] : [nodeList]);
    if (ctx.planning) break;
    const nodes = read.value(nodeList, host.name);
    const etcd = etcdMembers ? read.value(etcdMembers, host.name) : [];
    if (Array.isArray(nodes) && Array.isArray(etcd)) {
      cluster = { adminHost: host.name, nodes, etcd };
      break;
    }
  }
  const kubeadmState = readKubeadmState();
  const reached = await play('removal preflight: the hosts to remove', names.join(','), [kubeadmState]);
  if (ctx.planning) return;
  if (cluster === undefined) {
    throw new PlaybookError(`the cluster could not be read on any control plane that stays (${staying.map((h) => h.name).join(', ')}; see their tasks above): nothing was changed`);
  }
  const { adminHost, nodes, etcd } = cluster;
  const reachable = (host: InventoryHost) => reached.hosts.get(host.name)?.status === 'ok';
  const plan = planRemoval({
    targets: targets.map((host) => ({
      host: host.name,
      address: hostIp(host),
      controlPlane: controlPlanes.includes(host),
      plannedName: plannedHostname(host) ?? host.name,
      reachable: reachable(host),
    })),
    nodes,
    members: etcd,
    controlPlanes: controlPlanes.map((h) => ({ host: h.name, address: hostIp(h) })),
  });
  if (!plan.ok) throw new InputError(formatRemovalRefusals(plan.refusals));
  ctx.report(removalPlanTable(plan.removals, haproxy !== undefined));

  const gone = new Set<string>();
  const unreachable = new Set(plan.removals.filter((r) => !r.reachable).map((r) => r.host));
  for (const removal of plan.removals) {
    await removeOne(removal);
    gone.add(removal.host);
  }

  const uncleaned = plan.removals.filter((r) => !r.reachable);
  if (uncleaned.length && !ctx.checkMode) {
    ctx.report({
      title: 'Removed from the cluster, hosts NOT cleaned (they did not answer)',
      columns: ['HOST', 'NODE', 'TO DO ON THE HOST'],
      rows: uncleaned.map((r) => [r.host, r.nodeName, `when it is back: capstan run playbooks/reset.ts -i ${inventory.source} -l ${r.host} (or reinstall it); stop its kubelet first, or it registers ${r.nodeName} again`]),
    });
  }

  /** One host's steps, in kubeadm's order; every play stops the run on a failure (nothing half-removed goes unsaid). */
  async function removeOne(r: NodeRemoval): Promise<void> {
    const fatal = { anyErrorsFatal: true };
    if (r.drain) await play(`remove ${r.host}: drain`, adminHost, [drainForRemoval({ node: r.nodeName, timeoutSeconds: drainTimeout })], fatal);
    if (r.controlPlane && haproxy) {
      // The API servers that stay, rendered where haproxy runs (the VIP variant: on the control planes still in the cluster).
      // Control planes to remove that did not answer leave too: they cannot serve, nor take a new configuration.
      const servers = apiServers(controlPlanes.filter((h) => h.name !== r.host && !gone.has(h.name) && !unreachable.has(h.name)));
      const where = haproxy.group === 'balancer' ? 'balancer' : servers.map((s) => s.name).join(',');
      await play(`remove ${r.host}: load balancers without it`, where, ensureHaproxy(haproxy.params(servers)), fatal);
    }
    if (r.reachable) {
      const tasks: Task<unknown>[] = [
        ...(r.controlPlane && haproxy?.variant === 'vip'
          ? [ensureService('keepalived', { running: false, enabled: false }), ensureService('haproxy', { running: false, enabled: false })]
          : []),
        ...(r.controlPlane ? [removeAdminKubeconfigCopies({ users: [...new Set([kubeconfigUser, 'root'])] })] : []),
        kubeadmReset(),
        removeCniState(),
        removeKubernetesNetfilter(),
        removeCniInterfaces(),
      ];
      await play(`remove ${r.host}: reset the host`, r.host, tasks, fatal);
    }
    const after = r.reachable ? `kubeadm reset on ${r.host}` : undefined;
    const clusterSide: Task<unknown>[] = [
      ...(r.member ? [removeEtcdMember({ node: r.nodeName, peerUrl: r.member.peerUrl, ...(after ? { after } : {}) })] : []),
      ...(r.node ? [deleteClusterNode({ node: r.nodeName, ...(after ? { after } : {}) })] : []),
    ];
    if (clusterSide.length) await play(`remove ${r.host}: from the cluster`, adminHost, clusterSide, fatal);
  }
});
