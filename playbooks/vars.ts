/**
 * The playbooks' variables: typed, documented, with the seeds' defaults, read from the inventory
 * (vars of `all`, of a group or of a host, with Ansible's precedence) and from `-e key=value` /
 * `-e '{"json": …}'`, which win over the inventory.
 *
 * Cluster-wide variables (the pod CIDR, the CNI, where packages come from) are read from the merged
 * vars of the first control plane — so they may be set on `all`, on `control_plane` or on that
 * host — with the command line's on top. Per-host variables (`ip`, `hostname`,
 * `keepalived_priority`) are read from each host's own merged vars.
 *
 * Every value is checked when the playbook is planned, before any host is contacted: a typo
 * (`cni: wave`, `containerd_source: dockr`) is an input error naming the variable, not a failed
 * task halfway through a run. `-e` values arrive as strings: "true"/"false", numbers and
 * comma-separated lists are accepted where a boolean, a number or a list is expected.
 */
import { isIP } from 'node:net';
import { InputError, type HostView, type PlaybookContext, type PlayResult, type Task, type TaskOptions } from '../runner/index.js';
import type { Inventory, InventoryHost } from '../runner/inventory/index.js';
import {
  CNI_MANIFESTS,
  dockerRepo,
  ensureAptSource,
  ensureContainerdCgroup,
  ensureDockerCgroupDriver,
  ensureFirewallPorts,
  ensureKubeconfig,
  ensureModule,
  ensurePackages,
  ensureService,
  ensureSysctl,
  fetchKubeconfig,
  firewallPortsForRole,
  installCni,
  isRhelFamilyOs,
  kubeadmInit,
  kubeadmJoin,
  KUBERNETES_KEY_FINGERPRINT,
  KUBERNETES_REPO_BASE_URL,
  kubernetesMinor,
  kubernetesRepo,
  smokeTest,
  untaintControlPlanes,
  waitForNodesReady,
  type Cluster,
  type CniName,
} from '../tasks/index.js';

/** Where containerd comes from: Docker's apt repository (`containerd.io`, the seeds' way) or the distribution's own `containerd` package. */
export type ContainerdSource = 'docker' | 'distro';
export const CONTAINERD_SOURCES: readonly ContainerdSource[] = ['docker', 'distro'];

/**
 * Where kubeadm, kubelet and kubectl come from: the pkgs.k8s.io apt repository (installed and held,
 * the seeds' way), or already installed by other means (a golden image; the lab's stand-ins).
 */
export type KubernetesPackages = 'pkgs.k8s.io' | 'preinstalled';
export const KUBERNETES_PACKAGE_SOURCES: readonly KubernetesPackages[] = ['pkgs.k8s.io', 'preinstalled'];

export const CNI_NAMES = Object.keys(CNI_MANIFESTS) as CniName[];

type Source = Readonly<Record<string, unknown>>;

/** Reads typed values from a var source, naming the variable and where it came from in every error. */
export class VarReader {
  constructor(
    readonly source: Source,
    /** For messages: "vars of cp1 (with -e)". */
    readonly where: string,
  ) {}

  has(name: string): boolean {
    const value = this.source[name];
    return value !== undefined && value !== null && value !== '';
  }

