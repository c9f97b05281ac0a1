/**
 * Kubernetes the hard way, the control plane — seed 003 (no kubeadm: binaries, certificates and
 * systemd units on three controllers, etcd among them, HAProxy on a balancer in front). The
 * inventory has the groups `controllers` (controller-0..2) and `loadbalancer` (one host); the
 * seed's tmux panes are `capstan exec -i inventory/hard-way.yaml controllers -- …`. Top to bottom:
 *
 *   preflight            controllers: ports 6443, 2379, 2380, 10257, 10259 and 80 free (or held by
 *                        the control plane itself on a second run); the balancer: 80, 6443, 9999
 *   PKI                  on this machine (localhost), in `pki_dir`: the CA, kubernetes.pem (SANs: every
 *                        controller, the balancer, the service CIDR's first address 10.32.0.1,
 *                        127.0.0.1, kubernetes.default.svc.cluster.local and its parents), admin,
 *                        kube-controller-manager, kube-scheduler, service-account; their kubeconfigs
 *                        (https://127.0.0.1:6443); encryption-config.yaml
 *   certificates         `sudo mv ca.pem ca-key.pem kubernetes-key.pem kubernetes.pem service-account-key.pem
 *                        service-account.pem encryption-config.yaml /var/lib/kubernetes/`, the
 *                        kubeconfigs beside them; ca.pem, kubernetes.pem, kubernetes-key.pem to /etc/etcd
 *   binaries             `wget … kube-apiserver kube-controller-manager kube-scheduler kubectl`,
 *                        `chmod +x`, `mv … /usr/local/bin/` — downloaded once on this machine, sha256-checked
 *   etcd                 a three-member cluster over TLS (Debian's etcd-server), healthy with 3 members
 *   control plane        `mkdir -p /etc/kubernetes/config`; kube-apiserver.service (--advertise-address
 *                        = the host's ip, --etcd-servers = every controller, --apiserver-count = their
 *                        number), kube-controller-manager.service, kube-scheduler.yaml and
 *                        kube-scheduler.service; daemon-reload, enable, start; restarted only on change
 *   health checks        `apt-get install -y nginx`; the server block in
 *                        /etc/nginx/sites-available/kubernetes.default.svc.cluster.local, linked in
 *                        sites-enabled, nginx reloaded on change and enabled
 *   control plane ready  "wait up to 10 seconds": https://127.0.0.1:6443/healthz with the CA, the
 *                        seed's `curl -H "Host: kubernetes.default.svc.cluster.local" http://127.0.0.1/healthz`,
 *                        kube-controller-manager :10257 and kube-scheduler :10259 /healthz (instead of
 *                        the deprecated `kubectl get componentstatuses`)
 *   RBAC (once)          ClusterRole system:kube-apiserver-to-kubelet and ClusterRoleBinding
 *                        system:kube-apiserver, `kubectl apply --kubeconfig admin.kubeconfig -f -`
 *                        only when missing or different
 *   load balancer        `apt-get install -y haproxy`; the seed's haproxy.cfg (*:80 and *:6443 round
 *                        robin to the controllers' :6443 with `check`, stats on :9999/stats);
 *                        `systemctl enable haproxy`, start; restarted only on change
 *   front end answers    `curl --cacert ca.pem https://<balancer>:6443/version`
 *
 * What differs from the seed's v1.18.6 files because Kubernetes changed is in tasks/control-plane.ts
 * (--kubelet-https dropped from 1.22, --service-account-issuer/--service-account-signing-key-file
 * from 1.20, KubeSchedulerConfiguration v1, RBAC v1).
 *
 * Variables (inventory vars of `all`/`controllers`/a host, or -e): kubernetes_version (1.34.1),
 * kubernetes_binary_url (https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{binary}), per
 * binary kube_apiserver_url / kube_controller_manager_url / kube_scheduler_url / kubectl_url and
 * kube_apiserver_sha256 / kube_controller_manager_sha256 / kube_scheduler_sha256 / kubectl_sha256
 * (pinned sums; without one, the sum published at <url>.sha256 is fetched: https:// or file:/// URLs
 * only, a plain http:// URL needs the pin); service_cidr (10.32.0.0/24),
 * cluster_cidr (10.200.0.0/16), pki_dir (~/.capstan/pki/hard-way), kubernetes_public_address
 * (the balancer's ip), min_memory_mib (0), api_timeout (60 s); per host: ip.
 *
 * @example capstan run playbooks/hard-way.ts -i inventory/hard-way.yaml --check
 * @example capstan run playbooks/hard-way.ts -i inventory/hard-way.yaml
 * @example capstan run playbooks/hard-way.ts --lab
 * @example capstan run playbooks/hard-way.ts -i inventory/hard-way.yaml -e kube_apiserver_sha256=… -e …   # pinned sums
 */
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InputError, playbook, type HostView } from '../runner/index.js';
import { ensureFirewallPorts, ensurePackages, firewallPortsForRole, preflight } from '../tasks/index.js';
import { ensureBinary } from '../tasks/binary.js';
import {
  BINARY_DIR,
  ensureControlPlane,
  ensureFrontEndHaproxy,
  ensureHealthzProxy,
  ensureKubeletApiRbac,
  httpAnswers,
  HEALTHZ_SITE_NAME,
  KUBERNETES_DIR,
} from '../tasks/control-plane.js';
import { parseKubernetesVersion } from '../tasks/kubernetes-version.js';
import { ensureEtcdMember, etcdHealthy } from '../tasks/etcd.js';
import { ensurePki, installPkiFiles, type CertificateRequest } from '../tasks/pki.js';
import { clusterSource, hostIp, hostsOf, VarReader } from './vars.js';
import { CONTROLLER_FILES, ETCD_DIR, ETCD_FILES } from './lib/hard-way-layout.js';

