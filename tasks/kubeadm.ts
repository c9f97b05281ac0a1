import { createHash, X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { defineTask, Pending, RefusalError, Secret, sh, type ApplyContext, type CheckContext, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { parseKubernetesVersion, type KubernetesVersion } from './kubernetes-version.js';

/** Where kubeadm keeps what these tasks look at. */
export const ADMIN_CONF = '/etc/kubernetes/admin.conf';
export const KUBELET_CONF = '/etc/kubernetes/kubelet.conf';
export const CA_CERT = '/etc/kubernetes/pki/ca.crt';
export const KUBEADM_CONFIG = '/etc/kubernetes/kubeadm-config.yaml';

/**
 * A kubeadm cluster, as later plays need it: where to join and how to trust it. It never holds a
 * token or certificate key: those are minted just before each join, on `controlPlane`.
 */
export interface Cluster {
  /** host:port joins talk to (the controlPlaneEndpoint for HA, else the first API server). */
  endpoint: string;
  /** sha256:<hex> of the CA's public key (SubjectPublicKeyInfo), for --discovery-token-ca-cert-hash. */
  caCertHash: string;
  /** Inventory name of the host that mints tokens and re-uploads certificates. */
  controlPlane: string;
}

export interface KubeadmInitParams {
  /** Pod network CIDR (the seeds use 10.10.0.0/16). */
  podSubnet: string;
  serviceSubnet?: string;
  /** The API server's advertise address; default: the host's `ip` var, else ansible_host. */
  advertiseAddress?: string;
  bindPort?: number;
  /** host:port of the load balancer or VIP in front of several control planes (HA). */
  controlPlaneEndpoint?: string;
  /** Upload control-plane certificates for other control planes to join; default: when controlPlaneEndpoint is set. */
  uploadCerts?: boolean;
  /** e.g. "v1.34.1"; default: the installed kubeadm's own version. */
  kubernetesVersion?: string;
  criSocket?: string;
  /** Extra kubelet flags for this node (e.g. { 'node-ip': '10.0.0.11' }). */
  kubeletExtraArgs?: Record<string, string>;
  ignorePreflightErrors?: string[];
}

/** The kubeadm config API for a kubeadm version: v1beta4 from 1.31 on, v1beta3 before (pure). */
export function kubeadmApiVersion(kubeadmVersion: string): 'kubeadm.k8s.io/v1beta4' | 'kubeadm.k8s.io/v1beta3' {
  let version: KubernetesVersion;
  try {
    version = parseKubernetesVersion(kubeadmVersion);
  } catch {
    throw new Error(`cannot read a version from kubeadm's ${JSON.stringify(kubeadmVersion)}`);
  }
  return version.major > 1 || version.minor >= 31 ? 'kubeadm.k8s.io/v1beta4' : 'kubeadm.k8s.io/v1beta3';
}

/**
 * The kubeadm config file (InitConfiguration + ClusterConfiguration) for `kubeadm init --config`
 * (pure). v1beta4 writes kubelet extra args as a list of {name, value}; v1beta3 as a map.
 */
export function kubeadmInitConfig(params: KubeadmInitParams & { advertiseAddress: string; nodeName: string }, apiVersion: string): string {
  const extraArgs = params.kubeletExtraArgs ?? {};
  const nodeRegistration: Record<string, unknown> = { name: params.nodeName };
  if (params.criSocket) nodeRegistration.criSocket = params.criSocket;
  if (Object.keys(extraArgs).length) {
    nodeRegistration.kubeletExtraArgs = apiVersion.endsWith('v1beta4')
      ? Object.entries(extraArgs).map(([name, value]) => ({ name, value }))
      : extraArgs;
  }
  if (params.ignorePreflightErrors?.length) nodeRegistration.ignorePreflightErrors = params.ignorePreflightErrors;
  const init = {
    apiVersion,
    kind: 'InitConfiguration',
    localAPIEndpoint: { advertiseAddress: params.advertiseAddress, bindPort: params.bindPort ?? 6443 },
    nodeRegistration,
  };
  const networking: Record<string, string> = { podSubnet: params.podSubnet };
  if (params.serviceSubnet) networking.serviceSubnet = params.serviceSubnet;
  const cluster: Record<string, unknown> = { apiVersion, kind: 'ClusterConfiguration' };
  if (params.kubernetesVersion) cluster.kubernetesVersion = params.kubernetesVersion;
  if (params.controlPlaneEndpoint) cluster.controlPlaneEndpoint = params.controlPlaneEndpoint;
  cluster.networking = networking;
  return `# Written by Capstan for kubeadm init.\n${stringify(init)}---\n${stringify(cluster)}`;
}

/** sha256:<hex> of a PEM certificate's SubjectPublicKeyInfo: kubeadm's --discovery-token-ca-cert-hash (pure). */
export function caCertHash(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/** Hides bootstrap tokens and certificate keys in kubeadm's output before it is shown (-v). */
export function redactKubeadmOutput(text: string): string {
  return text
    .replace(/\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g, '***')
    .replace(/\b[a-f0-9]{64}\b/g, (hex, offset: number, whole: string) => (whole.slice(Math.max(0, offset - 8), offset).includes('sha256:') ? hex : '***'));
}

function validateCidr(name: string, value: string | undefined): void {
  if (value === undefined) return;
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  if (!match || match.slice(1, 5).some((o) => Number(o) > 255) || Number(match[5]) > 32) throw new Error(`${name} must be an IPv4 CIDR like 10.10.0.0/16, got ${JSON.stringify(value)}`);
}

function advertiseAddressOf(params: KubeadmInitParams, vars: Record<string, unknown>): string {
  const address = params.advertiseAddress ?? vars.ip ?? vars.ansible_host;
  if (typeof address !== 'string' || address === '') throw new Error('no advertise address: set advertiseAddress, or the host var ip / ansible_host');
  return address;
}

/** Log kubeadm's output without its secrets. */
function logOutput(ctx: ApplyContext, text: string): void {
  for (const line of redactKubeadmOutput(text).split('\n').filter(Boolean).slice(-30)) ctx.log(line);
}

async function apiAnswers(ctx: { probe: ApplyContext['probe'] }): Promise<boolean> {
  const result = await ctx.probe(sh`kubectl --kubeconfig=${ADMIN_CONF} get --raw=/readyz --request-timeout=5s`);
  return result.code === 0;
}

/**
 * Throws when a Kubernetes API server already answers at the shared endpoint (a balancer or VIP)
 * while this host has no control plane: `kubeadm init` here would start a second cluster behind
 * the endpoint of a running one — what happens when the first control plane of the inventory was
 * removed (playbooks/remove-node.ts) and the topology's playbook runs again unchanged. Asked with
 * curl (installed by the topology playbooks); without curl, or when nothing answers, init goes on.
 */
async function refuseSecondCluster(ctx: Pick<CheckContext, 'probe' | 'host'>, endpoint: string | undefined): Promise<void> {
  if (endpoint === undefined) return;
  const url = `https://${endpoint.includes(':') ? endpoint : `${endpoint}:6443`}/version`;
  const answer = await ctx.probe(sh`command -v curl >/dev/null 2>&1 || exit 0; curl -sk --max-time 5 ${url}`);
  const version = answer.code === 0 ? /"gitVersion"\s*:\s*"([^"]+)"/.exec(answer.stdout)?.[1] : undefined;
  if (version === undefined) return;
  throw new RefusalError(
    `a Kubernetes API server (${version}) already answers at the control-plane endpoint ${endpoint}, and ${ctx.host.name} has no control plane: ` +
      `kubeadm init here would start a second cluster behind it. If ${ctx.host.name} was removed from that cluster, put a control plane of the running cluster first in the control_plane group, so ${ctx.host.name} joins it`,
  );
}

/**
 * What a finished `kubeadm init` leaves in the cluster and an interrupted one may lack: the
 * cluster-info ConfigMap (phase bootstrap-token; joins discover the cluster through it) and the
 * kube-proxy ConfigMap (phase addon, the last one). Returns those that are missing.
 */
async function missingInitObjects(ctx: { probe: ApplyContext['probe'] }): Promise<string[]> {
  const wanted = [
    { namespace: 'kube-public', name: 'cluster-info' },
    { namespace: 'kube-system', name: 'kube-proxy' },
  ];
  const result = await ctx.probe(
    sh`for object in ${wanted.map((w) => `${w.namespace}/${w.name}`)}; do kubectl --kubeconfig=${ADMIN_CONF} --request-timeout=5s -n "\${object%%/*}" get configmap "\${object#*/}" >/dev/null 2>&1 || echo "\$object"; done`,
  );
  return result.stdout.split('\n').filter(Boolean).map((object) => `ConfigMap ${object}`);
}

/**
 * Initialises the first control plane with `kubeadm init --config` (run it with `runOnce`). In sync
 * when /etc/kubernetes/admin.conf exists and the API server answers. The config file uses the
 * kubeadm API version that the installed kubeadm speaks (v1beta4 from 1.31). Its value is the
 * {@link Cluster} that joins use — never a token.
 *
 * @example
 * const init = kubeadmInit({ podSubnet: '10.10.0.0/16' });
 * const initPlay = await play('init', 'control_plane[0]', [init], { runOnce: true });
 * await play('join workers', 'workers', [kubeadmJoin({ cluster: initPlay.value(init) })]);
 */
export function kubeadmInit(params: PerHostParams<KubeadmInitParams>, options?: TaskOptions): Task<Cluster> {
  return defineTask<KubeadmInitParams, Cluster>(
    {
      kind: 'kubeadm-init',
      id: () => 'kubeadm:init',
      title: (p) => `kubeadm init (pod network ${p.podSubnet}${p.controlPlaneEndpoint ? `, endpoint ${p.controlPlaneEndpoint}` : ''})`,
      validate: (p) => {
        validateCidr('podSubnet', p.podSubnet);
        validateCidr('serviceSubnet', p.serviceSubnet);
        if (p.controlPlaneEndpoint !== undefined && !/^[A-Za-z0-9.-]+:\d+$|^[A-Za-z0-9.-]+$/.test(p.controlPlaneEndpoint)) {
          throw new Error(`controlPlaneEndpoint must be host or host:port, got ${JSON.stringify(p.controlPlaneEndpoint)}`);
        }
        if (p.kubernetesVersion !== undefined) parseKubernetesVersion(p.kubernetesVersion);
      },
      probes: () => [{ kind: 'stat', path: ADMIN_CONF }],
      provides: () => [{ file: ADMIN_CONF }, { file: KUBELET_CONF }, { running: 'kubelet.service' }],
      async check(ctx, p) {
        if (!(await ctx.stat(ADMIN_CONF))) {
          await refuseSecondCluster(ctx, p.controlPlaneEndpoint);
          return [{ subject: 'control plane', current: 'not initialised', desired: 'initialised with kubeadm init' }];
        }
        if (!(await apiAnswers(ctx))) return [{ subject: 'API server', current: 'not answering', desired: 'answering' }];
        const missing = await missingInitObjects(ctx);
        return missing.length ? [{ subject: 'kubeadm init', current: `stopped before it finished (missing ${missing.join(', ')})`, desired: 'finished' }] : [];
      },
      async apply(ctx, p, drift) {
        if (drift.some((d) => d.subject === 'API server')) {
          throw new Error(`${ADMIN_CONF} exists but the API server does not answer: the control plane is broken, not missing, and Capstan will not re-initialise it (run kubeadm reset -f first if that is what you want)`);
        }
        const unfinished = drift.find((d) => d.subject === 'kubeadm init');
        if (unfinished) {
          // Joins need the cluster-info ConfigMap and the bootstrap RBAC; re-running the whole init would
          // fail its own preflight (ports in use, manifests exist). Say what is missing and how to go on.
          throw new Error(
            `kubeadm init ${String(unfinished.current)}: the API server answers, so Capstan will not re-initialise it. ` +
              `Finish it with \`kubeadm init phase bootstrap-token --config ${KUBEADM_CONFIG}\` and \`kubeadm init phase addon all --config ${KUBEADM_CONFIG}\`, ` +
              'or start over with `kubeadm reset -f`, then run again',
          );
        }
        const version = (await ctx.run(sh`kubeadm version -o short`)).stdout.trim();
        // The hostname now, not the facts gathered when the run started: a play may have just set it (seed 004).
        // Lowercased, as kubeadm's own default (node.GetHostname) is.
        const nodeName = (await ctx.run(sh`hostname`)).stdout.trim().toLowerCase() || ctx.host.name;
        const config = kubeadmInitConfig({ ...p, advertiseAddress: advertiseAddressOf(p, ctx.host.vars), nodeName }, kubeadmApiVersion(version));
        await ctx.run(sh`mkdir -p /etc/kubernetes`);
        await ctx.writeFile(KUBEADM_CONFIG, config, { mode: '0600' });
        const upload = p.uploadCerts ?? p.controlPlaneEndpoint !== undefined;
        const result = await ctx.run(sh`kubeadm init --config ${KUBEADM_CONFIG} ${upload ? ['--upload-certs'] : []}`, { timeoutMs: 900_000 });
        logOutput(ctx, result.stdout);
      },
      async result(ctx, p) {
        const pem = await ctx.readText(CA_CERT);
        if (pem === null) throw new Error(`${CA_CERT} is missing after kubeadm init`);
        const endpoint = p.controlPlaneEndpoint ?? `${advertiseAddressOf(p, ctx.host.vars)}:${p.bindPort ?? 6443}`;
        return { endpoint: endpoint.includes(':') ? endpoint : `${endpoint}:6443`, caCertHash: caCertHash(pem), controlPlane: ctx.host.name };
      },
    },
    params,
    options,
  );
}

export interface KubeadmJoinParams {
  /** The init play's value: `initPlay.value(initTask)`. Pending in check mode before init. */
  cluster: Cluster | Pending | undefined;
  /** Join as another control plane (HA): certificates are re-uploaded just before, for a fresh key. */
  controlPlane?: boolean;
  /** This node's API server address (control planes); default: the host's `ip` var, else ansible_host. */
  advertiseAddress?: string;
  criSocket?: string;
  ignorePreflightErrors?: string[];
  /** Token lifetime: just long enough for this join. */
  tokenTtl?: string;
}

/** Control-plane joins one at a time per cluster: concurrent joins race on etcd membership. */
const controlPlaneJoins = new Map<string, Promise<unknown>>();

function serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = controlPlaneJoins.get(key) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(work);
  controlPlaneJoins.set(key, next);
  return next;
}