  #fail(name: string, expected: string): never {
    throw new InputError(`variable ${name} (${this.where}) must be ${expected}, got ${JSON.stringify(this.source[name])}`);
  }

  string(name: string, fallback: string, pattern?: RegExp, expected = 'a string'): string {
    if (!this.has(name)) return fallback;
    const value = this.source[name];
    if (typeof value !== 'string' && typeof value !== 'number') this.#fail(name, expected);
    const text = String(value).trim();
    if (pattern && !pattern.test(text)) this.#fail(name, expected);
    return text;
  }

  optionalString(name: string, pattern?: RegExp, expected = 'a string'): string | undefined {
    return this.has(name) ? this.string(name, '', pattern, expected) : undefined;
  }

  bool(name: string, fallback: boolean): boolean {
    if (!this.has(name)) return fallback;
    const value = this.source[name];
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string' && /^(true|yes|on|1)$/i.test(value.trim())) return true;
    if (typeof value === 'string' && /^(false|no|off|0)$/i.test(value.trim())) return false;
    if (value === 1 || value === 0) return value === 1;
    return this.#fail(name, 'true or false');
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    if (!this.has(name)) return fallback;
    const value = this.source[name];
    const number = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isInteger(number) || number < min || number > max) this.#fail(name, `a whole number from ${min} to ${max}`);
    return number;
  }

  oneOf<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    if (!this.has(name)) return fallback;
    const value = this.source[name];
    if (typeof value !== 'string' || !choices.includes(value.trim() as T)) this.#fail(name, `one of ${choices.join(', ')}`);
    return (value as string).trim() as T;
  }

  /** A list: YAML/JSON list of strings, or a comma-separated string (from -e). */
  list(name: string, fallback: readonly string[], item: RegExp, expected: string): string[] {
    if (!this.has(name)) return [...fallback];
    const value = this.source[name];
    const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : null;
    if (!items || !items.every((i) => typeof i === 'string' && item.test(i))) this.#fail(name, expected);
    return items as string[];
  }

  ip(name: string, fallback?: string): string {
    const value = this.has(name) ? this.string(name, '') : fallback;
    if (value === undefined || isIP(value) === 0) {
      if (!this.has(name) && value === undefined) throw new InputError(`variable ${name} (${this.where}) is required: an IP address`);
      this.#fail(name, 'an IP address');
    }
    return value;
  }
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
/** A login name as useradd accepts it (kubeconfig_user). */
export const USER = /^[a-z_][a-z0-9_.-]*\$?$/i;
const PROCESS_NAME = /^[^\s/]{1,15}$/;
const CONTEXT_NAME = /^[A-Za-z0-9._@-]+$/;

function validCidr(text: string): boolean {
  const match = CIDR.exec(text);
  return match !== null && match.slice(1, 5).every((o) => Number(o) <= 255) && Number(match[5]) <= 32;
}

/* ------------------------------------------------------------------ the cluster's variables */

/** Variables every playbook reads; see the README's table for each one's seed and meaning. */
export interface ClusterVars {
  /** `kubernetes_version`: the Kubernetes minor whose pkgs.k8s.io repository is used, "v1.34". */
  kubernetesVersion: string;
  /** `kubernetes_packages`: pkgs.k8s.io (installed and held) or preinstalled. */
  kubernetesPackages: KubernetesPackages;
  /** `kubernetes_repo_url`, `kubernetes_repo_key_fingerprint`: the pkgs.k8s.io-shaped repository and its signing key. */
  kubernetesRepository: KubernetesRepository;
  /** `containerd_source`: docker (containerd.io from Docker's repository) or distro (the OS's containerd). */
  containerdSource: ContainerdSource;
  /** `docker_engine`: also install docker-ce and docker-ce-cli and give Docker the systemd cgroup driver (seeds 001, 002). */
  dockerEngine: boolean;
  /** `pod_network_cidr`: kubeadm's --pod-network-cidr, patched into the CNI manifest. */
  podNetworkCidr: string;
  /** `cni`: weave, calico, flannel or cilium. */
  cni: CniName;
  /** `cni_manifest_url`: where the controller downloads the CNI manifest from (`{cni}` is replaced by the CNI's name). */
  cniManifestUrl: string;
  /** `cni_manifest_sha256`: the manifest's sha256, checked before it is patched and applied (unset: the run prints the one it applied). */
  cniManifestSha256?: string;
  /** `kubeconfig_user`: who gets admin.conf as ~/.kube/config on the first control plane. */
  kubeconfigUser: string;
  /** `fetch_kubeconfig`: merge the cluster's admin kubeconfig into a kubeconfig on this machine. */
  fetchKubeconfig: boolean;
  /** `kubeconfig_context`: the context name for it. */
  kubeconfigContext: string;
  /** `kubeconfig_path`: the local kubeconfig to merge into (default ~/.kube/config). */
  kubeconfigPath: string | undefined;
  /** `untaint_control_planes`: let workloads run on control planes (seed 002). */
  untaintControlPlanes: boolean;
  /** `smoke_test`: an nginx DaemonSet on every node, its Service through the ClusterIP, cluster DNS, kube-system Ready (seeds 000, 002). */
  smokeTest: boolean;
  /** `nodes_ready_timeout`: seconds to wait for every node to be Ready. */
  nodesReadyTimeout: number;
  /** `min_memory_mib`, `min_cpus`: preflight thresholds (kubeadm: 2 GB, 2 CPUs). */
  minMemoryMiB: number;
  minCpus: number;
  /** `preflight_port_owners`: extra process names allowed to hold the required ports on a converged cluster. */
  preflightPortOwners: string[];
}

