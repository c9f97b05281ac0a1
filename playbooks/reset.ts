/**
 * Takes a kubeadm cluster (single-node, pi-cluster, stacked-ha), or the `--limit` hosts of one,
 * back to before `kubeadm init`/`join`, and asks first: it deletes the cluster's state.
 *
 *   confirm            the operator types the cluster's name on a terminal, or passes
 *                      -e confirm=<name>; without either the run stops before any host is contacted
 *   kubeconfig copies  ~/.kube/config of kubeconfig_user and root where it is a copy of admin.conf
 *   reset workers      kubeadm reset -f, then what kubeadm leaves: the CNI's config and state,
 *                      kube-proxy's and the CNI's iptables chains and IPVS services (the host's own
 *                      firewall rules stay), the CNI's interfaces
 *   reset control planes  the same, one at a time, the first control plane last
 *
 * What stays: the packages (kubelet, kubeadm, kubectl held), containerd and its configuration, the
 * kernel and swap settings, haproxy and keepalived (stacked-ha): the nodes are ready for the
 * topology's playbook to build a new cluster on them. `--check` lists what each host would lose.
 *
 * Variables: `cluster_name` (what must be typed; default "kubernetes", kubeadm's own clusterName),
 * `kubeconfig_user` (as in the other playbooks).
 *
 * @example capstan run playbooks/reset.ts -i inventory/home.yaml --check
 * @example capstan run playbooks/reset.ts -i inventory/home.yaml -l pi-03
 * @example capstan run playbooks/reset.ts -i inventory/home.yaml -e confirm=kubernetes
 */
import { InputError, playbook } from '../runner/index.js';
import { kubeadmReset, removeAdminKubeconfigCopies, removeCniInterfaces, removeCniState, removeKubernetesNetfilter } from '../tasks/index.js';
import { clusterSource, USER } from './vars.js';

/** The example inventory this playbook is written for (any kubeadm topology's inventory will do). */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

/** A node's reset, in order: kubeadm's own, then what kubeadm leaves behind. */
function resetTasks() {
  return [kubeadmReset(), removeCniState(), removeKubernetesNetfilter(), removeCniInterfaces()];
}

export default playbook('reset', async (ctx) => {
  const { play, inventory } = ctx;
  if (!inventory.groups.has('control_plane')) {
    throw new InputError(`reset.ts resets kubeadm clusters, whose inventories have a control_plane group; ${inventory.source} has none (the hard way's clusters are not kubeadm's)`);
  }
  const vars = clusterSource(ctx);
  const clusterName = vars.string('cluster_name', 'kubernetes', /^[A-Za-z0-9._-]+$/, 'a cluster name (letters, digits, . _ -)');
  const loginUser = typeof vars.source.ansible_user === 'string' && USER.test(vars.source.ansible_user) ? vars.source.ansible_user : 'root';
  const kubeconfigUser = vars.string('kubeconfig_user', loginUser, USER, 'a user name');
  const controlPlanes = ctx.selectHosts('control_plane').map((h) => h.name);
  const workers = inventory.groups.has('workers') ? ctx.selectHosts('workers').map((h) => h.name) : [];

  const targets = [...workers, ...controlPlanes];
  if (targets.length === 0) throw new InputError('no control plane or worker is selected (check --limit): nothing to reset');
  await ctx.confirm({
    action: `kubeadm reset on ${targets.join(', ')} of cluster "${clusterName}": certificates, etcd data, kubelet state and the pod network's rules are deleted`,
    answer: clusterName,
  });

  if (controlPlanes.length) await play('kubeconfig copies', 'control_plane', [removeAdminKubeconfigCopies({ users: [...new Set([kubeconfigUser, 'root'])] })]);
  if (workers.length) await play('reset workers', 'workers', resetTasks());
  // One at a time, the first last: each control plane's reset removes its own etcd member, and
  // etcd keeps quorum while the others go.
  for (const name of [...controlPlanes].reverse()) await play(`reset control plane ${name}`, name, resetTasks());
});