/** Reads the 64-hex certificate key from `kubeadm init phase upload-certs --upload-certs` output (pure). */
export function certificateKeyFrom(output: string): string {
  const key = output
    .split('\n')
    .map((l) => l.trim())
    .reverse()
    .find((l) => /^[a-f0-9]{64}$/.test(l));
  if (!key) throw new Error('kubeadm init phase upload-certs printed no certificate key');
  return key;
}

/** Where a join's config file lives while `kubeadm join --config` runs: root-only /etc/kubernetes, removed afterwards. */
export const JOIN_CONFIG = '/etc/kubernetes/capstan-join.yaml';

export interface JoinConfigParams {
  endpoint: string;
  caCertHash: string;
  token: Secret;
  /** Set for a control-plane join: the key that decrypts the kubeadm-certs Secret. */
  certificateKey?: Secret;
  advertiseAddress?: string;
  criSocket?: string;
  ignorePreflightErrors?: string[];
}

/**
 * The JoinConfiguration for `kubeadm join --config` (pure). The token and certificate key go in this
 * file, never in argv: a command line is visible in `ps` to every local user and sudo logs it to the
 * journal. Returned as a Secret, since it holds both.
 */
export function kubeadmJoinConfig(params: JoinConfigParams, apiVersion: string): Secret {
  const nodeRegistration: Record<string, unknown> = {};
  if (params.criSocket) nodeRegistration.criSocket = params.criSocket;
  if (params.ignorePreflightErrors?.length) nodeRegistration.ignorePreflightErrors = params.ignorePreflightErrors;
  const join: Record<string, unknown> = {
    apiVersion,
    kind: 'JoinConfiguration',
    discovery: { bootstrapToken: { apiServerEndpoint: params.endpoint, token: params.token.reveal(), caCertHashes: [params.caCertHash] } },
  };
  if (Object.keys(nodeRegistration).length) join.nodeRegistration = nodeRegistration;
  if (params.certificateKey) {
    join.controlPlane = {
      ...(params.advertiseAddress ? { localAPIEndpoint: { advertiseAddress: params.advertiseAddress } } : {}),
      certificateKey: params.certificateKey.reveal(),
    };
  }
  return new Secret(`# Written by Capstan for kubeadm join; removed when the join ends.\n${stringify(join)}`);
}

