/**
 * A kubeadm cluster's state at a glance (single-node, pi-cluster, stacked-ha), read-only: it never
 * changes a host, so `--check` shows the same tables and every run is changed=0.
 *
 *   read control planes  on every control plane: `kubectl get nodes -o json` and `kubeadm token
 *                        list` with /etc/kubernetes/admin.conf; etcd's members and their health
 *                        (`etcdctl member list`, `endpoint health --cluster`; skipped, and said, where
 *                        etcdctl is not installed); the API server's /readyz (curl with the cluster
 *                        CA at the manifest's advertise address); with stacked-ha's vip_address,
 *                        whether the host holds the VIP (`ip -o addr`) and `systemctl is-active
 *                        haproxy` (the first control plane that answers is shown)
 *   read balancer        stacked-ha's balancer group (seed 002): haproxy's state there
 *   read certificates    every node, as playbooks/certs.ts reads them
 *   (tables)             Nodes (NAME ROLES VERSION READY INTERNAL-IP), Control planes (READYZ, VIP,
 *                        HAPROXY), etcd members (NAME ID PEER URL CLIENT URL STATUS), Certificates,
 *                        Join tokens (the token id only: a token's secret is masked on the host and
 *                        never leaves it) — data in --json (`report` events)
 *
 * Not yet shown: haproxy's per-backend state.
 *
 * @example capstan run playbooks/status.ts -i inventory/home.yaml
 * @example capstan run playbooks/status.ts -i inventory/ha-vip.yaml --json
 */
import { InputError, Pending, playbook, type PlayResult, type Task } from '../runner/index.js';
import {
  certificateTable,
  controlPlaneTable,
  etcdMemberTable,
  readEtcdMembership,
  joinTokenTable,
  nodeTable,
  readCertificates,
  readControlPlaneStatus,
  readJoinTokens,
  readNodes,
  type ControlPlaneStatus,
} from '../tasks/index.js';
import { clusterSource, hostsOf } from './vars.js';

/** The example inventory this playbook is written for (any kubeadm topology's inventory will do). */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

/** Each host's value of `task`, in `hosts` order, skipping hosts that produced none (failed, unreachable). */
function valuesOf<R>(result: PlayResult, task: Task<R>, hosts: readonly string[]): R[] {
  return hosts.flatMap((host) => {
    const value = result.value(task, host);
    return value === undefined || value instanceof Pending ? [] : [value as R];
  });
}

export default playbook('status', async (ctx) => {
  const { play, inventory } = ctx;
  if (!inventory.groups.has('control_plane')) {
    throw new InputError(`status.ts reads kubeadm clusters, whose inventories have a control_plane group; ${inventory.source} has none (the hard way's cluster: kubectl with its admin kubeconfig)`);
  }
  const vars = clusterSource(ctx);
  // stacked-ha's two load-balancing variants (playbooks/lib/ha-load-balancer.ts): keepalived + haproxy on the control planes, or one balancer host.
  const vip = vars.has('vip_address') ? vars.ip('vip_address') : undefined;
  const balancers = hostsOf(inventory, 'balancer').map((h) => h.name);
  const controlPlanes = ctx.selectHosts('control_plane').map((h) => h.name);
  const workers = inventory.groups.has('workers') ? ctx.selectHosts('workers').map((h) => h.name) : [];
  if (controlPlanes.length === 0) throw new InputError('no control plane is selected (check --limit): status reads the cluster through one');

  const nodes = readNodes();
  const tokens = readJoinTokens();
  const serving = readControlPlaneStatus({ readyz: true, ...(vip ? { vip, haproxy: true } : {}) });
  const etcd = readEtcdMembership({ layout: 'kubeadm', etcdctlOptional: true });
  const onControlPlanes = await play('read control planes', controlPlanes.join(','), [nodes, serving, etcd, tokens]);
  const servingStates: ControlPlaneStatus[] = valuesOf(onControlPlanes, serving, controlPlanes);
  if (balancers.length > 0) {
    const balancer = readControlPlaneStatus({ readyz: false, haproxy: true });
    servingStates.push(...valuesOf(await play('read balancer', balancers.join(','), [balancer]), balancer, balancers));
  }
  const read = readCertificates();
  const certificates = valuesOf(await play('read certificates', [...controlPlanes, ...workers].join(','), [read]), read, [...controlPlanes, ...workers]);

  const [nodeList] = valuesOf(onControlPlanes, nodes, controlPlanes);
  if (nodeList) ctx.report(nodeTable(nodeList));
  ctx.report(controlPlaneTable(servingStates, vip));
  const etcdMembers = valuesOf(onControlPlanes, etcd, controlPlanes).find((list) => list.length > 0);
  if (etcdMembers) ctx.report(etcdMemberTable(etcdMembers));
  ctx.report(certificateTable(certificates, 30));
  const [tokenList] = valuesOf(onControlPlanes, tokens, controlPlanes);
  if (tokenList) ctx.report(joinTokenTable(tokenList));
});
