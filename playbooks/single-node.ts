/**
 * One control plane, and workers if the inventory has any — seeds 000 and 001 (kubeadm on
 * Debian/Ubuntu), top to bottom:
 *
 *   preflight          unique names/MACs, ≥ 2 CPUs and ~2 GB, the memory cgroup, ports 6443 (control
 *                      plane) and 10250 free
 *   prepare nodes      swapoff (and off at boot); overlay + br_netfilter in /etc/modules-load.d/k8s.conf;
 *                      net.bridge.bridge-nf-call-ip{,6}tables = 1 and net.ipv4.ip_forward = 1
 *   container runtime  containerd.io from Docker's repository (or the distribution's containerd),
 *                      `containerd config default` with SystemdCgroup = true, restarted
 *   kubernetes         pkgs.k8s.io v1.34 repository, kubelet kubeadm kubectl installed and held,
 *                      kubelet enabled
 *   control plane      kubeadm init --pod-network-cidr=10.10.0.0/16 --apiserver-advertise-address=<ip>,
 *                      admin.conf to the user's ~/.kube/config (and merged into this machine's
 *                      kubeconfig), Weave Net with the pod CIDR
 *   join workers       kubeadm join with a token minted just before each join
 *   cluster ready      every node Ready; the smoke test (an nginx pod on every node, its Service, DNS)
 *
 * Ports (seed 000): TCP 6443 on the control plane, TCP 10250-10255 on every node, and for Weave
 * Net TCP 6783 and UDP 6783-6784; NodePort services use TCP 30000-32767. Where ufw or firewalld is
 * active, the firewall play opens them (tasks/firewall.ts); Capstan never enables a firewall.
 *
 * Variables: see playbooks/vars.ts and the README (kubernetes_version, kubernetes_packages,
 * containerd_source, pod_network_cidr, cni, cni_manifest_url, kubeconfig_user, …; per host: ip).
 *
 * @example capstan run playbooks/single-node.ts -i inventory/single.yaml --check
 * @example capstan run playbooks/single-node.ts --lab
 */
import { InputError, playbook } from '../runner/index.js';
import {
  ensureSwapOff,
  preflight,
  KUBERNETES_PROCESSES,
} from '../tasks/index.js';
import { clusterSource, groupsPattern, hostsOf, kernelPrepTasks, readClusterVars, requiredPorts, requireHostIps, singleControlPlaneCluster } from './vars.js';

/** The example inventory this playbook is written for; `capstan run playbooks/single-node.ts --lab` builds lab hosts shaped like it. */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

export default playbook('single-node', async (ctx) => {
  const { play, inventory } = ctx;
  const controlPlanes = hostsOf(inventory, 'control_plane').map((h) => h.name);
  const workers = hostsOf(inventory, 'workers').map((h) => h.name);
  const vars = readClusterVars(clusterSource(ctx), {
    podNetworkCidr: '10.10.0.0/16',
    cni: 'weave',
    kubeconfigContext: 'single-node',
    untaintControlPlanes: workers.length === 0,
  });
  if (controlPlanes.length > 1) {
    throw new InputError(`single-node.ts sets up one control plane, but control_plane lists ${controlPlanes.join(', ')}: use playbooks/stacked-ha.ts for several`);
  }
  // kubeadm init's --apiserver-advertise-address (and the join endpoint): an IP address, checked before any connection.
  requireHostIps(inventory, 'control_plane');
  const nodes = groupsPattern(inventory, 'control_plane', 'workers');

  await preflight(ctx, nodes, {
    minMemoryMiB: vars.minMemoryMiB,
    minCpus: vars.minCpus,
    ports: requiredPorts(controlPlanes),
    portOwners: [...KUBERNETES_PROCESSES, ...vars.preflightPortOwners],
  });

  await play('prepare nodes', nodes, [
    ensureSwapOff(),
    ...kernelPrepTasks(),
  ]);

  await singleControlPlaneCluster(ctx, nodes, vars);
});