/** The id of a bootstrap token (the part before the dot): `kubeadm token delete` takes it, so the secret stays out of argv (pure). */
export function bootstrapTokenId(token: Secret): string {
  const match = /^([a-z0-9]{6})\.[a-z0-9]{16}$/.exec(token.reveal());
  if (!match) throw new Error('kubeadm token create printed no bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}');
  return match[1]!;
}

/**
 * Joins this host to the cluster with `kubeadm join`. In sync when /etc/kubernetes/kubelet.conf
 * exists. Otherwise, just before joining, it mints a token on the control plane
 * (`kubeadm token create --ttl 15m`) and, for control planes, re-uploads the certificates for a
 * fresh certificate key (`kubeadm init phase upload-certs --upload-certs`) — so an expired 24 h token
 * (seed 001) or a certificate key past its 2 h (seeds 002/004) never stops a join — then deletes the
 * token by its id. Token and key are Secrets: never printed, and never in a command line (visible in
 * `ps`, logged by sudo): they reach the host on stdin in a 0600 JoinConfiguration ({@link JOIN_CONFIG})
 * for `kubeadm join --config`, removed when the join ends. Control-plane joins run one at a time.
 *
 * @example
 * const init = kubeadmInit({ podSubnet: '10.244.0.0/16', controlPlaneEndpoint: '172.27.11.200:6443' });
 * const initPlay = await play('init', 'control_plane[0]', [init], { runOnce: true });
 * await play('join control planes', 'control_plane[1:]', [kubeadmJoin({ cluster: initPlay.value(init), controlPlane: true })]);
 * await play('join workers', 'workers', [kubeadmJoin({ cluster: initPlay.value(init) })]);
 */
