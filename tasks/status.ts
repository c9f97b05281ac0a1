/**
 * Read-only tasks for playbooks/status.ts: the nodes as the API server lists them, the bootstrap
 * tokens outstanding, and each control plane's /readyz, VIP and haproxy. None of them changes
 * anything: `check` finds no drift, the reading is in `result`, so --check shows the same.
 */
import { sh, type Command } from '../runner/quote.js';
import { defineTask, type CheckContext, type Task, type TaskOptions } from '../runner/task.js';
import { apiserverEndpoint, MANIFESTS_DIR } from './certs.js';
import { parseNodes, parseTokenList, type ControlPlaneStatus, type JoinToken, type NodeStatus } from './status-parse.js';

const ADMIN_CONF = '/etc/kubernetes/admin.conf';
const KUBEADM_CA = '/etc/kubernetes/pki/ca.crt';

export const READ_NODES: Command = sh`kubectl --kubeconfig ${ADMIN_CONF} get nodes -o json`;

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

/**
 * The cluster's nodes from `kubectl get nodes -o json` with kubeadm's admin.conf (read-only, never
 * drifts): name, roles, kubelet version, Ready, internal IP. Run it on a control plane.
 *
 * @example const nodes = readNodes(); const result = await play('nodes', 'control_plane', [nodes]); result.value(nodes);
 */
export function readNodes(options?: TaskOptions): Task<NodeStatus[]> {
  return defineTask<Record<string, never>, NodeStatus[]>(
    {
      kind: 'status',
      id: () => 'status:nodes',
      title: () => 'read nodes (kubectl get nodes)',
      probes: () => [{ kind: 'exec', command: READ_NODES }],
      check: async () => [],
      apply: async () => undefined,
      result: async (ctx) => parseNodes(await mustProbe(ctx, READ_NODES, 'kubectl get nodes')),
    },
    {},
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

export interface ControlPlaneStatusParams {
  /** Ask the API server on this host for /readyz (false on an external balancer). */
  readyz: boolean;
  /** The keepalived VIP (stacked-ha's vip_address): whether this host holds it. */
  vip?: string;
  /** Whether haproxy runs here (stacked-ha): `systemctl is-active haproxy`. */
  haproxy?: boolean;
}

async function readyzOf(ctx: Pick<CheckContext, 'probe' | 'readText'>): Promise<string> {
  const manifest = await ctx.readText(`${MANIFESTS_DIR}/kube-apiserver.yaml`);
  if (manifest === null) return `no ${MANIFESTS_DIR}/kube-apiserver.yaml`;
  const { address, port } = apiserverEndpoint(manifest);
  const url = `https://${address.includes(':') ? `[${address}]` : address}:${port}/readyz`;
  const answer = await ctx.probe(sh`curl -sS --max-time 5 --cacert ${KUBEADM_CA} ${url}`);
  return answer.code === 0 ? answer.stdout.trim() : `${url}: ${answer.stderr.trim() || `curl exit ${answer.code}`}`;
}

/** Whether `ip -o addr show` lists `vip` on one of this host's interfaces (pure). */
export function holdsAddress(ipAddrOutput: string, vip: string): boolean {
  return ipAddrOutput.split('\n').some((line) => line.split(/\s+/).some((word) => word.split('/')[0] === vip));
}

/**
 * A control plane's (or balancer's) serving state, read-only: the API server's /readyz (curl with
 * the cluster CA at the manifest's advertise address), whether it holds the VIP, haproxy's state.
 *
 * @example await play('control planes', 'control_plane', [readControlPlaneStatus({ readyz: true, vip: '192.168.0.66', haproxy: true })]);
 */
export function readControlPlaneStatus(params: ControlPlaneStatusParams, options?: TaskOptions): Task<ControlPlaneStatus> {
  return defineTask<ControlPlaneStatusParams, ControlPlaneStatus>(
    {
      kind: 'status',
      id: () => 'status:control-plane',
      title: (p) => ['read', p.readyz ? '/readyz' : '', p.vip ? `VIP ${p.vip}` : '', p.haproxy ? 'haproxy' : ''].filter(Boolean).join(' '),
      probes: (p) => [
        ...(p.vip ? [{ kind: 'exec' as const, command: sh`ip -o addr show` }] : []),
        ...(p.haproxy ? [{ kind: 'exec' as const, command: sh`systemctl is-active haproxy` }] : []),
      ],
      check: async () => [],
      apply: async () => undefined,
      async result(ctx, p) {
        const status: ControlPlaneStatus = { host: ctx.host.name, readyz: p.readyz ? await readyzOf(ctx) : '-' };
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