/** The example inventory: three controllers and a balancer, as the seed's Vagrant machines. */
export const exampleInventory = new URL('../inventory/hard-way.yaml', import.meta.url);

/** The four binaries of the seed, with the variable-name stem of each. */
export const HARD_WAY_BINARIES = [
  { name: 'kube-apiserver', variable: 'kube_apiserver' },
  { name: 'kube-controller-manager', variable: 'kube_controller_manager' },
  { name: 'kube-scheduler', variable: 'kube_scheduler' },
  { name: 'kubectl', variable: 'kubectl' },
] as const;

export const DEFAULT_BINARY_URL = 'https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{binary}';

/** Where a binary may come from: https, http (only with a pinned sum, see binarySource), or a file on this machine. */
const BINARY_URL = /^(https?:\/\/|file:\/\/\/)\S+$/;

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** The first usable address of an IPv4 CIDR: the `kubernetes` Service's ClusterIP (10.32.0.0/24 → 10.32.0.1). Pure. */
export function firstServiceIp(cidr: string): string {
  const match = CIDR.exec(cidr);
  if (!match || match.slice(1, 5).some((o) => Number(o) > 255) || Number(match[5]) > 30) throw new InputError(`service_cidr must be an IPv4 CIDR of at most /30, got ${JSON.stringify(cidr)}`);
  const bits = Number(match[5]);
  const base = match.slice(1, 5).reduce((n, o) => n * 256 + Number(o), 0);
  const network = bits === 0 ? 0 : (base & (~0 << (32 - bits))) >>> 0;
  const first = network + 1;
  return [24, 16, 8, 0].map((shift) => (first >>> shift) & 255).join('.');
}

/** The hard way's variables, read and checked before any host is contacted. */
export interface HardWayVars {
  kubernetesVersion: string;
  serviceCidr: string;
  clusterCidr: string;
  pkiDir: string;
  publicAddress: string;
  minMemoryMiB: number;
  apiTimeout: number;
}

/** Reads the cluster-wide variables (see the header). */
export function readHardWayVars(source: VarReader, balancerIp: string): HardWayVars {
  const kubernetesVersion = source.string('kubernetes_version', '1.34.1', /^v?\d+\.\d+\.\d+$/, 'a full Kubernetes version like 1.34.1').replace(/^v/, '');
  parseKubernetesVersion(kubernetesVersion);
  const serviceCidr = source.string('service_cidr', '10.32.0.0/24', CIDR, 'an IPv4 CIDR like 10.32.0.0/24');
  firstServiceIp(serviceCidr);
  const clusterCidr = source.string('cluster_cidr', '10.200.0.0/16', CIDR, 'an IPv4 CIDR like 10.200.0.0/16');
  const pkiDirText = source.string('pki_dir', '~/.capstan/pki/hard-way', /^(~\/|\/)\S+$/, 'an absolute path or ~/…');
  const pkiDir = pkiDirText.startsWith('~/') ? join(homedir(), pkiDirText.slice(2)) : pkiDirText;
  const publicAddress = source.ip('kubernetes_public_address', balancerIp);
  return {
    kubernetesVersion,
    serviceCidr,
    clusterCidr,
    pkiDir,
    publicAddress,
    minMemoryMiB: source.integer('min_memory_mib', 0, 0, 1 << 24),
    apiTimeout: source.integer('api_timeout', 60, 5, 3600),
  };
}