export function kubeadmJoin(params: PerHostParams<KubeadmJoinParams>, options?: TaskOptions): Task<void> {
  return defineTask<KubeadmJoinParams>(
    {
      kind: 'kubeadm-join',
      id: () => 'kubeadm:join',
      title: (p) => (p.cluster instanceof Pending || p.cluster === undefined ? `kubeadm join${p.controlPlane ? ' (control plane)' : ''}` : `kubeadm join ${p.cluster.endpoint}${p.controlPlane ? ' as a control plane' : ''}`),
      desired: (p) => ({ controlPlane: p.controlPlane === true }),
      validate: (p) => {
        if (p.cluster !== undefined && !(p.cluster instanceof Pending) && (typeof p.cluster.endpoint !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(p.cluster.caCertHash))) {
          throw new Error('cluster must be the value of a kubeadmInit task (endpoint, caCertHash, controlPlane)');
        }
        if (p.tokenTtl !== undefined && !/^\d+[smh]$/.test(p.tokenTtl)) throw new Error(`tokenTtl must look like 15m, got ${p.tokenTtl}`);
      },
      probes: () => [{ kind: 'stat', path: KUBELET_CONF }],
      provides: (p) => [{ file: KUBELET_CONF }, ...(p.controlPlane ? [{ file: ADMIN_CONF }] : []), { running: 'kubelet.service' }],
      verify: true,
      async check(ctx, p) {
        if (await ctx.stat(KUBELET_CONF)) return [];
        if (p.cluster instanceof Pending) return [{ subject: 'joined', current: 'no', desired: 'yes', pending: p.cluster.reason }];
        if (p.cluster === undefined) throw new Error('no cluster to join: the init play produced none (did it fail, or not run on any host?)');
        return [{ subject: 'joined', current: 'no', desired: `yes, to ${p.cluster.endpoint}${p.controlPlane ? ' as a control plane' : ''}` }];
      },
      async apply(ctx, p) {
        const cluster = p.cluster;
        if (!cluster || cluster instanceof Pending) throw new Error('no cluster to join');
        const join = () => joinNow(ctx, cluster, p);
        await (p.controlPlane ? serialised(cluster.controlPlane, join) : join());
      },
    },
    params,
    options,
  );
}