/** Per-playbook defaults that differ between the seeds. */
export interface ClusterDefaults {
  podNetworkCidr: string;
  cni: CniName;
  kubeconfigContext: string;
  /** Untaint when there are no workers (a one-node cluster must schedule the smoke test). */
  untaintControlPlanes: boolean;
}

/** The vars of the first host of `group` merged with the command line's, and a label for messages. */
export function clusterSource(ctx: Pick<PlaybookContext, 'inventory' | 'extraVars'>, group = 'control_plane'): VarReader {
  const first = hostsOf(ctx.inventory, group)[0];
  if (!first) throw new InputError(`the inventory ${ctx.inventory.source} has no host in group ${group}: the playbook needs at least one`);
  const hasExtra = Object.keys(ctx.extraVars).length > 0;
  return new VarReader({ ...first.vars, ...ctx.extraVars }, `vars of ${first.name}${hasExtra ? ' with -e' : ''}`);
}

/** Where kubeadm, kubelet and kubectl come from: a base URL laid out like pkgs.k8s.io (one repository per minor) and its key. */
export interface KubernetesRepository {
  /** `kubernetes_repo_url`: default https://pkgs.k8s.io. */
  baseUrl: string;
  /** `kubernetes_repo_key_fingerprint`: default pkgs.k8s.io's signing key. */
  fingerprint: string;
}

/**
 * Reads `kubernetes_repo_url` (a mirror, or the lab's repository; https, or plain http: the key's
 * fingerprint is checked either way) and `kubernetes_repo_key_fingerprint`.
 */
export function readKubernetesRepository(vars: VarReader): KubernetesRepository {
  return {
    baseUrl: vars.string('kubernetes_repo_url', KUBERNETES_REPO_BASE_URL, /^https?:\/\/[^\s\][]+$/, 'an http(s) URL laid out like https://pkgs.k8s.io').replace(/\/+$/, ''),
    fingerprint: vars.string('kubernetes_repo_key_fingerprint', KUBERNETES_KEY_FINGERPRINT, /^(0x)?[0-9A-Fa-f ]{40,80}$/, 'a full OpenPGP fingerprint (40 hex digits)').replace(/\s+/g, '').replace(/^0x/i, '').toUpperCase(),
  };
}