/**
 * A binary's URL and checksum for one host: its vars (with -e over them) and its architecture. The
 * checksum is `<binary>_sha256` when set (pinned), else the one published beside the file
 * (`<url>.sha256`, as dl.k8s.io does) — refused for a plain http URL, where it would check nothing.
 */
export function binarySource(
  vars: Readonly<Record<string, unknown>>,
  where: string,
  binary: (typeof HARD_WAY_BINARIES)[number],
  arch: string,
  version: string,
): { url: string; sha256?: string; sha256Url?: string } {
  const reader = new VarReader(vars, where);
  const template = reader.string('kubernetes_binary_url', DEFAULT_BINARY_URL, BINARY_URL, 'an https:// or http:// URL, or file:/// on this machine');
  const url = reader
    .string(`${binary.variable}_url`, template, BINARY_URL, 'an https:// or http:// URL, or file:/// on this machine')
    .replaceAll('{version}', version)
    .replaceAll('{arch}', arch)
    .replaceAll('{binary}', binary.name);
  if (!reader.has(`${binary.variable}_sha256`)) {
    // Over plain http the published <url>.sha256 travels the same path as the binary: it checks nothing.
    if (url.startsWith('http://')) {
      throw new InputError(
        `${binary.name} would be downloaded over plain http (${url}, ${where}) and checked against a sum fetched the same way, which is no check: set ${binary.variable}_sha256 (the pinned SHA-256), or use an https:// or file:/// URL`,
      );
    }
    return { url, sha256Url: `${url}.sha256` };
  }
  const sha256 = reader.string(`${binary.variable}_sha256`, '', /^[0-9a-fA-F]{64}$/, '64 hex digits (a SHA-256)').toLowerCase();
  return { url, sha256 };
}

