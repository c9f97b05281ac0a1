import { isIP } from 'node:net';
import { parseAllDocuments } from 'yaml';
import { defineTask, sh, type CheckContext, type Drift, type HostView, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ensureDirectory, ensureFile } from './files.js';
import { haproxyConfigCheck } from './haproxy.js';
import { ensureService, ensureSystemdUnit, reloadService, renderServiceUnit, restartService, unitFilePath } from './systemd.js';
import { requireAbsolutePath } from './validate.js';
import { parseKubernetesVersion } from './kubernetes-version.js';

/*
 * The Kubernetes control plane "the hard way" (seed 003): no kubeadm, no static Pods. The binaries
 * in /usr/local/bin run as systemd services whose flags are rendered here from typed options —
 * kube-apiserver, kube-controller-manager, kube-scheduler (with /etc/kubernetes/config/kube-scheduler.yaml)
 * — plus the seed's nginx site that proxies plain-HTTP health checks to https://127.0.0.1:6443/healthz,
 * the RBAC that lets the API server reach the kubelets, the seed's HAProxy front end, and the HTTP
 * checks the seed does by hand with curl.
 *
 * What changed in Kubernetes since the seed's v1.18.6, and how the renderers follow it (each keyed on
 * `kubernetesVersion`, so v1.18.6 still renders the seed's exact files):
 *   - `--kubelet-https` was removed in v1.22 (kubernetes/kubernetes#101178; deprecated in v1.19 by #91630,
 *     connections to kubelets are always HTTPS): rendered only for versions before 1.22.
 *   - since v1.20 (kubernetes/kubernetes#95896, TokenRequest GA) kube-apiserver refuses to start without
 *     `--service-account-issuer` and `--service-account-signing-key-file`: rendered from 1.20 on, the
 *     issuer being the balancer's https://<address>:6443 and the signing key the seed's
 *     service-account-key.pem (the key kube-controller-manager already signs with).
 *   - KubeSchedulerConfiguration `kubescheduler.config.k8s.io/v1alpha1` was removed in v1.19
 *     (kubernetes/kubernetes#89298); `v1` is GA since v1.25 (KEP-785). Rendered: v1alpha1 before 1.19,
 *     v1beta1 for 1.19–1.22, v1beta3 for 1.23–1.24, v1 from 1.25.
 *   - `rbac.authorization.k8s.io/v1beta1` stopped being served in v1.22: the RBAC objects are
 *     `rbac.authorization.k8s.io/v1` (served since v1.8) whatever the version.
 *   - `kubectl get componentstatuses` (the seed's verification) is deprecated since v1.19: the
 *     components' own /healthz endpoints (10257, 10259) are checked instead.
 */

/** Where the seed puts the certificates, keys, kubeconfigs and encryption config. */
export const KUBERNETES_DIR = '/var/lib/kubernetes';
/** Where the seed puts kube-scheduler.yaml (`sudo mkdir -p /etc/kubernetes/config`). */
export const KUBERNETES_CONFIG_DIR = '/etc/kubernetes/config';
/** Where the seed installs the binaries. */
export const BINARY_DIR = '/usr/local/bin';
/** The seed's nginx site (its file name is the host name it answers for). */
export const HEALTHZ_SITE_NAME = 'kubernetes.default.svc.cluster.local';

/* ------------------------------------------------------------------ versions */

/** True when `version` is at least `major.minor`. Pure. */
function atLeast(version: string, major: number, minor: number): boolean {
  const { major: ma, minor: mi } = parseKubernetesVersion(version);
  return ma > major || (ma === major && mi >= minor);
}

/** The KubeSchedulerConfiguration apiVersion a kube-scheduler of `version` reads (see the header). Pure. */
export function schedulerConfigApiVersion(version: string): string {
  if (atLeast(version, 1, 25)) return 'kubescheduler.config.k8s.io/v1';
  if (atLeast(version, 1, 23)) return 'kubescheduler.config.k8s.io/v1beta3';
  if (atLeast(version, 1, 19)) return 'kubescheduler.config.k8s.io/v1beta1';
  return 'kubescheduler.config.k8s.io/v1alpha1';
}

/* ------------------------------------------------------------------ unit rendering */

/**
 * A flag value as it goes into ExecStart: no whitespace, quotes that would change its meaning,
 * backslashes, `$` (systemd expands variables) or `%` (systemd specifiers).
 */
