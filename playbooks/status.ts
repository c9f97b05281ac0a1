/**
 * A cluster's state at a glance (single-node, pi-cluster, stacked-ha, the hard way), read-only: it
 * never changes a host, so `--check` shows the same tables and every run is changed=0.
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
 * The hard way (an inventory with `controllers`, seed 003): the same reads with its paths — kubectl
 * with /var/lib/kubernetes/admin.kubeconfig, /readyz at https://127.0.0.1:6443 with its ca.pem, the
 * etcd.service members with /etc/etcd's certificates — plus `systemctl is-active` of etcd,
 * kube-apiserver, kube-controller-manager, kube-scheduler and nginx (SERVICES); haproxy on the
 * `loadbalancer` host; certificates: every PEM certificate in /var/lib/kubernetes and /etc/etcd and
 * the client certificate inside each kubeconfig (openssl, never a key); no join tokens (no kubeadm).
 *
 * Not yet shown: haproxy's per-backend state.
 *
 * @example capstan run playbooks/status.ts -i inventory/home.yaml
 * @example capstan run playbooks/status.ts -i inventory/ha-vip.yaml --json
 * @example capstan run playbooks/status.ts -i inventory/hard-way.yaml
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
  type EtcdMember,
  type HostCertificates,
  type JoinToken,
  type NodeStatus,
} from '../tasks/index.js';
import { KUBERNETES_DIR } from '../tasks/control-plane.js';
import { clusterSource, hostsOf } from './vars.js';
import { HARD_WAY_ADMIN_KUBECONFIG, HARD_WAY_UNITS, hardWayCertificates, isHardWayInventory } from './lib/hard-way-layout.js';

/** The example inventory this playbook is written for (any kubeadm topology's inventory will do). */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

/** Each host's value of `task`, in `hosts` order, skipping hosts that produced none (failed, unreachable). */
function valuesOf<R>(result: PlayResult, task: Task<R>, hosts: readonly string[]): R[] {
  return hosts.flatMap((host) => {
    const value = result.value(task, host);
    return value === undefined || value instanceof Pending ? [] : [value as R];
  });
}

/** What a topology reads through its control planes: kubeadm's paths, or the hard way's units and files. */
interface Layout {
  controlPlaneGroup: string;
  balancerGroup: string;
  nodes: Task<NodeStatus[]>;
  serving: Task<ControlPlaneStatus>;
  etcd: Task<EtcdMember[]>;
  tokens?: Task<JoinToken[]>;
  certificates: Task<HostCertificates>;
}

function kubeadmLayout(vip: string | undefined): Layout {
  return {
    controlPlaneGroup: 'control_plane',
    balancerGroup: 'balancer',
    nodes: readNodes(),
    serving: readControlPlaneStatus({ readyz: true, ...(vip ? { vip, haproxy: true } : {}) }),
    etcd: readEtcdMembership({ layout: 'kubeadm', etcdctlOptional: true }),
    tokens: readJoinTokens(),
    certificates: readCertificates(),
  };
}

/** Seed 003: systemd units, /var/lib/kubernetes, etcd.service members; no kubeadm, so no join tokens. */
function hardWayLayout(): Layout {
  return {
    controlPlaneGroup: 'controllers',
    balancerGroup: 'loadbalancer',
    nodes: readNodes({ kubeconfig: HARD_WAY_ADMIN_KUBECONFIG }),
    serving: readControlPlaneStatus({ readyz: { url: 'https://127.0.0.1:6443/readyz', cacert: `${KUBERNETES_DIR}/ca.pem` }, units: HARD_WAY_UNITS }),
    etcd: readEtcdMembership({ layout: 'hard-way' }),
    certificates: readCertificates(hardWayCertificates()),
  };
}

export default playbook('status', async (ctx) => {
  const { play, inventory } = ctx;
  const hardWay = isHardWayInventory(inventory.groups);
  if (!hardWay && !inventory.groups.has('control_plane')) {
    throw new InputError(`status.ts reads a cluster through its control planes: ${inventory.source} has neither a control_plane group (kubeadm topologies) nor a controllers group (the hard way)`);
  }
  const vars = clusterSource(ctx, hardWay ? 'controllers' : 'control_plane');
  // stacked-ha's two load-balancing variants (playbooks/lib/ha-load-balancer.ts): keepalived + haproxy on the control planes, or one balancer host.
  const vip = !hardWay && vars.has('vip_address') ? vars.ip('vip_address') : undefined;
  const layout = hardWay ? hardWayLayout() : kubeadmLayout(vip);
  const balancers = hostsOf(inventory, layout.balancerGroup).map((h) => h.name);
  const controlPlanes = ctx.selectHosts(layout.controlPlaneGroup).map((h) => h.name);
  const workers = inventory.groups.has('workers') ? ctx.selectHosts('workers').map((h) => h.name) : [];
  if (controlPlanes.length === 0) throw new InputError(`no ${layout.controlPlaneGroup} host is selected (check --limit): status reads the cluster through one`);

  const { nodes, serving, etcd, tokens } = layout;
  const onControlPlanes = await play('read control planes', controlPlanes.join(','), [nodes, serving, etcd, ...(tokens ? [tokens] : [])]);
  const servingStates: ControlPlaneStatus[] = valuesOf(onControlPlanes, serving, controlPlanes);
  if (balancers.length > 0) {
    const balancer = readControlPlaneStatus({ readyz: false, haproxy: true });
    servingStates.push(...valuesOf(await play('read balancer', balancers.join(','), [balancer]), balancer, balancers));
  }
  const read = layout.certificates;
  const certificates = valuesOf(await play('read certificates', [...controlPlanes, ...workers].join(','), [read]), read, [...controlPlanes, ...workers]);

  const [nodeList] = valuesOf(onControlPlanes, nodes, controlPlanes);
  if (nodeList) ctx.report(nodeTable(nodeList));
  ctx.report(controlPlaneTable(servingStates, vip));
  const etcdMembers = valuesOf(onControlPlanes, etcd, controlPlanes).find((list) => list.length > 0);
  if (etcdMembers) ctx.report(etcdMemberTable(etcdMembers));
  ctx.report(certificateTable(certificates, 30));
  const [tokenList] = tokens ? valuesOf(onControlPlanes, tokens, controlPlanes) : [];
  if (tokenList) ctx.report(joinTokenTable(tokenList));
});