export default playbook('hard-way', async (ctx) => {
  const { play, inventory } = ctx;
  const controllers = hostsOf(inventory, 'controllers');
  const balancers = hostsOf(inventory, 'loadbalancer');
  if (controllers.length === 0) throw new InputError(`the inventory ${inventory.source} has no host in group controllers: the hard way needs them (controller-0..2 in the seed)`);
  if (balancers.length !== 1) throw new InputError(`the loadbalancer group must list exactly one host (the seed's), it lists ${balancers.length}`);
  const controllerIps = controllers.map((host) => hostIp(host));
  const balancerIp = hostIp(balancers[0]!);
  const source = clusterSource(ctx, 'controllers');
  const vars = readHardWayVars(source, balancerIp);
  // Every binary's variables checked now, before any connection (per host again when bound: a host may override them).
  for (const binary of HARD_WAY_BINARIES) binarySource(source.source, source.where, binary, 'amd64', vars.kubernetesVersion);
  const hostVars = (host: HostView) => ({ vars: host.vars, where: `vars of ${host.name}` });

  await preflight(ctx, 'controllers', {
    minMemoryMiB: vars.minMemoryMiB,
    minCpus: 1,
    requireMemoryCgroup: false,
    ports: [6443, 2379, 2380, 10257, 10259, 80],
    portOwners: ['kube-apiserver', 'kube-controller', 'kube-scheduler', 'etcd', 'nginx'],
  });
  await preflight(ctx, 'loadbalancer', { title: 'preflight (load balancer)', minMemoryMiB: 0, minCpus: 1, requireMemoryCgroup: false, ports: [80, 6443, 9999], portOwners: ['haproxy'] });
  await play('firewall', 'controllers', [ensureFirewallPorts({ ports: firewallPortsForRole({ role: 'hard-way-controller' }) })]);
  // The front end's haproxy serves its statistics page on :9999 (renderFrontEndHaproxyConfig).
  await play('firewall (load balancer)', 'loadbalancer', [ensureFirewallPorts({ ports: firewallPortsForRole({ role: 'hard-way-balancer', statsPort: 9999 }) })]);

  const client = (name: string, commonName: string, organization: string): CertificateRequest => ({ name, commonName, organization, usage: ['client'] });
  const pki = ensurePki({
    dir: vars.pkiDir,
    certificates: [
      client('admin', 'admin', 'system:masters'),
      client('kube-controller-manager', 'system:kube-controller-manager', 'system:kube-controller-manager'),
      client('kube-scheduler', 'system:kube-scheduler', 'system:kube-scheduler'),
      {
        name: 'kubernetes',
        commonName: 'kubernetes',
        organization: 'Kubernetes',
        usage: ['server', 'client'],
        ipAddresses: [...new Set([...controllerIps, balancerIp, vars.publicAddress, firstServiceIp(vars.serviceCidr), '127.0.0.1'])],
        dnsNames: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster', 'kubernetes.default.svc.cluster.local'],
      },
      client('service-account', 'service-accounts', 'Kubernetes'),
    ],
    kubeconfigs: ['admin', 'kube-controller-manager', 'kube-scheduler'].map((name) => ({ name, certificate: name, server: 'https://127.0.0.1:6443' })),
    encryptionConfig: true,
  });
  const pkiPlay = await play('PKI', 'localhost', [pki]);
  const made = pkiPlay.value(pki);

  await play('certificates', 'controllers', [
    installPkiFiles({ pki: made, files: CONTROLLER_FILES, dir: KUBERNETES_DIR }),
    installPkiFiles({ pki: made, files: ETCD_FILES, dir: ETCD_DIR }),
  ]);

  await play(
    'binaries',
    'controllers',
    HARD_WAY_BINARIES.map((binary) =>
      ensureBinary({
        url: (host) => binarySource(hostVars(host).vars, hostVars(host).where, binary, host.facts.arch, vars.kubernetesVersion).url,
        sha256: (host) => binarySource(hostVars(host).vars, hostVars(host).where, binary, host.facts.arch, vars.kubernetesVersion).sha256,
        sha256Url: (host) => binarySource(hostVars(host).vars, hostVars(host).where, binary, host.facts.arch, vars.kubernetesVersion).sha256Url,
        dest: `${BINARY_DIR}/${binary.name}`,
        mode: '0755',
      }),
    ),
  );

  const members = controllers.map((host) => ({ name: host.name, ip: hostIp(host) }));
  const etcdEndpoints = controllerIps.map((ip) => `https://${ip}:2379`);
  await play('etcd', 'controllers', [
    ...ensureEtcdMember({
      name: (host) => host.name,
      ip: (host) => hostIp(host),
      members,
      certFile: `${ETCD_DIR}/kubernetes.pem`,
      keyFile: `${ETCD_DIR}/kubernetes-key.pem`,
      trustedCaFile: `${ETCD_DIR}/ca.pem`,
    }),
  ]);
  await play('etcd healthy', 'controllers', [
    etcdHealthy({ endpoints: etcdEndpoints, cacert: `${ETCD_DIR}/ca.pem`, cert: `${ETCD_DIR}/kubernetes.pem`, key: `${ETCD_DIR}/kubernetes-key.pem`, members: controllers.length }),
  ]);

  await play(
    'control plane',
    'controllers',
    ensureControlPlane({
      kubernetesVersion: vars.kubernetesVersion,
      advertiseAddress: (host) => hostIp(host),
      controllers: controllerIps,
      serviceAccountIssuer: `https://${vars.publicAddress}:6443`,
      serviceClusterIpRange: vars.serviceCidr,
      clusterCidr: vars.clusterCidr,
    }),
  );

  await play('health checks', 'controllers', [ensurePackages(['nginx', 'curl']), ...ensureHealthzProxy()]);

  const ca = `${KUBERNETES_DIR}/ca.pem`;
  const timeoutSeconds = vars.apiTimeout;
  await play('control plane ready', 'controllers', [
    httpAnswers({ url: 'https://127.0.0.1:6443/healthz', caFile: ca, timeoutSeconds }),
    httpAnswers({ url: 'http://127.0.0.1/healthz', hostHeader: HEALTHZ_SITE_NAME, timeoutSeconds }),
    httpAnswers({ url: 'https://127.0.0.1:10257/healthz', insecure: true, timeoutSeconds }),
    httpAnswers({ url: 'https://127.0.0.1:10259/healthz', insecure: true, timeoutSeconds }),
  ]);

  await play('RBAC for kubelet authorization', 'controllers[0]', [ensureKubeletApiRbac({ kubeconfig: `${KUBERNETES_DIR}/admin.kubeconfig` })], { runOnce: true });

  await play('load balancer', 'loadbalancer', [
    ensurePackages(['haproxy']),
    ...ensureFrontEndHaproxy({ servers: controllers.map((host) => ({ name: host.name, address: hostIp(host) })) }),
  ]);

  const publicUrl = `https://${isIP(vars.publicAddress) === 6 ? `[${vars.publicAddress}]` : vars.publicAddress}:6443/version`;
  await play('front end answers', 'controllers[0]', [httpAnswers({ url: publicUrl, caFile: ca, expectJsonFields: ['major', 'minor', 'gitVersion'], timeoutSeconds })], { runOnce: true });
});