const FLAG_VALUE = /^[A-Za-z0-9_.,:/=@+\-*'[\]]+$/;

function requireFlagValue(name: string, value: string): void {
  if (typeof value !== 'string' || value === '' || !FLAG_VALUE.test(value)) {
    throw new Error(`${name} cannot go into a systemd ExecStart line as one argument: ${JSON.stringify(value)}`);
  }
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
function requireCidr(name: string, value: string): void {
  const match = CIDR.exec(String(value));
  if (!match || match.slice(1, 5).some((o) => Number(o) > 255) || Number(match[5]) > 32) throw new Error(`${name} must be an IPv4 CIDR like 10.32.0.0/24, got ${JSON.stringify(value)}`);
}

/** A unit file exactly as the seed's heredocs write them: one flag per line, ` \` continuations. Pure. */
function renderUnit(description: string, binary: string, flags: readonly string[]): string {
  return renderServiceUnit({ description, documentation: 'https://github.com/kubernetes/kubernetes', execStart: [binary, ...flags] });
}

/* ------------------------------------------------------------------ kube-apiserver */

export interface KubeApiserverOptions {
  /** The version of the binary: which flags it takes (see the header). "1.34.1" or "v1.34.1". */
  kubernetesVersion: string;
  /** The host's own address (the seed's INTERNAL_IP): `--advertise-address`. */
  advertiseAddress: string;
  /** The etcd members' client URLs, `https://<controller ip>:2379`, in inventory order: `--etcd-servers`. */
  etcdServers: readonly string[];
  /** How many API servers there are (the number of controllers): `--apiserver-count`. */
  apiserverCount: number;
  /** `--service-cluster-ip-range`, default 10.32.0.0/24. */
  serviceClusterIpRange?: string;
  /** `--service-node-port-range`, default 30000-32767. */
  serviceNodePortRange?: string;
  /** `--service-account-issuer` (v1.20 and later): a stable https URL, the balancer's `https://<address>:6443`. */
  serviceAccountIssuer?: string;
  /** Where the certificates and keys are, default /var/lib/kubernetes. */
  dir?: string;
  /** Where the binary is, default /usr/local/bin. */
  binaryDir?: string;
  /** `--v`, default 2. */
  verbosity?: number;
}

/** Checks KubeApiserverOptions; throws naming the bad option. Pure. */
export function validateKubeApiserverOptions(o: KubeApiserverOptions): void {
  parseKubernetesVersion(o.kubernetesVersion);
  if (isIP(o.advertiseAddress) === 0) throw new Error(`advertiseAddress must be an IP address, got ${JSON.stringify(o.advertiseAddress)}`);
  if (!Array.isArray(o.etcdServers) || o.etcdServers.length === 0) throw new Error('etcdServers must list at least one etcd client URL');
  for (const url of o.etcdServers) {
    if (!/^https:\/\/[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(url)) throw new Error(`etcdServers: ${JSON.stringify(url)} is not https://<address>:<port>`);
  }
  if (!Number.isInteger(o.apiserverCount) || o.apiserverCount < 1) throw new Error(`apiserverCount must be a whole number ≥ 1, got ${o.apiserverCount}`);
  requireCidr('serviceClusterIpRange', o.serviceClusterIpRange ?? '10.32.0.0/24');
  if (!/^\d{1,5}-\d{1,5}$/.test(o.serviceNodePortRange ?? '30000-32767')) throw new Error(`serviceNodePortRange must be like 30000-32767, got ${JSON.stringify(o.serviceNodePortRange)}`);
  if (atLeast(o.kubernetesVersion, 1, 20)) {
    if (o.serviceAccountIssuer === undefined) throw new Error('serviceAccountIssuer is required from Kubernetes 1.20 on (kube-apiserver refuses to start without --service-account-issuer)');
    if (!/^https:\/\/\S+$/.test(o.serviceAccountIssuer)) throw new Error(`serviceAccountIssuer must be an https URL, got ${JSON.stringify(o.serviceAccountIssuer)}`);
    requireFlagValue('serviceAccountIssuer', o.serviceAccountIssuer);
  }
  requireAbsolutePath('dir', o.dir ?? KUBERNETES_DIR);
  requireAbsolutePath('binaryDir', o.binaryDir ?? BINARY_DIR);
  requireFlagValue('dir', o.dir ?? KUBERNETES_DIR);
  requireFlagValue('binaryDir', o.binaryDir ?? BINARY_DIR);
  if (o.verbosity !== undefined && (!Number.isInteger(o.verbosity) || o.verbosity < 0 || o.verbosity > 10)) throw new Error(`verbosity must be 0..10, got ${o.verbosity}`);
}

/** kube-apiserver's flags, in the seed's order (see the header for what depends on the version). Pure. */
export function kubeApiserverFlags(o: KubeApiserverOptions): string[] {
  validateKubeApiserverOptions(o);
  const dir = o.dir ?? KUBERNETES_DIR;
  const v = o.kubernetesVersion;
  return [
    `--advertise-address=${o.advertiseAddress}`,
    '--allow-privileged=true',
    `--apiserver-count=${o.apiserverCount}`,
    '--audit-log-maxage=30',
    '--audit-log-maxbackup=3',
    '--audit-log-maxsize=100',
    '--audit-log-path=/var/log/audit.log',
    '--authorization-mode=Node,RBAC',
    '--bind-address=0.0.0.0',
    `--client-ca-file=${dir}/ca.pem`,
    '--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota',
    `--etcd-cafile=${dir}/ca.pem`,
    `--etcd-certfile=${dir}/kubernetes.pem`,
    `--etcd-keyfile=${dir}/kubernetes-key.pem`,
    `--etcd-servers=${o.etcdServers.join(',')}`,
    '--event-ttl=1h',
    `--encryption-provider-config=${dir}/encryption-config.yaml`,
    `--kubelet-certificate-authority=${dir}/ca.pem`,
    `--kubelet-client-certificate=${dir}/kubernetes.pem`,
    `--kubelet-client-key=${dir}/kubernetes-key.pem`,
    ...(atLeast(v, 1, 22) ? [] : ['--kubelet-https=true']),
    "--runtime-config='api/all=true'",
    ...(atLeast(v, 1, 20) ? [`--service-account-issuer=${o.serviceAccountIssuer}`] : []),
    `--service-account-key-file=${dir}/service-account.pem`,
    ...(atLeast(v, 1, 20) ? [`--service-account-signing-key-file=${dir}/service-account-key.pem`] : []),
    `--service-cluster-ip-range=${o.serviceClusterIpRange ?? '10.32.0.0/24'}`,
    `--service-node-port-range=${o.serviceNodePortRange ?? '30000-32767'}`,
    `--tls-cert-file=${dir}/kubernetes.pem`,
    `--tls-private-key-file=${dir}/kubernetes-key.pem`,
    `--v=${o.verbosity ?? 2}`,
  ];
}

/** /etc/systemd/system/kube-apiserver.service, as the seed writes it. Pure. */
export function renderKubeApiserverUnit(o: KubeApiserverOptions): string {
  return renderUnit('Kubernetes API Server', `${o.binaryDir ?? BINARY_DIR}/kube-apiserver`, kubeApiserverFlags(o));
}

/** The files kube-apiserver reads besides its unit (a newer one → restart). Pure. */
export function kubeApiserverFiles(dir = KUBERNETES_DIR): string[] {
  return ['ca.pem', 'kubernetes.pem', 'kubernetes-key.pem', 'service-account.pem', 'service-account-key.pem', 'encryption-config.yaml'].map((f) => `${dir}/${f}`);
}

/* ------------------------------------------------------------------ kube-controller-manager */

export interface KubeControllerManagerOptions {
  /** `--cluster-cidr`, default 10.200.0.0/16. */
  clusterCidr?: string;
  /** `--service-cluster-ip-range`, default 10.32.0.0/24. */
  serviceClusterIpRange?: string;
  /** `--cluster-name`, default kubernetes. */
  clusterName?: string;
  dir?: string;
  binaryDir?: string;
  verbosity?: number;
}

export function validateKubeControllerManagerOptions(o: KubeControllerManagerOptions): void {
  requireCidr('clusterCidr', o.clusterCidr ?? '10.200.0.0/16');
  requireCidr('serviceClusterIpRange', o.serviceClusterIpRange ?? '10.32.0.0/24');
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(o.clusterName ?? 'kubernetes')) throw new Error(`clusterName must be lowercase letters, digits and -, got ${JSON.stringify(o.clusterName)}`);
  requireAbsolutePath('dir', o.dir ?? KUBERNETES_DIR);
  requireAbsolutePath('binaryDir', o.binaryDir ?? BINARY_DIR);
  requireFlagValue('dir', o.dir ?? KUBERNETES_DIR);
  requireFlagValue('binaryDir', o.binaryDir ?? BINARY_DIR);
  if (o.verbosity !== undefined && (!Number.isInteger(o.verbosity) || o.verbosity < 0 || o.verbosity > 10)) throw new Error(`verbosity must be 0..10, got ${o.verbosity}`);
}

/** kube-controller-manager's flags, the seed's. Pure. */
export function kubeControllerManagerFlags(o: KubeControllerManagerOptions = {}): string[] {
  validateKubeControllerManagerOptions(o);
  const dir = o.dir ?? KUBERNETES_DIR;
  return [
    '--bind-address=0.0.0.0',
    `--cluster-cidr=${o.clusterCidr ?? '10.200.0.0/16'}`,
    `--cluster-name=${o.clusterName ?? 'kubernetes'}`,
    `--cluster-signing-cert-file=${dir}/ca.pem`,
    `--cluster-signing-key-file=${dir}/ca-key.pem`,
    `--kubeconfig=${dir}/kube-controller-manager.kubeconfig`,
    '--leader-elect=true',
    `--root-ca-file=${dir}/ca.pem`,
    `--service-account-private-key-file=${dir}/service-account-key.pem`,
    `--service-cluster-ip-range=${o.serviceClusterIpRange ?? '10.32.0.0/24'}`,
    '--use-service-account-credentials=true',
    `--v=${o.verbosity ?? 2}`,
  ];
}

/** /etc/systemd/system/kube-controller-manager.service, as the seed writes it. Pure. */
export function renderKubeControllerManagerUnit(o: KubeControllerManagerOptions = {}): string {
  return renderUnit('Kubernetes Controller Manager', `${o.binaryDir ?? BINARY_DIR}/kube-controller-manager`, kubeControllerManagerFlags(o));
}

export function kubeControllerManagerFiles(dir = KUBERNETES_DIR): string[] {
  return ['ca.pem', 'ca-key.pem', 'service-account-key.pem', 'kube-controller-manager.kubeconfig'].map((f) => `${dir}/${f}`);
}

/* ------------------------------------------------------------------ kube-scheduler */

export interface KubeSchedulerOptions {
  /** Picks the KubeSchedulerConfiguration apiVersion (see the header). */
  kubernetesVersion: string;
  dir?: string;
  configDir?: string;
  binaryDir?: string;
  verbosity?: number;
}

/** /etc/kubernetes/config/kube-scheduler.yaml, the seed's with the apiVersion the binary reads. Pure. */
export function renderKubeSchedulerConfig(o: Pick<KubeSchedulerOptions, 'kubernetesVersion' | 'dir'>): string {
  return [
    `apiVersion: ${schedulerConfigApiVersion(o.kubernetesVersion)}`,
    'kind: KubeSchedulerConfiguration',
    'clientConnection:',
    `  kubeconfig: "${o.dir ?? KUBERNETES_DIR}/kube-scheduler.kubeconfig"`,
    'leaderElection:',
    '  leaderElect: true',
    '',
  ].join('\n');
}

export function validateKubeSchedulerOptions(o: KubeSchedulerOptions): void {
  parseKubernetesVersion(o.kubernetesVersion);
  for (const key of ['dir', 'configDir', 'binaryDir'] as const) {
    const value = o[key] ?? { dir: KUBERNETES_DIR, configDir: KUBERNETES_CONFIG_DIR, binaryDir: BINARY_DIR }[key];
    requireAbsolutePath(key, value);
    requireFlagValue(key, value);
  }
  if (o.verbosity !== undefined && (!Number.isInteger(o.verbosity) || o.verbosity < 0 || o.verbosity > 10)) throw new Error(`verbosity must be 0..10, got ${o.verbosity}`);
}

/** /etc/systemd/system/kube-scheduler.service, as the seed writes it. Pure. */
export function renderKubeSchedulerUnit(o: KubeSchedulerOptions): string {
  validateKubeSchedulerOptions(o);
  return renderUnit('Kubernetes Scheduler', `${o.binaryDir ?? BINARY_DIR}/kube-scheduler`, [
    `--config=${o.configDir ?? KUBERNETES_CONFIG_DIR}/kube-scheduler.yaml`,
    `--v=${o.verbosity ?? 2}`,
  ]);
}

/* ------------------------------------------------------------------ the control plane's tasks */

export interface ControlPlaneParams {
  kubernetesVersion: string;
  /** This controller's address (per host: `(host) => hostIp(host)`). */
  advertiseAddress: string;
  /** Every controller's address, in inventory order: etcd servers and the API server count. */
  controllers: readonly string[];
  serviceAccountIssuer?: string;
  serviceClusterIpRange?: string;
  clusterCidr?: string;
  serviceNodePortRange?: string;
  dir?: string;
  binaryDir?: string;
}

/**
 * The seed's "Provision the Kubernetes Control Plane" on one controller, in its order:
 * `mkdir -p /etc/kubernetes/config`; kube-apiserver.service; kube-controller-manager.service;
 * kube-scheduler.yaml and kube-scheduler.service; `systemctl daemon-reload`, `enable`, `start`.
 * A service is restarted (a handler, once, at the end of the play) only when its unit or its
 * configuration changed, and — by the effect rather than the edit — when a certificate, key or
 * kubeconfig it reads (installed by an earlier play) is newer than the running process.
 * The binaries and certificates must be in place first (ensureBinary, installPkiFiles).
 *
 * @example
 * await play('control plane', 'controllers', ensureControlPlane({
 *   kubernetesVersion: '1.34.1', advertiseAddress: (host) => String(host.vars.ip),
 *   controllers: ['10.240.0.10', '10.240.0.11', '10.240.0.12'], serviceAccountIssuer: 'https://10.240.0.40:6443',
 * }))
 */
export function ensureControlPlane(params: PerHostParams<ControlPlaneParams>, options: TaskOptions = {}): Task<void>[] {
  const p = params as Record<string, unknown>;
  const dir = typeof p.dir === 'string' ? p.dir : KUBERNETES_DIR;
  const binaryDir = typeof p.binaryDir === 'string' ? p.binaryDir : BINARY_DIR;
  // Rendered once when none of the parameters a file uses depends on the host (so it is validated as the
  // playbook loads), else per host.
  const perHost = <T>(uses: readonly (keyof ControlPlaneParams)[], fn: (resolved: ControlPlaneParams) => T): PerHost<T> =>
    uses.every((key) => typeof p[key] !== 'function') ? fn(params as ControlPlaneParams) : (host: HostView) => fn(resolveParams(params, host));
  const apiserver = perHost(['kubernetesVersion', 'advertiseAddress', 'controllers', 'serviceAccountIssuer', 'serviceClusterIpRange', 'serviceNodePortRange'], (r) =>
    renderKubeApiserverUnit({
      kubernetesVersion: r.kubernetesVersion,
      advertiseAddress: r.advertiseAddress,
      etcdServers: r.controllers.map((ip) => `https://${isIP(ip) === 6 ? `[${ip}]` : ip}:2379`),
      apiserverCount: r.controllers.length,
      ...(r.serviceAccountIssuer !== undefined ? { serviceAccountIssuer: r.serviceAccountIssuer } : {}),
      ...(r.serviceClusterIpRange !== undefined ? { serviceClusterIpRange: r.serviceClusterIpRange } : {}),
      ...(r.serviceNodePortRange !== undefined ? { serviceNodePortRange: r.serviceNodePortRange } : {}),
      dir,
      binaryDir,
    }),
  );
  const controllerManager = perHost(['clusterCidr', 'serviceClusterIpRange'], (r) =>
    renderKubeControllerManagerUnit({
      ...(r.clusterCidr !== undefined ? { clusterCidr: r.clusterCidr } : {}),
      ...(r.serviceClusterIpRange !== undefined ? { serviceClusterIpRange: r.serviceClusterIpRange } : {}),
      dir,
      binaryDir,
    }),
  );
  const schedulerConfig = perHost(['kubernetesVersion'], (r) => renderKubeSchedulerConfig({ kubernetesVersion: r.kubernetesVersion, dir }));
  const scheduler = perHost(['kubernetesVersion'], (r) => renderKubeSchedulerUnit({ kubernetesVersion: r.kubernetesVersion, dir, binaryDir }));
  const schedulerConfigPath = `${KUBERNETES_CONFIG_DIR}/kube-scheduler.yaml`;
  const notify = (unit: string) => ({ ...options, notify: [...(options.notify ?? []), restartService(unit)] });
  const service = (unit: string, files: string[]) => ensureService(unit, { enabled: true, running: true, restartOn: files }, options);
  return [
    ensureDirectory({ path: KUBERNETES_CONFIG_DIR, mode: '0755' }, options),
    ensureSystemdUnit({ name: 'kube-apiserver', content: apiserver }, notify('kube-apiserver')),
    ensureSystemdUnit({ name: 'kube-controller-manager', content: controllerManager }, notify('kube-controller-manager')),
    ensureFile({ path: schedulerConfigPath, content: schedulerConfig, mode: '0644' }, notify('kube-scheduler')),
    ensureSystemdUnit({ name: 'kube-scheduler', content: scheduler }, notify('kube-scheduler')),
    service('kube-apiserver', kubeApiserverFiles(dir)),
    service('kube-controller-manager', kubeControllerManagerFiles(dir)),
    service('kube-scheduler', [`${dir}/kube-scheduler.kubeconfig`]),
  ];
}

/** Resolves per-host parameters of ensureControlPlane for one host (the same rule defineTask applies). */
function resolveParams(params: PerHostParams<ControlPlaneParams>, host: HostView): ControlPlaneParams {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) out[key] = typeof value === 'function' ? (value as (h: HostView) => unknown)(host) : value;
  return out as unknown as ControlPlaneParams;
}

/** The systemd units ensureControlPlane writes (for tests and for `capstan exec … systemctl status`). */
export const CONTROL_PLANE_UNITS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'].map((name) => unitFilePath({ name }));

/* ------------------------------------------------------------------ nginx: HTTP health checks */

/** The seed's server block, /etc/nginx/sites-available/kubernetes.default.svc.cluster.local. Pure. */
export function renderHealthzSite(caFile = `${KUBERNETES_DIR}/ca.pem`): string {
  return [
    'server {',
    '  listen      80;',
    `  server_name ${HEALTHZ_SITE_NAME};`,
    '',
    '  location /healthz {',
    '     proxy_pass                    https://127.0.0.1:6443/healthz;',
    `     proxy_ssl_trusted_certificate ${caFile};`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export interface NginxSiteParams {
  /** The file name in sites-available (and of its link in sites-enabled). */
  name: string;
  content: string;
}

const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What the probe of a site prints: its link's target, or nothing when there is no link. */
function siteProbe(name: string) {
  return sh`readlink -- ${`/etc/nginx/sites-enabled/${name}`} || true`;
}

/**
 * Ensures an nginx site (Debian's layout): `/etc/nginx/sites-available/<name>` with exactly this
 * content (0644) and enabled by the symlink `/etc/nginx/sites-enabled/<name>` → that file (the
 * seed's `sudo ln -s`). After a change, `nginx -t` must accept the whole configuration, else the
 * previous file and link are put back and the task fails with nginx's message. It does not reload
 * nginx: notify reloadService('nginx') (see {@link ensureHealthzProxy}). Id: `nginx-site:<name>`.
 *
 * @example ensureNginxSite({ name: 'kubernetes.default.svc.cluster.local', content: renderHealthzSite() }, { notify: [reloadService('nginx')] })
 */
export function ensureNginxSite(params: PerHostParams<NginxSiteParams>, options?: TaskOptions): Task<void> {
  const paths = (name: string) => ({ available: `/etc/nginx/sites-available/${name}`, enabled: `/etc/nginx/sites-enabled/${name}` });
  return defineTask<NginxSiteParams>(
    {
      kind: 'nginx-site',
      id: (p) => `nginx-site:${p.name}`,
      title: (p) => `nginx site ${p.name} (enabled)`,
      validate: (p) => {
        if (typeof p.name !== 'string' || !SITE_NAME.test(p.name)) throw new Error(`name must be a plain file name, got ${JSON.stringify(p.name)}`);
        if (typeof p.content !== 'string' || p.content === '') throw new Error('content must be the whole site configuration');
      },
      probes: (p) => [
        { kind: 'read', path: paths(p.name).available },
        { kind: 'stat', path: paths(p.name).available },
        { kind: 'exec', command: siteProbe(p.name) },
      ],
      async check(ctx, p) {
        const { available, enabled } = paths(p.name);
        const drift: Drift[] = [];
        const current = await ctx.readText(available);
        if (current !== p.content) drift.push({ subject: 'content', file: available, current, desired: p.content });
        const stat = current === null ? null : await ctx.stat(available);
        if (stat && stat.mode !== '0644') drift.push({ subject: 'mode', current: stat.mode, desired: '0644' });
        const link = (await ctx.probe(siteProbe(p.name))).stdout.trim();
        if (link !== available) drift.push({ subject: enabled, current: link === '' ? 'absent' : `→ ${link}`, desired: `→ ${available}` });
        return drift;
      },
      async apply(ctx, p) {
        const { available, enabled } = paths(p.name);
        const nginx = await ctx.exec(sh`command -v nginx`);
        if (nginx.code !== 0) throw new Error('nginx is not installed (install the nginx package first)');
        const before = await ctx.readText(available);
        const link = (await ctx.exec(siteProbe(p.name))).stdout.trim();
        await ctx.run(sh`mkdir -p -- /etc/nginx/sites-available /etc/nginx/sites-enabled`);
        await ctx.writeFile(available, p.content, { mode: '0644' });
        await ctx.run(sh`ln -sfn -- ${available} ${enabled}`);
        const test = await ctx.exec(sh`nginx -t -q`);
        if (test.code !== 0) {
          // Put back what was there: a configuration nginx refuses must not wait for its next reload.
          if (before === null) await ctx.run(sh`rm -f -- ${available}`);
          else await ctx.writeFile(available, before, { mode: '0644' });
          if (link === '') await ctx.run(sh`rm -f -- ${enabled}`);
          else await ctx.run(sh`ln -sfn -- ${link} ${enabled}`);
          throw new Error(`nginx refuses the configuration (nginx -t, exit ${test.code}): ${(test.stderr || test.stdout).trim()}`);
        }
      },
    },
    params,
    options,
  );
}

/**
 * The seed's "Enable HTTP Health Checks" on a controller: the server block that answers
 * `Host: kubernetes.default.svc.cluster.local` on port 80 and proxies /healthz to the API server
 * over TLS, enabled in sites-enabled, nginx reloaded (a handler) only when that changed, and nginx
 * enabled and running (`systemctl enable nginx`). Install the nginx package first.
 *
 * @example await play('health checks', 'controllers', [ensurePackages(['nginx']), ...ensureHealthzProxy()])
 */
export function ensureHealthzProxy(params: { caFile?: string } = {}, options: TaskOptions = {}): Task<void>[] {
  const caFile = params.caFile ?? `${KUBERNETES_DIR}/ca.pem`;
  requireAbsolutePath('caFile', caFile);
  return [
    ensureNginxSite({ name: HEALTHZ_SITE_NAME, content: renderHealthzSite(caFile) }, { ...options, notify: [...(options.notify ?? []), reloadService('nginx')] }),
    ensureService('nginx', { enabled: true, running: true }, options),
  ];
}

/* ------------------------------------------------------------------ HTTP checks (the seed's curl) */

export interface HttpCheckParams {
  url: string;
  /** `curl --cacert`: the CA that must have signed the server's certificate (https). */
  caFile?: string;
  /** `curl -H "Host: …"` (the seed's nginx check). */
  hostHeader?: string;
  /** `curl -k`: do not verify the server's certificate (the components' self-signed /healthz). */
  insecure?: boolean;
  /** The body that counts as healthy, default `ok`; with `expectJson`, a JSON body instead. */
  expectBody?: string;
  /** The body must be JSON with these string fields present (e.g. `gitVersion` of /version). */
  expectJsonFields?: readonly string[];
  /** How long apply waits for it, default 60 s. */
  timeoutSeconds?: number;
}

/** One HTTP check's outcome, parsed from curl's output (pure). */
export interface HttpAnswer {
  status: number;
  body: string;
  error?: string;
}

/** The probe: `curl -sS` printing the body, then a line `@@status=<code>`. */
export function httpProbe(p: HttpCheckParams) {
  return sh`curl -sS --max-time 5 ${p.caFile ? sh`--cacert ${p.caFile}` : sh``} ${p.insecure ? sh`-k` : sh``} ${p.hostHeader ? sh`-H ${`Host: ${p.hostHeader}`}` : sh``} -w ${'\n@@status=%{http_code}\n'} -- ${p.url}`;
}

/** Parses {@link httpProbe}'s output and exit code. Pure. */
export function parseHttpAnswer(stdout: string, stderr: string, code: number): HttpAnswer {
  const match = /\n?@@status=(\d{3})\n?$/.exec(stdout);
  const body = match ? stdout.slice(0, match.index) : stdout;
  const status = match ? Number(match[1]) : 0;
  return code === 0 ? { status, body } : { status, body, error: stderr.trim().split('\n').pop() || (code === 127 ? 'curl is not installed' : `curl exit ${code}`) };
}

/** Whether an answer is what the check wants; a reason when not. Pure. */
export function httpAnswerProblem(answer: HttpAnswer, p: Pick<HttpCheckParams, 'expectBody' | 'expectJsonFields'>): string | null {
  if (answer.error) return answer.error;
  if (answer.status !== 200) return `HTTP ${answer.status}${answer.body ? `: ${answer.body.trim().slice(0, 200)}` : ''}`;
  if (p.expectJsonFields) {
    let json: unknown;
    try {
      json = JSON.parse(answer.body);
    } catch {
      return `not JSON: ${answer.body.trim().slice(0, 200)}`;
    }
    const missing = p.expectJsonFields.filter((f) => typeof (json as Record<string, unknown>)?.[f] !== 'string');
    return missing.length ? `JSON without ${missing.join(', ')}` : null;
  }
  const wanted = p.expectBody ?? 'ok';
  return answer.body.trim() === wanted ? null : `body ${JSON.stringify(answer.body.trim().slice(0, 200))}, not ${JSON.stringify(wanted)}`;
}

function describeHttpCheck(p: HttpCheckParams): string {
  return `${p.hostHeader ? `${p.hostHeader} via ` : ''}${p.url}`;
}

/**
 * Waits until a URL answers 200 with the expected body, checked from the host with curl — the
 * seed's `curl --cacert ca.pem https://…:6443/version` and `curl -H "Host: kubernetes.default.svc.cluster.local"
 * http://127.0.0.1/healthz`. Read-only: in sync when it answers; otherwise apply waits (up to
 * `timeoutSeconds`) and fails with the last answer. In --check it reports what is not answering yet.
 * Needs curl on the host. Id: `http:<host header>@<url>`.
 *
 * @example httpAnswers({ url: 'https://127.0.0.1:6443/healthz', caFile: '/var/lib/kubernetes/ca.pem' })
 * @example httpAnswers({ url: 'https://10.240.0.40:6443/version', caFile: '/var/lib/kubernetes/ca.pem', expectJsonFields: ['gitVersion'] })
 */
export function httpAnswers(params: PerHostParams<HttpCheckParams>, options?: TaskOptions): Task<void> {
  return defineTask<HttpCheckParams>(
    {
      kind: 'http',
      id: (p) => `http:${p.hostHeader ?? ''}@${p.url}`,
      title: (p) => `${describeHttpCheck(p)} answers ${p.expectJsonFields ? `JSON with ${p.expectJsonFields.join(', ')}` : JSON.stringify(p.expectBody ?? 'ok')}`,
      validate: (p) => {
        if (typeof p.url !== 'string' || !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(p.url)) throw new Error(`url must be an http(s) URL, got ${JSON.stringify(p.url)}`);
        if (p.caFile !== undefined) requireAbsolutePath('caFile', p.caFile);
        if (p.hostHeader !== undefined && !/^[A-Za-z0-9.-]+(:\d+)?$/.test(p.hostHeader)) throw new Error(`hostHeader must be a host name, got ${JSON.stringify(p.hostHeader)}`);
        if (p.timeoutSeconds !== undefined && !(p.timeoutSeconds > 0)) throw new Error('timeoutSeconds must be positive');
      },
      async check(ctx, p) {
        const result = await ctx.probe(httpProbe(p));
        const problem = httpAnswerProblem(parseHttpAnswer(result.stdout, result.stderr, result.code ?? -1), p);
        return problem === null ? [] : [{ subject: describeHttpCheck(p), current: problem, desired: p.expectJsonFields ? 'HTTP 200, JSON' : `HTTP 200 ${JSON.stringify(p.expectBody ?? 'ok')}` }];
      },
      async apply(ctx, p) {
        const deadline = Date.now() + (p.timeoutSeconds ?? 60) * 1000;
        let problem: string | null = 'not checked';
        while (Date.now() < deadline) {
          const result = await ctx.exec(httpProbe(p));
          problem = httpAnswerProblem(parseHttpAnswer(result.stdout, result.stderr, result.code ?? -1), p);
          if (problem === null) return;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
        throw new Error(`${describeHttpCheck(p)} did not answer within ${p.timeoutSeconds ?? 60} s: ${problem}`);
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ RBAC for the kubelet API */

/**
 * The seed's two manifests (`cat <<EOF | kubectl apply --kubeconfig admin.kubeconfig -f -`) with
 * `rbac.authorization.k8s.io/v1` instead of the v1beta1 that Kubernetes stopped serving in 1.22.
 */
export const KUBELET_API_RBAC_MANIFEST = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  annotations:
    rbac.authorization.kubernetes.io/autoupdate: "true"
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
  name: system:kube-apiserver-to-kubelet
rules:
  - apiGroups:
      - ""
    resources:
      - nodes/proxy
      - nodes/stats
      - nodes/log
      - nodes/spec
      - nodes/metrics
    verbs:
      - "*"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:kube-apiserver
  namespace: ""
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kube-apiserver-to-kubelet
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: kubernetes
`;

/** kubectl's resource names for the cluster-scoped kinds {@link ensureClusterObjects} handles. */
const CLUSTER_RESOURCES: Record<string, string> = {
  ClusterRole: 'clusterroles',
  ClusterRoleBinding: 'clusterrolebindings',
};

interface ObjectRef {
  kind: string;
  name: string;
  resource: string;
}

/** The objects of a multi-document manifest, each with its kind, name and kubectl resource. Throws on a kind it does not handle. Pure. */
export function parseClusterObjects(manifest: string): { ref: ObjectRef; object: Record<string, unknown> }[] {
  const out: { ref: ObjectRef; object: Record<string, unknown> }[] = [];
  for (const doc of parseAllDocuments(manifest)) {
    if (doc.errors.length) throw new Error(`the manifest is not valid YAML: ${doc.errors[0]!.message}`);
    const object = doc.toJS() as Record<string, unknown> | null;
    if (object === null) continue;
    const kind = String(object.kind ?? '');
    const name = String((object.metadata as Record<string, unknown> | undefined)?.name ?? '');
    const resource = CLUSTER_RESOURCES[kind];
    if (!resource) throw new Error(`kind ${JSON.stringify(kind)} is not one of ${Object.keys(CLUSTER_RESOURCES).join(', ')}`);
    if (!name) throw new Error(`a ${kind} without metadata.name`);
    out.push({ ref: { kind, name, resource }, object });
  }
  if (out.length === 0) throw new Error('the manifest has no object');
  return out;
}

/**
 * Where `current` (what the API server returns) differs from `desired` (the manifest): every
 * field the manifest sets must be there with the same value — lists element by element, maps
 * key by key — while fields the server adds (uid, resourceVersion, last-applied annotation…) are
 * ignored. An empty string in the manifest matches an absent field (the seed's `namespace: ""` on a
 * cluster-scoped object, which the server drops). Returns the paths that differ. Pure.
 */
export function objectDifferences(desired: unknown, current: unknown, path = ''): string[] {
  if (desired === '' && (current === undefined || current === null || current === '')) return [];
  if (Array.isArray(desired)) {
    if (!Array.isArray(current) || current.length !== desired.length) return [path || '.'];
    return desired.flatMap((item, i) => objectDifferences(item, current[i], `${path}[${i}]`));
  }
  if (desired !== null && typeof desired === 'object') {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return [path || '.'];
    return Object.entries(desired as Record<string, unknown>).flatMap(([key, value]) => objectDifferences(value, (current as Record<string, unknown>)[key], `${path}.${key}`));
  }
  return desired === current ? [] : [path || '.'];
}

export interface ClusterObjectsParams {
  /** The admin kubeconfig on the host (the seed's `--kubeconfig admin.kubeconfig`). */
  kubeconfig: string;
  /** YAML documents of cluster-scoped objects (ClusterRole, ClusterRoleBinding). */
  manifest: string;
  /** For the title: what these objects are. */
  name?: string;
}

/**
 * Ensures cluster-scoped objects exist as a manifest describes them: each is read with
 * `kubectl --kubeconfig <kubeconfig> get <resource> <name> -o json` and compared with the manifest
 * ({@link objectDifferences}); only when one is missing or different is the whole manifest applied,
 * as the seed does, with `kubectl apply --kubeconfig <kubeconfig> -f -`. Check mode only reads.
 * Run it once (a play with `runOnce`) on a controller, after the API answers. Id: `kubernetes-objects:<kind>/<name>,…`.
 *
 * @example ensureClusterObjects({ kubeconfig: '/var/lib/kubernetes/admin.kubeconfig', manifest: KUBELET_API_RBAC_MANIFEST, name: 'RBAC for kubelet API access' })
 */
export function ensureClusterObjects(params: PerHostParams<ClusterObjectsParams>, options?: TaskOptions): Task<void> {
  return defineTask<ClusterObjectsParams>(
    {
      kind: 'kubernetes-objects',
      id: (p) => `kubernetes-objects:${parseClusterObjects(p.manifest).map((o) => `${o.ref.kind}/${o.ref.name}`).join(',')}`,
      title: (p) => `${p.name ? `${p.name}: ` : ''}${parseClusterObjects(p.manifest).map((o) => `${o.ref.kind} ${o.ref.name}`).join(', ')}`,
      validate: (p) => {
        requireAbsolutePath('kubeconfig', p.kubeconfig);
        if (typeof p.manifest !== 'string') throw new Error('manifest must be YAML text');
        parseClusterObjects(p.manifest);
      },
      async check(ctx, p) {
        const drift: Drift[] = [];
        for (const { ref, object } of parseClusterObjects(p.manifest)) {
          const current = await getObject(ctx, p.kubeconfig, ref);
          if (current === null) {
            drift.push({ subject: `${ref.kind} ${ref.name}`, current: 'absent', desired: 'present' });
          } else {
            const differences = objectDifferences(object, current);
            if (differences.length) drift.push({ subject: `${ref.kind} ${ref.name}`, current: `differs at ${differences.join(', ')}`, desired: 'as the manifest' });
          }
        }
        return drift;
      },
      async apply(ctx, p) {
        const result = await ctx.run(sh`kubectl apply --kubeconfig ${p.kubeconfig} -f -`, { stdin: p.manifest, timeoutMs: 120_000 });
        for (const line of result.stdout.split('\n').filter(Boolean)) ctx.log(line);
      },
    },
    params,
    options,
  );
}

/** The object as the API server has it, or null when it does not exist. Throws on any other failure. */
async function getObject(ctx: CheckContext, kubeconfig: string, ref: ObjectRef): Promise<Record<string, unknown> | null> {
  const result = await ctx.probe(sh`kubectl get --kubeconfig ${kubeconfig} ${ref.resource} ${ref.name} -o json`);
  if (result.code !== 0) {
    // Only the API server's answer means absent (`kubectl: not found` from the shell does not).
    if (/Error from server \(NotFound\)/.test(result.stderr)) return null;
    throw new Error(`kubectl get ${ref.resource} ${ref.name} failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  }
  try {
    return JSON.parse(result.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`kubectl get ${ref.resource} ${ref.name} printed no JSON: ${result.stdout.slice(0, 200)}`);
  }
}

/**
 * The seed's "RBAC for Kubelet Authorization": the ClusterRole `system:kube-apiserver-to-kubelet`
 * and the ClusterRoleBinding `system:kube-apiserver` to the user `kubernetes` (the API server's
 * kubelet client certificate), applied only when missing or different. Run once on a controller.
 *
 * @example await play('RBAC for kubelet authorization', 'controllers[0]', [ensureKubeletApiRbac({ kubeconfig: '/var/lib/kubernetes/admin.kubeconfig' })], { runOnce: true })
 */
export function ensureKubeletApiRbac(params: { kubeconfig: string }, options?: TaskOptions): Task<void> {
  return ensureClusterObjects({ kubeconfig: params.kubeconfig, manifest: KUBELET_API_RBAC_MANIFEST, name: 'API server → kubelet RBAC' }, options);
}

/* ------------------------------------------------------------------ HAProxy, the seed's front end */

/** One API server behind the balancer. */
export interface FrontEndServer {
  name: string;
  address: string;
}

/**
 * /etc/haproxy/haproxy.cfg as seed 003 writes it: Debian's global and defaults sections, the
 * frontend `proxynode` on *:80 and *:6443 (TCP) to the backend `k8sServers` (round robin over the
 * controllers' :6443, each with `check`), and the statistics page on :9999/stats. Only the
 * trailing blanks and the "Add the following lines" comment are left out. Pure. (tasks/haproxy.ts
 * renders seeds 002 and 004, whose files differ in every section.)
 */
export function renderFrontEndHaproxyConfig(servers: readonly FrontEndServer[]): string {
  validateFrontEndServers(servers);
  return [
    '# Managed by Capstan: the Kubernetes API front end (seed 003). Changes here are overwritten.',
    'global',
    '        log /dev/log    local0',
    '        log /dev/log    local1 notice',
    '        chroot /var/lib/haproxy',
    '        stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners',
    '        stats timeout 30s',
    '        user haproxy',
    '        group haproxy',
    '        daemon',
    '',
    '        # Default SSL material locations',
    '        ca-base /etc/ssl/certs',
    '        crt-base /etc/ssl/private',
    '',
    '        # See: https://ssl-config.mozilla.org/#server=haproxy&server-version=2.0.3&config=intermediate',
    '        ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384',
    '        ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
    '        ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets',
    '',
    'defaults',
    '        log     global',
    '        mode    tcp',
    '        option  tcplog',
    '        option  dontlognull',
    '        timeout connect 5000',
    '        timeout client  50000',
    '        timeout server  50000',
    ...[400, 403, 408, 500, 502, 503, 504].map((code) => `        errorfile ${code} /etc/haproxy/errors/${code}.http`),
    '',
    'frontend proxynode',
    '        bind *:80',
    '        bind *:6443',
    '        stats uri /proxystats',
    '        default_backend k8sServers',
    '',
    'backend k8sServers',
    '        balance roundrobin',
    ...servers.map((s) => `        server ${s.name} ${isIP(s.address) === 6 ? `[${s.address}]` : s.address}:6443 check`),
    '',
    'listen stats',
    '        bind :9999',
    '        mode http',
    '        stats enable',
    '        stats hide-version',
    '        stats uri /stats',
    '',
  ].join('\n');
}

function validateFrontEndServers(servers: readonly FrontEndServer[]): void {
  if (!Array.isArray(servers) || servers.length === 0) throw new Error('servers must list at least one controller');
  const names = new Set<string>();
  for (const s of servers) {
    if (!/^[A-Za-z0-9._:-]+$/.test(String(s?.name))) throw new Error(`server name ${JSON.stringify(s?.name)} must be letters, digits, . _ : -`);
    if (names.has(s.name)) throw new Error(`server ${s.name} is listed twice`);
    names.add(s.name);
    if (isIP(s.address) === 0) throw new Error(`server ${s.name}: address ${JSON.stringify(s.address)} is not an IP address`);
  }
}

const HAPROXY_CONFIG = '/etc/haproxy/haproxy.cfg';

/**
 * The seed's load balancer on the balancer host: haproxy.cfg exactly {@link renderFrontEndHaproxyConfig}
 * (checked with `haproxy -c` in the write's temp file, before the rename that would replace the old
 * file: a configuration haproxy refuses never replaces a working one), haproxy enabled and running
 * (`systemctl enable haproxy`, `systemctl start haproxy`), restarted — a handler, once — only when
 * the file changed (or when it runs an older file than the one on disk). Install the haproxy
 * package first. Config id: `file:/etc/haproxy/haproxy.cfg`.
 *
 * @example
 * const servers = [{ name: 'controller-0', address: '10.240.0.10' }, { name: 'controller-1', address: '10.240.0.11' }];
 * await play('load balancer', 'loadbalancer', [ensurePackages(['haproxy']), ...ensureFrontEndHaproxy({ servers })]);
 */
export function ensureFrontEndHaproxy(params: PerHostParams<{ servers: readonly FrontEndServer[] }>, options: TaskOptions = {}): Task<void>[] {
  const config = defineTask<{ servers: readonly FrontEndServer[] }>(
    {
      kind: 'haproxy-config',
      id: () => `file:${HAPROXY_CONFIG}`,
      title: (p) => `haproxy: *:80, *:6443 → ${p.servers.map((s) => `${s.name} ${s.address}:6443`).join(', ')}; stats :9999/stats`,
      validate: (p) => validateFrontEndServers(p.servers),
      probes: () => [{ kind: 'read', path: HAPROXY_CONFIG }],
      async check(ctx, p) {
        const current = await ctx.readText(HAPROXY_CONFIG);
        const desired = renderFrontEndHaproxyConfig(p.servers);
        return current === desired ? [] : [{ subject: 'content', file: HAPROXY_CONFIG, current, desired }];
      },
      async apply(ctx, p) {
        const desired = renderFrontEndHaproxyConfig(p.servers);
        await ctx.run(sh`mkdir -p -m 0755 /etc/haproxy`);
        await ctx.writeFile(HAPROXY_CONFIG, desired, { mode: '0644', validate: haproxyConfigCheck });
      },
    },
    params,
    { ...options, notify: [...(options.notify ?? []), restartService('haproxy')] },
  );
  return [config, ensureService('haproxy', { enabled: true, running: true, restartOn: [HAPROXY_CONFIG] }, options)];
}
