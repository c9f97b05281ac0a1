/**
 * Read-only tasks for playbooks/status.ts: the nodes as the API server lists them, the bootstrap
 * tokens outstanding, and each control plane's /readyz, VIP and haproxy. None of them changes
 * anything: `check` finds no drift, the reading is in `result`, so --check shows the same.
 */
import { defineTask, sh, type CheckContext, type Command, type Task, type TaskOptions } from '../runner/index.js';
import { apiserverEndpoint, MANIFESTS_DIR } from './certs.js';
import { parseNodes, parseTokenList, type ControlPlaneStatus, type JoinToken, type NodeStatus } from './status-parse.js';

const ADMIN_CONF = '/etc/kubernetes/admin.conf';
const KUBEADM_CA = '/etc/kubernetes/pki/ca.crt';

/** `kubectl get nodes -o json` with a control plane's admin kubeconfig. */
export function readNodesCommand(kubeconfig: string): Command {
  return sh`kubectl --kubeconfig ${kubeconfig} get nodes -o json`;
}

/** kubeadm's: `kubectl get nodes -o json` with /etc/kubernetes/admin.conf. */
export const READ_NODES: Command = readNodesCommand(ADMIN_CONF);

/**
 * `kubeadm token list`, each token's secret replaced on the host by as many asterisks (the columns
 * stay aligned), so the secret never crosses the connection nor reaches a log.
 */
export const READ_JOIN_TOKENS: Command = sh`tokens=$(kubeadm token list --kubeconfig ${ADMIN_CONF}) || exit $?; printf '%s\n' "$tokens" | sed -E ${'s/^([a-z0-9]{6})\\.[a-z0-9]{16}/\\1.****************/'}`;

async function mustProbe(ctx: Pick<CheckContext, 'probe'>, command: Command, what: string): Promise<string> {
  const result = await ctx.probe(command);
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.trim().split('\n').slice(-2).join(' ')}`);
  return result.stdout;
}

export interface ReadNodesParams {
  /** The admin kubeconfig on the host; default kubeadm's /etc/kubernetes/admin.conf (the hard way's: /var/lib/kubernetes/admin.kubeconfig). */
  kubeconfig?: string;
}

/**
 * The cluster's nodes from `kubectl get nodes -o json` with the control plane's admin kubeconfig
 * (read-only, never drifts): name, roles, kubelet version, Ready, internal IP. Run it on a control plane.
 *
 * @example const nodes = readNodes(); const result = await play('nodes', 'control_plane', [nodes]); result.value(nodes);
 */
export function readNodes(params: ReadNodesParams = {}, options?: TaskOptions): Task<NodeStatus[]> {
  const command = (p: ReadNodesParams) => readNodesCommand(p.kubeconfig ?? ADMIN_CONF);
  return defineTask<ReadNodesParams, NodeStatus[]>(
    {
      kind: 'status',
      id: () => 'status:nodes',
      title: () => 'read nodes (kubectl get nodes)',
      probes: (p) => [{ kind: 'exec', command: command(p) }],
      check: async () => [],
      apply: async () => undefined,
      result: async (ctx, p) => parseNodes(await mustProbe(ctx, command(p), 'kubectl get nodes')),
    },
    params,
    options,
  );
}

/**
 * The bootstrap tokens outstanding, from `kubeadm token list` (read-only, never drifts): only each
 * token's id leaves the host, its secret is masked there. Run it on a control plane.
 *
 * @example const tokens = readJoinTokens(); const result = await play('tokens', 'control_plane', [tokens]); result.value(tokens);
 */
export function readJoinTokens(options?: TaskOptions): Task<JoinToken[]> {
  return defineTask<Record<string, never>, JoinToken[]>(
    {
      kind: 'status',
      id: () => 'status:join-tokens',
      title: () => 'read join tokens (kubeadm token list, ids only)',
      probes: () => [{ kind: 'exec', command: READ_JOIN_TOKENS }],
      check: async () => [],
      apply: async () => undefined,
      result: async (ctx) => parseTokenList(await mustProbe(ctx, READ_JOIN_TOKENS, 'kubeadm token list')),
    },
    {},
    options,
  );
}

/** Where a control plane's API server answers /readyz, when it is not read from kubeadm's manifest. */
export interface ReadyzEndpoint {
  /** e.g. https://127.0.0.1:6443/readyz */
  url: string;
  /** The cluster CA on the host, to verify the API server's certificate. */
  cacert: string;
}

export interface ControlPlaneStatusParams {
  /**
   * Ask the API server on this host for /readyz: true reads its address from kubeadm's
   * kube-apiserver manifest, an endpoint says where (the hard way); false on an external balancer.
   */
  readyz: boolean | ReadyzEndpoint;
  /** systemd units whose `systemctl is-active` state is shown (the hard way's etcd, kube-apiserver…). */
  units?: readonly string[];
  /** The keepalived VIP (stacked-ha's vip_address): whether this host holds it. */
  vip?: string;
  /** Whether haproxy runs here (stacked-ha): `systemctl is-active haproxy`. */
  haproxy?: boolean;
}

async function kubeadmReadyzEndpoint(ctx: Pick<CheckContext, 'readText'>): Promise<ReadyzEndpoint | string> {
  const manifest = await ctx.readText(`${MANIFESTS_DIR}/kube-apiserver.yaml`);
  if (manifest === null) return `no ${MANIFESTS_DIR}/kube-apiserver.yaml`;
  const { address, port } = apiserverEndpoint(manifest);
  return { url: `https://${address.includes(':') ? `[${address}]` : address}:${port}/readyz`, cacert: KUBEADM_CA };
}