/** Reads and checks the cluster's variables (see {@link ClusterVars}). */
export function readClusterVars(vars: VarReader, defaults: ClusterDefaults): ClusterVars {
  const version = vars.string('kubernetes_version', '1.34');
  let kubernetesVersion: string;
  try {
    kubernetesVersion = kubernetesMinor(version);
  } catch {
    throw new InputError(`variable kubernetes_version (${vars.where}) must be a Kubernetes version like 1.34, got ${JSON.stringify(version)}`);
  }
  const cni = vars.oneOf('cni', CNI_NAMES, defaults.cni);
  const upstream = CNI_MANIFESTS[cni];
  // `{cni}` stands for the CNI's name: one URL for a directory of manifests (a mirror; the lab's).
  // https only (or a file on this machine): the manifest is applied as cluster-admin, so a plain-http download is a way in.
  const cniManifestUrl = vars.string('cni_manifest_url', upstream ?? '', /^(https:\/\/\S+|file:\/\/\/\S+)$/, 'an https:// URL (or file:/// on this machine; plain http is refused)').replaceAll('{cni}', cni);
  if (!cniManifestUrl) throw new InputError(`cni ${cni} has no plain upstream manifest: set cni_manifest_url (${vars.where})`);
  const cniManifestSha256 = vars.string('cni_manifest_sha256', '', /^([0-9a-fA-F]{64})?$/, '64 hex digits (the manifest\'s sha256)') || undefined;
  const podNetworkCidr = vars.string('pod_network_cidr', defaults.podNetworkCidr);
  if (!validCidr(podNetworkCidr)) throw new InputError(`variable pod_network_cidr (${vars.where}) must be an IPv4 CIDR like 10.10.0.0/16, got ${JSON.stringify(podNetworkCidr)}`);
  const loginUser = typeof vars.source.ansible_user === 'string' && USER.test(vars.source.ansible_user) ? vars.source.ansible_user : 'root';
  return {
    kubernetesVersion,
    kubernetesPackages: vars.oneOf('kubernetes_packages', KUBERNETES_PACKAGE_SOURCES, 'pkgs.k8s.io'),
    kubernetesRepository: readKubernetesRepository(vars),
    containerdSource: vars.oneOf('containerd_source', CONTAINERD_SOURCES, 'docker'),
    dockerEngine: vars.bool('docker_engine', false),
    podNetworkCidr,
    cni,
    cniManifestUrl,
    ...(cniManifestSha256 ? { cniManifestSha256 } : {}),
    kubeconfigUser: vars.string('kubeconfig_user', loginUser, USER, 'a user name'),
    fetchKubeconfig: vars.bool('fetch_kubeconfig', true),
    kubeconfigContext: vars.string('kubeconfig_context', defaults.kubeconfigContext, CONTEXT_NAME, 'a context name (letters, digits, . _ @ -)'),
    kubeconfigPath: vars.optionalString('kubeconfig_path', /^(~\/|\/)\S*$/, 'an absolute path or ~/…'),
    untaintControlPlanes: vars.bool('untaint_control_planes', defaults.untaintControlPlanes),
    smokeTest: vars.bool('smoke_test', true),
    nodesReadyTimeout: vars.integer('nodes_ready_timeout', 300, 10, 86_400),
    minMemoryMiB: vars.integer('min_memory_mib', 1700, 0, 1 << 24),
    minCpus: vars.integer('min_cpus', 2, 0, 4096),
    preflightPortOwners: vars.list('preflight_port_owners', [], PROCESS_NAME, 'a list of process names (as ss shows them, at most 15 characters)'),
  };
}

/**
 * The values `capstan run --lab` gives the lab's hosts: Kubernetes from the stand-ins installed
 * beforehand (the lab reaches Debian's mirror only, not pkgs.k8s.io), Debian's containerd (not
 * download.docker.com), and no Docker Engine. (The stand-ins take the real components' process
 * names, so a second run's preflight accepts them on the API and etcd ports as it would the real ones.)
 */
export const LAB_VARS: Readonly<Record<string, unknown>> = {
  kubernetes_packages: 'preinstalled',
  containerd_source: 'distro',
  docker_engine: false,
};

/* ------------------------------------------------------------------ hosts */

/** Hosts of a group in inventory order; none when the group does not exist (an inventory without workers). */
export function hostsOf(inventory: Inventory, group: string): InventoryHost[] {
  return inventory.groups.has(group) ? inventory.select(group) : [];
}