async function joinNow(ctx: ApplyContext, cluster: Cluster, p: KubeadmJoinParams): Promise<void> {
  const controlPlane = await ctx.onHost(cluster.controlPlane);
  // Printed on stdout (not argv); deleted by its id below.
  const token = new Secret((await controlPlane.run(sh`kubeadm token create --ttl ${p.tokenTtl ?? '15m'}`)).stdout.trim());
  const tokenId = bootstrapTokenId(token);
  try {
    let certificateKey: Secret | undefined;
    if (p.controlPlane) certificateKey = new Secret(certificateKeyFrom((await controlPlane.run(sh`kubeadm init phase upload-certs --upload-certs`)).stdout));
    const address = p.advertiseAddress ?? ctx.host.vars.ip ?? ctx.host.vars.ansible_host;
    const version = (await ctx.run(sh`kubeadm version -o short`)).stdout.trim();
    const config = kubeadmJoinConfig(
      {
        endpoint: cluster.endpoint,
        caCertHash: cluster.caCertHash,
        token,
        ...(certificateKey ? { certificateKey } : {}),
        ...(typeof address === 'string' && address ? { advertiseAddress: address } : {}),
        ...(p.criSocket ? { criSocket: p.criSocket } : {}),
        ...(p.ignorePreflightErrors?.length ? { ignorePreflightErrors: p.ignorePreflightErrors } : {}),
      },
      kubeadmApiVersion(version),
    );
    await ctx.run(sh`mkdir -p -m 0755 /etc/kubernetes`);
    try {
      // Sent on stdin; the write's temp file is created 0600 (mktemp) in root-only /etc/kubernetes: never world-readable.
      await ctx.writeFile(JOIN_CONFIG, config, { mode: '0600', owner: 'root', group: 'root' });
      const result = await ctx.run(sh`kubeadm join --config ${JOIN_CONFIG}`, { timeoutMs: 900_000 });
      logOutput(ctx, result.stdout);
    } finally {
      await ctx.exec(sh`rm -f -- ${JOIN_CONFIG}`);
    }
  } finally {
    // The token's job is done: do not leave a credential behind, even if the join failed.
    await controlPlane.exec(sh`kubeadm token delete ${tokenId}`).catch(() => undefined);
  }
}
