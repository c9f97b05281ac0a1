/**
 * Highly available control plane with stacked etcd — seed 002 (an external HAProxy balancer) and
 * seed 004 (haproxy and a keepalived VIP on the control planes). The inventory picks the variant:
 * a `balancer` group (inventory/ha.yaml), or `vip_address` (inventory/ha-vip.yaml). Top to bottom:
 *
 *   preflight            every node: unique hostnames (the planned ones), MACs and product_uuid,
 *                        ≥ 2 CPUs and ~2 GB, the memory cgroup, free ports; the balancer: port 6443
 *   names (seed 004)     `hostnamectl set-hostname` where a host has `hostname`, and every node (and
 *                        the VIP's `vip_hostname`) in every node's /etc/hosts
 *   prepare nodes        swap off, overlay + br_netfilter, the sysctls; iptables-legacy (seed 002:
 *                        update-alternatives for iptables, ip6tables, arptables, ebtables)
 *   RHEL-family hosts    SELinux permissive; Docker's yum repository of the host's distribution (CentOS,
 *                        RHEL or Fedora tree) and pkgs.k8s.io's (exclude=kubelet kubeadm kubectl
 *                        cri-tools kubernetes-cni); containerd.io (+ docker-ce with docker_engine; Fedora
 *                        with containerd_source: distro: containerd, moby-engine; other RHEL: refused);
 *                        `yum install kubelet kubeadm kubectl --disableexcludes=kubernetes`
 *   container runtime    containerd.io (Debian/Ubuntu: Docker's apt repository), SystemdCgroup = true,
 *                        containerd (and docker) enabled and running
 *   kubernetes           pkgs.k8s.io, kubelet kubeadm kubectl held, kubelet enabled, and
 *                        KUBELET_EXTRA_ARGS=--node-ip=<ip> in /etc/default/kubelet (seed 002; RHEL:
 *                        /etc/sysconfig/kubelet); every node's ip checked before any connection
 *   load balancer        seed 002: haproxy on the balancer, <balancer ip>:6443 → control planes :6443,
 *                        TCP checks, fall 3 rise 2. Seed 004: on every control plane haproxy *:8888 →
 *                        control planes :6443 with /healthz checks, and keepalived holding the VIP
 *                        (state BACKUP, nopreempt, a check script) — the VIP exists before kubeadm init
 *   first control plane  kubeadm init --config (controlPlaneEndpoint = the balancer or VIP,
 *                        podSubnet) --upload-certs; ~/.kube/config; the CNI (Calico for seed 002,
 *                        Flannel for seed 004) with the pod CIDR; the kubeconfig on this machine
 *   join control planes  one at a time (concurrent joins race on etcd membership): a fresh token and
 *                        a fresh certificate key (certificates re-uploaded; the seed's expire in 2 h),
 *                        `kubeadm join --control-plane --certificate-key … --apiserver-advertise-address
 *                        <ip>`; ~/.kube/config there too
 *   join workers         in parallel, each with a fresh token
 *   cluster ready        optional untaint (seed 002: `kubectl taint nodes --all …-`), every node Ready,
 *                        the smoke test
 *
 * @example capstan run playbooks/stacked-ha.ts -i inventory/ha.yaml --check
 * @example capstan run playbooks/stacked-ha.ts --lab -i inventory/ha-vip.yaml
 */
import { playbook, type TaskOptions } from '../runner/index.js';
import {
  ensureAlternatives,
  ensureHostname,
  ensureHostsEntries,
  ensureKubeconfig,
  ensureKubeletExtraArgs,
  ensurePackages,
  ensureSwapOff,
  kubeadmInit,
  kubeadmJoin,
  preflight,
  KUBERNETES_PROCESSES,
  ensureHaproxy,
  ensureKeepalived,
  ensureSelinuxPermissive,
  ensureYumRepo,
  ensureRpmPackages,
  kubernetesYumRepo,
  ensureDockerYumRepo,
  rpmContainerRuntimePackages,
  ensureFirewallPorts,
  firewallPortsForRole,
} from '../tasks/index.js';
import { apiServers, stackedHaPlacement } from './lib/ha-load-balancer.js';
import {
  clusterReadyTasks,
  clusterSource,
  containerRuntimeTasks,
  firstControlPlaneTasks,
  groupsPattern,
  hostIp,
  hostsOf,
  isDebianFamily,
  isRhelFamily,
  kernelPrepTasks,
  kubeadmFirewallPorts,
  kubeletRunning,
  kubernetesPackageTasks,
  plannedHostname,
  readClusterVars,
  requiredPorts,
  requireHostIps,
  VarReader,
} from './vars.js';