/** A pattern of the groups that exist, `control_plane:workers`; groups an inventory lacks are left out. */
export function groupsPattern(inventory: Inventory, ...groups: string[]): string {
  const present = groups.filter((group) => inventory.groups.has(group));
  if (present.length === 0) throw new InputError(`the inventory ${inventory.source} has none of the groups ${groups.join(', ')}`);
  return present.join(':');
}

/**
 * The address a host talks to the others on (pure): its `ip` var, else ansible_host. It must be an
 * IP address, not a name: kubeadm's --apiserver-advertise-address, the kubelet's --node-ip,
 * haproxy's backends and keepalived's peers take addresses, and a name resolved on this machine
 * may not be what the nodes resolve (mDNS `.local`, split DNS), or may change with DHCP after
 * the certificates name the old one. ansible_host may stay a name for SSH when `ip` is set.
 * The error names the host and the variable the value came from.
 */
export function hostIp(host: { name: string; vars: Readonly<Record<string, unknown>> }): string {
  const variable = host.vars.ip !== undefined && host.vars.ip !== null ? 'ip' : 'ansible_host';
  const value = host.vars[variable];
  if (typeof value !== 'string' || isIP(value) === 0) {
    const what = value === undefined || value === null ? 'neither ip nor ansible_host is set' : `${variable} is ${JSON.stringify(value)}, not an IP address`;
    throw new InputError(`host ${host.name}: ${what}; set ip to the host's IP address (ansible_host may stay a name for SSH)`, { host: host.name });
  }
  return value;
}

/**
 * Checks, when the playbook is planned, that every host of `groups` has an IP address
 * ({@link hostIp}), so a name (`ansible_host: pi-01.local`) is an input error naming the inventory,
 * host and variable before any host is contacted — not a failed `kubeadm init` after node
 * preparation. Returns each host's address, in inventory order.
 */
export function requireHostIps(inventory: Inventory, ...groups: string[]): Map<string, string> {
  const addresses = new Map<string, string>();
  for (const host of groups.flatMap((group) => hostsOf(inventory, group))) {
    try {
      addresses.set(host.name, hostIp(host));
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      throw new InputError(`inventory ${inventory.source}: ${error.message}`, { host: host.name });
    }
  }
  return addresses;
}

