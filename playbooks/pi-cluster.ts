/**
 * A Raspberry Pi cluster: one control plane and workers — seed 001 (kubeadm on Raspberry Pi OS),
 * top to bottom. It is single-node.ts plus what the Pis need:
 *
 *   preflight          unique names/MACs, ≥ 2 CPUs and ~2 GB, ports 6443 (control plane) and 10250
 *                      free (the memory cgroup is fixed below, not required here)
 *   prepare nodes      swap off for good — Raspberry Pi OS's own swap services too
 *                      (`service rpi-setup-loop@var-swap stop`, dphys-swapfile, zram); the memory
 *                      cgroup: where it is missing (kubeadm join: "missing required cgroups: memory"),
 *                      `cgroup_memory=1 cgroup_enable=memory` in /boot/firmware/cmdline.txt (or
 *                      /boot/cmdline.txt), a reboot, and a check that the controller is active —
 *                      hosts that have it are not touched, let alone rebooted; overlay + br_netfilter;
 *                      the three sysctls
 *   watchdog           optional (`watchdog: true`): the watchdog daemon on /dev/watchdog, rebooting a
 *                      hung Pi (watchdog-timeout 15, max-load-1 24)
 *   container runtime  Docker's Debian repository with `arch=$(dpkg --print-architecture)` (arm64,
 *                      armhf; 32-bit Pi OS gets Docker's raspbian repository), containerd.io
 *                      (+ docker-ce docker-ce-cli with `docker_engine: true`, as the seed does),
 *                      SystemdCgroup = true
 *   kubernetes         pkgs.k8s.io v1.34, kubelet kubeadm kubectl held, kubelet enabled
 *   control plane      kubeadm init --pod-network-cidr=10.10.0.0/16 --apiserver-advertise-address=<ip>,
 *                      ~/.kube/config, Weave Net
 *   join workers       with a token minted just before each join: a Pi that joins days later (the
 *                      seed's expired 24 h token) needs no `kubeadm token create --print-join-command`
 *   cluster ready      every node Ready; the smoke test (an nginx pod on every node, its Service, DNS)
 *
 * Ports: as single-node.ts (6443, 10250-10255, Weave Net's 6783/tcp and 6783-6784/udp).
 *
 * @example capstan run playbooks/pi-cluster.ts -i inventory/home.yaml --check
 * @example capstan run playbooks/pi-cluster.ts --lab
 */
import { InputError, playbook } from '../runner/index.js';
import {
  ensureLine,
  ensureMemoryCgroup,
  ensurePackages,
  ensureService,
  ensureSwapOff,
  preflight,
  KUBERNETES_PROCESSES,
} from '../tasks/index.js';
import { clusterSource, groupsPattern, hostsOf, kernelPrepTasks, readClusterVars, requiredPorts, requireHostIps, singleControlPlaneCluster } from './vars.js';

/** The example inventory this playbook is written for; `capstan run playbooks/pi-cluster.ts --lab` builds lab hosts shaped like it. */
export const exampleInventory = new URL('../inventory/home.yaml', import.meta.url);

/** /etc/watchdog.conf settings from the seed's watchdog guide. */
export const WATCHDOG_SETTINGS: readonly [key: string, value: string][] = [
  ['watchdog-device', '/dev/watchdog'],
  ['watchdog-timeout', '15'],
  ['max-load-1', '24'],
];

export default playbook('pi-cluster', async (ctx) => {
  const { play, inventory } = ctx;
  const controlPlanes = hostsOf(inventory, 'control_plane').map((h) => h.name);
  const workers = hostsOf(inventory, 'workers').map((h) => h.name);
  if (controlPlanes.length > 1) {
    throw new InputError(`pi-cluster.ts sets up one control plane, but control_plane lists ${controlPlanes.join(', ')}: use playbooks/stacked-ha.ts for several`);
  }
  const source = clusterSource(ctx);
  const vars = readClusterVars(source, {
    podNetworkCidr: '10.10.0.0/16',
    cni: 'weave',
    kubeconfigContext: 'pi-cluster',
    untaintControlPlanes: workers.length === 0,
  });
  /** `reboot_timeout`: seconds to wait for a Pi to come back after the reboot for the memory cgroup. */
  const rebootTimeout = source.integer('reboot_timeout', 600, 30, 7200);
  /** `watchdog`: install and enable the watchdog daemon. */
  const watchdog = source.bool('watchdog', false);
  // kubeadm init's --apiserver-advertise-address (and the join endpoint): an IP address, checked before any connection.
  requireHostIps(inventory, 'control_plane');
  const nodes = groupsPattern(inventory, 'control_plane', 'workers');

  await preflight(ctx, nodes, {
    minMemoryMiB: vars.minMemoryMiB,
    minCpus: vars.minCpus,
    ports: requiredPorts(controlPlanes),
    portOwners: [...KUBERNETES_PROCESSES, ...vars.preflightPortOwners],
    // A Pi without the memory cgroup is what the next play fixes (cmdline.txt and a reboot).
    requireMemoryCgroup: false,
  });

  await play('prepare nodes', nodes, [
    ensureSwapOff(),
    ensureMemoryCgroup({ timeoutMs: rebootTimeout * 1000 }),
    ...kernelPrepTasks(),
  ]);

  if (watchdog) {
    await play('watchdog', nodes, [
      ensurePackages(['watchdog']),
      ...WATCHDOG_SETTINGS.map(([key, value]) => ensureLine({ path: '/etc/watchdog.conf', regexp: `^#?\\s*${key}\\s*=`, line: `${key} = ${value}` })),
      // Started by the next boot too; on old firmware add dtparam=watchdog=on to config.txt for /dev/watchdog.
      ensureService('watchdog', { enabled: true, running: true, restartOn: ['/etc/watchdog.conf'] }),
    ]);
  }

  await singleControlPlaneCluster(ctx, nodes, vars);
});