async function readyzOf(ctx: Pick<CheckContext, 'probe' | 'readText'>, where: true | ReadyzEndpoint): Promise<string> {
  const endpoint = where === true ? await kubeadmReadyzEndpoint(ctx) : where;
  if (typeof endpoint === 'string') return endpoint;
  const answer = await ctx.probe(sh`curl -sS --max-time 5 --cacert ${endpoint.cacert} ${endpoint.url}`);
  return answer.code === 0 ? answer.stdout.trim() : `${endpoint.url}: ${answer.stderr.trim() || `curl exit ${answer.code}`}`;
}

/** `systemctl is-active` prints one state per unit, in order, exiting non-zero when any is not active (pure). */
export function unitStates(units: readonly string[], isActiveOutput: string): Record<string, string> {
  const states = isActiveOutput.split('\n').map((line) => line.trim()).filter(Boolean);
  return Object.fromEntries(units.map((unit, i) => [unit, states[i] ?? 'unknown']));
}

/** Whether `ip -o addr show` lists `vip` on one of this host's interfaces (pure). */
export function holdsAddress(ipAddrOutput: string, vip: string): boolean {
  return ipAddrOutput.split('\n').some((line) => line.split(/\s+/).some((word) => word.split('/')[0] === vip));
}

/**
 * A control plane's (or balancer's) serving state, read-only: the API server's /readyz (curl with
 * the cluster CA, at the kubeadm manifest's advertise address or the endpoint given), the state of
 * the systemd units named, whether it holds the VIP, haproxy's state.
 *
 * @example await play('control planes', 'control_plane', [readControlPlaneStatus({ readyz: true, vip: '192.168.0.66', haproxy: true })]);
 */
export function readControlPlaneStatus(params: ControlPlaneStatusParams, options?: TaskOptions): Task<ControlPlaneStatus> {
  return defineTask<ControlPlaneStatusParams, ControlPlaneStatus>(
    {
      kind: 'status',
      id: () => 'status:control-plane',
      title: (p) => ['read', p.readyz ? '/readyz' : '', p.units?.length ? 'services' : '', p.vip ? `VIP ${p.vip}` : '', p.haproxy ? 'haproxy' : ''].filter(Boolean).join(' '),
      validate: (p) => {
        if (typeof p.readyz === 'object' && !/^https:\/\/\S+$/.test(p.readyz.url)) throw new Error(`readyz.url must be an https:// URL, got ${JSON.stringify(p.readyz.url)}`);
        for (const unit of p.units ?? []) if (!/^[\w@.:-]+$/.test(unit)) throw new Error(`not a systemd unit name: ${JSON.stringify(unit)}`);
      },
      probes: (p) => [
        ...(p.units?.length ? [{ kind: 'exec' as const, command: sh`systemctl is-active ${p.units}` }] : []),
        ...(p.vip ? [{ kind: 'exec' as const, command: sh`ip -o addr show` }] : []),
        ...(p.haproxy ? [{ kind: 'exec' as const, command: sh`systemctl is-active haproxy` }] : []),
      ],
      check: async () => [],
      apply: async () => undefined,
      async result(ctx, p) {
        const status: ControlPlaneStatus = { host: ctx.host.name, readyz: p.readyz ? await readyzOf(ctx, p.readyz) : '-' };
        // is-active exits 3 when a unit is not active, still printing every state.
        if (p.units?.length) status.units = unitStates(p.units, (await ctx.probe(sh`systemctl is-active ${p.units}`)).stdout);
        if (p.vip) status.holdsVip = holdsAddress((await mustProbe(ctx, sh`ip -o addr show`, 'ip -o addr show')), p.vip);
        // is-active exits 3 for inactive, still printing the state.
        if (p.haproxy) status.haproxy = (await ctx.probe(sh`systemctl is-active haproxy`)).stdout.trim() || 'unknown';
        return status;
      },
    },
    params,
    options,
  );
}