/** The example inventory of the balancer variant; `--lab -i inventory/ha-vip.yaml` for the VIP one. */
export const exampleInventory = new URL('../inventory/ha.yaml', import.meta.url);

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const debianOnly: TaskOptions = { when: isDebianFamily };
const rhelOnly: TaskOptions = { when: isRhelFamily };

export default playbook('stacked-ha', async (ctx) => {
  const { play, inventory } = ctx;
  const controlPlanes = hostsOf(inventory, 'control_plane');
  const workers = hostsOf(inventory, 'workers');
  const balancers = hostsOf(inventory, 'balancer');
  const source = clusterSource(ctx);
  const haproxy = stackedHaPlacement(inventory, source);
  const variant = haproxy.variant;
  const vars = readClusterVars(source, {
    podNetworkCidr: '10.244.0.0/16',
    cni: variant === 'balancer' ? 'calico' : 'flannel',
    kubeconfigContext: 'stacked-ha',
    untaintControlPlanes: workers.length === 0,
  });
  const iptablesLegacy = source.bool('iptables_legacy', variant === 'balancer');
  const etcHosts = source.bool('etc_hosts', variant === 'vip');
  const vip = variant === 'vip' ? source.ip('vip_address') : undefined;
  const vipPort = source.integer('vip_port', 8888, 1, 65535);
  const vipHostname = source.optionalString('vip_hostname', HOSTNAME, 'a host name');
  // Every node's address (node-ip, /etc/hosts, advertise addresses, backends) and the balancer's, checked before any connection.
  requireHostIps(inventory, 'control_plane', 'workers', 'balancer');
  const balancerIp = balancers[0] ? hostIp(balancers[0]) : undefined;
  const endpoint = source.string('control_plane_endpoint', variant === 'balancer' ? `${balancerIp}:6443` : `${vip}:${vipPort}`, /^[A-Za-z0-9.-]+:\d{1,5}$/, 'host:port');
  // haproxy's backends: every control plane's API server (their addresses are checked here, before any connection).
  const servers = apiServers(controlPlanes);
  const nodes = groupsPattern(inventory, 'control_plane', 'workers');
  const portOwners = [...KUBERNETES_PROCESSES, ...vars.preflightPortOwners];

  await preflight(ctx, nodes, {
    minMemoryMiB: vars.minMemoryMiB,
    minCpus: vars.minCpus,
    ports: requiredPorts(
      controlPlanes.map((h) => h.name),
      variant === 'vip' ? [vipPort] : [],
    ),
    portOwners: [...portOwners, ...(variant === 'vip' ? ['haproxy'] : [])],
    hostname: (host) => plannedHostname(host) ?? host.facts.hostname,
  });
  if (variant === 'balancer') {
    await preflight(ctx, 'balancer', { title: 'preflight (balancer)', minMemoryMiB: 0, minCpus: 1, ports: [6443], portOwners: ['haproxy'], requireMemoryCgroup: false });
  }
  await play('firewall', nodes, [ensureFirewallPorts({ ports: kubeadmFirewallPorts(controlPlanes.map((h) => h.name), vars, variant === 'vip' ? { port: vipPort } : undefined) })]);
  if (variant === 'balancer') await play('firewall (balancer)', 'balancer', [ensureFirewallPorts({ ports: firewallPortsForRole({ role: 'balancer' }) })]);

  if (etcHosts) {
    const entries = [
      ...[...controlPlanes, ...workers].map((host) => ({ ip: hostIp(host), names: [String(host.vars.hostname ?? host.name)] })),
      ...(vip && vipHostname ? [{ ip: vip, names: [vipHostname] }] : []),
    ];
    await play('names and addresses', nodes, [
      ensureHostsEntries(entries),
      ensureHostname((host) => plannedHostname(host)!, { when: (host) => plannedHostname(host) !== undefined }),
    ]);
  }

  await play('prepare nodes', nodes, [
    ensureSwapOff(),
    ...kernelPrepTasks(),
    // The four legacy tools are installed first, so each alternative must exist: a missing one is an error, and
    // --check, with the packages still to install, reports them as pending rather than as nothing to do.
    ...(iptablesLegacy
      ? [
          ensurePackages(['iptables', 'arptables', 'ebtables'], {}, debianOnly),
          ...['iptables', 'ip6tables', 'arptables', 'ebtables'].map((name) => ensureAlternatives({ name, path: `/usr/sbin/${name}-legacy` }, debianOnly)),
        ]
      : []),
  ]);

  // Seed 004's CentOS 9: nothing here runs on Debian-family hosts (reported as skipped there).
  await play('RHEL-family hosts', nodes, [
    ensureSelinuxPermissive(rhelOnly),
    // Docker's tree for the host's distribution (Fedora has its own); containerd_source and docker_engine as on Debian,
    // and a clear failure naming the host where the distribution cannot provide them.
    ...(vars.containerdSource === 'docker' ? [ensureDockerYumRepo(rhelOnly)] : []),
    ensureRpmPackages((host) => rpmContainerRuntimePackages(host.name, host.facts.osId, vars.containerdSource, vars.dockerEngine), {}, rhelOnly),
    ...(vars.kubernetesPackages === 'pkgs.k8s.io'
      ? [ensureYumRepo(kubernetesYumRepo(vars.kubernetesVersion), rhelOnly), ensureRpmPackages(['kubelet', 'kubeadm', 'kubectl'], { disableExcludes: 'kubernetes' }, rhelOnly)]
      : []),
  ]);

  await play('container runtime', nodes, containerRuntimeTasks(vars, debianOnly));

  await play('kubernetes packages', nodes, [
    ...kubernetesPackageTasks(vars, debianOnly),
    // The kubelet reads it at its next start: kubeadm init/join (re)start it; it loops until then.
    // /etc/default/kubelet on Debian, /etc/sysconfig/kubelet on the RHEL family (the packages' drop-ins read those).
    ensureKubeletExtraArgs({ nodeIp: (host) => hostIp(host) }),
  ]);

  if (variant === 'balancer') {
    await play('load balancer', 'balancer', [
      ensurePackages(['haproxy'], {}, debianOnly),
      ensureRpmPackages(['haproxy'], {}, rhelOnly),
      ...ensureHaproxy(haproxy.params(servers)),
    ]);
  } else {
    const vipInterface = source.optionalString('vip_interface', /^[A-Za-z0-9_.:@-]{1,15}$/, 'an interface name');
    const authPass = source.optionalString('vip_auth_pass', /^[!-~]{1,8}$/, 'at most 8 printable characters');
    await play('VIP: haproxy and keepalived', 'control_plane', [
      ensurePackages(['haproxy', 'keepalived', 'curl'], {}, debianOnly),
      ensureRpmPackages(['haproxy', 'keepalived', 'curl'], {}, rhelOnly),
      ...ensureHaproxy(haproxy.params(servers)),
      ...ensureKeepalived({
        vip: vip!,
        port: vipPort,
        address: (host) => hostIp(host),
        ...(vipInterface ? { interface: vipInterface } : {}),
        routerId: source.integer('vip_router_id', 5, 1, 255),
        priority: (host) => new VarReader(host.vars, `vars of ${host.name}`).integer('keepalived_priority', 100, 1, 254),
        ...(authPass ? { authPass } : {}),
      }),
    ]);
  }

  const init = kubeadmInit({ podSubnet: vars.podNetworkCidr, controlPlaneEndpoint: endpoint, uploadCerts: true });
  const initPlay = await play(
    'first control plane',
    'control_plane[0]',
    firstControlPlaneTasks(init, vars),
    { runOnce: true },
  );
  const cluster = initPlay.value(init);

  // One at a time: each join adds an etcd member, and two at once race on etcd's membership.
  const controlPlaneJoins = await play('join control planes', 'control_plane[1:]', [kubeadmJoin({ cluster, controlPlane: true }), kubeletRunning(), ensureKubeconfig({ user: vars.kubeconfigUser })], {
    serial: 1,
  });

  const workerJoins = inventory.groups.has('workers') ? await play('join workers', 'workers', [kubeadmJoin({ cluster }), kubeletRunning()]) : undefined;

  await play('cluster ready', 'control_plane[0]', clusterReadyTasks(vars, [initPlay, controlPlaneJoins, workerJoins]), { runOnce: true });
});