/** The host's `hostname` var (seed 004's `hostnamectl set-hostname node1.internal`), if any. */
export function plannedHostname(host: Pick<HostView, 'vars'>): string | undefined {
  const value = host.vars.hostname;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** RHEL-family hosts (seed 004's CentOS 9): SELinux and yum instead of apt. */
export function isRhelFamily(host: Pick<HostView, 'facts'>): boolean {
  return isRhelFamilyOs(host.facts.osId);
}

export function isDebianFamily(host: Pick<HostView, 'facts'>): boolean {
  return !isRhelFamily(host);
}

/* ------------------------------------------------------------------ what the package variables mean */

/**
 * The container runtime, as `containerd_source` says (`aptOptions` apply to the apt tasks only:
 * stacked-ha.ts runs them on Debian-family hosts and installs RHEL's with yum) (seeds 000/001): Docker's repository for the
 * host's distribution and architecture, then `containerd.io` (plus docker-ce and docker-ce-cli with
 * `docker_engine`, seed 001 on the Pi), or the distribution's `containerd`; then `SystemdCgroup = true`
 * in /etc/containerd/config.toml, starting from `containerd config default` (seeds 000–004), and
 * seed 002's daemon.json for Docker. containerd (and docker) are enabled at boot and running:
 * Debian's packages enable them, Docker's rpms (seed 004's CentOS) do not, and a node whose
 * runtime does not start after a reboot stays NotReady (seed 004: `systemctl enable --now containerd`).
 */
export function containerRuntimeTasks(vars: Pick<ClusterVars, 'containerdSource' | 'dockerEngine'>, aptOptions: TaskOptions = {}): Task<unknown>[] {
  const docker = vars.containerdSource === 'docker';
  const engine = vars.dockerEngine ? (docker ? ['docker-ce', 'docker-ce-cli'] : ['docker.io']) : [];
  return [
    ...(docker ? [ensurePackages(['ca-certificates', 'curl', 'gnupg'], {}, aptOptions), ...ensureAptSource(dockerRepo(), aptOptions)] : []),
    ensurePackages([docker ? 'containerd.io' : 'containerd', ...engine], {}, aptOptions),
    // After the config: a stopped containerd is started with SystemdCgroup = true, not restarted twice.
    ensureContainerdCgroup(),
    ensureService('containerd', { enabled: true, running: true }),
    ...(vars.dockerEngine ? [ensureDockerCgroupDriver(), ensureService('docker', { enabled: true, running: true })] : []),
  ];
}

/**
 * kubeadm, kubelet and kubectl, as `kubernetes_packages` says (seed 001): the pkgs.k8s.io
 * repository of `kubernetes_version` with its signing key, the three packages installed and held
 * (`apt-mark hold`); or nothing to install (preinstalled). Either way the kubelet is enabled
 * before init/join, as kubeadm's install guide does (`systemctl enable --now kubelet`; kubeadm's
 * preflight warns otherwise). It restarts in a loop until kubeadm init or join writes its
 * configuration, so only "enabled" is checked here; {@link kubeletRunning} checks "active" after them.
 */
export function kubernetesPackageTasks(vars: Pick<ClusterVars, 'kubernetesPackages' | 'kubernetesVersion' | 'kubernetesRepository'>, aptOptions: TaskOptions = {}): Task<unknown>[] {
  const fromRepo = vars.kubernetesPackages === 'pkgs.k8s.io';
  return [
    ...(fromRepo
      ? [
          ensurePackages(['apt-transport-https', 'ca-certificates', 'curl', 'gnupg'], {}, aptOptions),
          ...ensureAptSource(kubernetesRepo(vars.kubernetesVersion, vars.kubernetesRepository), aptOptions),
          ensurePackages(['kubelet', 'kubeadm', 'kubectl'], { hold: true }, aptOptions),
        ]
      : []),
    ensureService('kubelet', { enabled: true }),
  ];
}

/**
 * The kubelet running, checked after kubeadm init or join has configured it (before, it restarts
 * in a loop): on a converged node that init/join leave alone, a stopped kubelet is started here.
 * Its "enabled" is {@link kubernetesPackageTasks}' (the same unit, another aspect: no conflict).
 */
export function kubeletRunning(): Task<void> {
  return ensureService('kubelet', { running: true });
}

/**
 * The kernel side of every kubeadm node (seeds 000–004): overlay and br_netfilter loaded now and at
 * boot, bridged traffic through iptables and IP forwarding. Swap comes before it in each playbook.
 */
export function kernelPrepTasks(): Task<unknown>[] {
  return [
    ensureModule('overlay'),
    ensureModule('br_netfilter'),
    ensureSysctl({ 'net.bridge.bridge-nf-call-iptables': 1, 'net.bridge.bridge-nf-call-ip6tables': 1, 'net.ipv4.ip_forward': 1 }),
  ];
}

/**
 * What follows `kubeadm init` on the first control plane, in every playbook: the kubelet running,
 * admin.conf as the user's ~/.kube/config, the CNI with the pod CIDR, and (with `fetch_kubeconfig`) the cluster in
 * this machine's kubeconfig.
 */
export function firstControlPlaneTasks(init: Task<Cluster>, vars: ClusterVars): Task<unknown>[] {
  return [
    init,
    kubeletRunning(),
    ensureKubeconfig({ user: vars.kubeconfigUser }),
    installCni({ name: vars.cni, podCidr: vars.podNetworkCidr, manifestUrl: vars.cniManifestUrl, ...(vars.cniManifestSha256 ? { sha256: vars.cniManifestSha256 } : {}) }),
    ...(vars.fetchKubeconfig ? [fetchKubeconfig({ context: vars.kubeconfigContext, ...(vars.kubeconfigPath ? { to: vars.kubeconfigPath } : {}) })] : []),
  ];
}

/**
 * The last play's tasks: optional untaint, every node that init or a join left running Ready (the
 * count comes from those plays' results), and the smoke test.
 */
export function clusterReadyTasks(vars: ClusterVars, nodePlays: readonly (PlayResult | undefined)[]): Task<unknown>[] {
  const joined = nodePlays.flatMap((result) => [...(result?.hosts.values() ?? [])]).filter((h) => h.status === 'ok' || h.status === 'changed').length;
  return [
    ...(vars.untaintControlPlanes ? [untaintControlPlanes()] : []),
    waitForNodesReady({ timeoutSeconds: vars.nodesReadyTimeout, ...(joined > 0 ? { expected: joined } : {}) }),
    ...(vars.smokeTest ? [smokeTest({ timeoutSeconds: vars.nodesReadyTimeout })] : []),
  ];
}

/**
 * From the container runtime to a Ready cluster with one control plane, as seeds 000 and 001 go on
 * after node preparation: containerd, the Kubernetes packages, `kubeadm init` on the first control
 * plane (with {@link firstControlPlaneTasks}), workers joined (each with a token minted just before
 * its join, so a node added later never meets an expired one; no workers group: a one-node
 * cluster), then {@link clusterReadyTasks}.
 */
export async function singleControlPlaneCluster(ctx: Pick<PlaybookContext, 'play' | 'inventory'>, nodes: string, vars: ClusterVars): Promise<void> {
  const { play, inventory } = ctx;
  await play('firewall', nodes, [ensureFirewallPorts({ ports: kubeadmFirewallPorts(hostsOf(inventory, 'control_plane').map((h) => h.name), vars) })]);
  await play('container runtime', nodes, containerRuntimeTasks(vars));
  await play('kubernetes packages', nodes, kubernetesPackageTasks(vars));
  const init = kubeadmInit({ podSubnet: vars.podNetworkCidr });
  const initPlay = await play('control plane', 'control_plane[0]', firstControlPlaneTasks(init, vars), { runOnce: true });
  const joinPlay = inventory.groups.has('workers') ? await play('join workers', 'workers', [kubeadmJoin({ cluster: initPlay.value(init) }), kubeletRunning()]) : undefined;
  await play('cluster ready', 'control_plane[0]', clusterReadyTasks(vars, [initPlay, joinPlay]), { runOnce: true });
}

/**
 * The ports a kubeadm node opens where ufw or firewalld is active (tasks/firewall.ts): a control
 * plane's (NodePorts too when it runs workloads; the VIP variant's haproxy port and VRRP) or a
 * worker's, with the cluster's CNI.
 */
export function kubeadmFirewallPorts(controlPlanes: readonly string[], vars: Pick<ClusterVars, 'cni' | 'untaintControlPlanes'>, vip?: { port: number }): (host: HostView) => string[] {
  return (host) =>
    controlPlanes.includes(host.name)
      ? firewallPortsForRole({ role: 'control-plane', cni: vars.cni, runsWorkloads: vars.untaintControlPlanes, ...(vip ? { vip } : {}) })
      : firewallPortsForRole({ role: 'worker', cni: vars.cni });
}

/** The ports a node needs free before it joins (seeds 000/001: 6443 on control planes, 10250 everywhere). */
export function requiredPorts(controlPlanes: readonly string[], extra: readonly number[] = []): (host: HostView) => number[] {
  return (host) => (controlPlanes.includes(host.name) ? [6443, 10250, ...extra] : [10250]);
}
