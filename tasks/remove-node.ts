/**
 * The cluster's side of removing a node, run on a control plane that stays (kubectl with
 * admin.conf, etcdctl against its own member): drain the node, remove its etcd member, delete the
 * Node object. The node's own host is reset with tasks/reset.ts; playbooks/remove-node.ts puts the
 * steps in kubeadm's order ("Remove the node": drain, `kubeadm reset` on the node, delete the node)
 * and keeps etcd's quorum.
 *
 * Each task reads the cluster in its check, so a second run (the node gone) is in sync, and in
 * --check each names the step on another host it waits for.
 */
import { defineTask, sh, type CheckContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { readEtcdMembers, etcdctlLocal } from './etcd-members.js';
import { parseNodes, type NodeStatus } from './status-parse.js';
import { READ_NODES } from './status.js';
import { admin, drainOrUncordon, pendingOf, tail, validateDrainTimeout, validateNodeName } from './upgrade-step.js';

/** What every removal step knows. */
export interface RemovalStepParams {
  /** The node's name in the cluster (kubectl get nodes). */
  node: string;
  /** In --check: the change on another host this step comes after ("kubeadm reset on cp3"). */
  after?: string;
}

const validateNode = (p: RemovalStepParams): void => validateNodeName(p.node);

/** The node as `kubectl get nodes` lists it (null when the cluster has none of that name), read with admin.conf. */
export async function readClusterNode(ctx: Pick<CheckContext, 'probe' | 'host'>, node: string): Promise<NodeStatus | null> {
  const result = await ctx.probe(READ_NODES);
  if (result.code !== 0) throw new Error(`kubectl get nodes on ${ctx.host.name} failed (exit ${result.code}): ${tail(result.stderr || result.stdout, 3)}`);
  return parseNodes(result.stdout).find((n) => n.name === node) ?? null;
}

export interface DrainForRemovalParams extends RemovalStepParams {
  /** kubectl drain's --timeout, in seconds (default 300). */
  timeoutSeconds?: number;
}

/**
 * `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…s` before the node is
 * removed. Drift while the node is in the cluster and Ready: a node that is NotReady (dead, or its
 * kubelet stopped) is not drained — its pods could not confirm their end and the drain would wait
 * out its timeout; they are deleted with the Node object. A failed drain uncordons the node again
 * and stops the run with nothing removed. Not verified (a drained node is still Ready).
 *
 * @example drainForRemoval({ node: 'worker2', timeoutSeconds: 300 })
 */
export function drainForRemoval(params: PerHostParams<DrainForRemovalParams>, options?: TaskOptions): Task<void> {
  return defineTask<DrainForRemovalParams>(
    {
      kind: 'remove-drain',
      id: (p) => `remove-drain:${p.node}`,
      title: (p) => `drain ${p.node}`,
      validate: (p) => {
        validateNode(p);
        validateDrainTimeout(p.timeoutSeconds);
      },
      verify: false,
      async check(ctx, p) {
        const node = await readClusterNode(ctx, p.node);
        if (!node || !node.ready.startsWith('Ready')) return [];
        return [{ subject: 'pods', current: `running on ${p.node}`, desired: 'evicted (DaemonSets stay), node cordoned', ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        await drainOrUncordon((command, options) => ctx.exec(command, options), (line) => ctx.log(line), {
          node: p.node,
          timeoutSeconds: p.timeoutSeconds ?? 300,
          state: (uncordoned, why) => (uncordoned ? `${p.node} was uncordoned and nothing was removed` : `${p.node} is STILL CORDONED (kubectl uncordon failed: ${why}); nothing was removed`),
        });
      },
    },
    params,
    options,
  );
}

/**
 * `kubectl delete node NODE`: the Node object goes, and with it (the pod garbage collector) the
 * pods still bound to it. In sync when the cluster has no such node. Run it after the node's
 * `kubeadm reset` (a kubelet still running registers its node again).
 *
 * @example deleteClusterNode({ node: 'worker2', after: 'kubeadm reset on worker2' })
 */
export function deleteClusterNode(params: PerHostParams<RemovalStepParams>, options?: TaskOptions): Task<void> {
  return defineTask<RemovalStepParams>(
    {
      kind: 'remove-node-object',
      id: (p) => `remove-node-object:${p.node}`,
      title: (p) => `delete node ${p.node}`,
      validate: validateNode,
      async check(ctx, p) {
        const node = await readClusterNode(ctx, p.node);
        return node ? [{ subject: `node ${p.node}`, current: `in the cluster (${node.ready})`, desired: 'deleted', ...pendingOf(ctx, p) }] : [];
      },
      async apply(ctx, p) {
        ctx.log((await ctx.run(admin(sh`delete node ${p.node}`))).stdout.trim());
      },
    },
    params,
    options,
  );
}

export interface EtcdMemberRemovalParams extends RemovalStepParams {
  /** The member's peer URL, `https://10.0.0.13:2380` (kubeadm finds a node's member by it). */
  peerUrl: string;
}

/**
 * `etcdctl member remove <id>` for the member at `peerUrl`, through this host's member (kubeadm
 * layout). In sync when no member has that peer URL — as after the node's own `kubeadm reset`,
 * which removes its member itself; this step is what removes the member of a node that could not
 * be reached. etcd refuses a removal that would cost it quorum; the playbook refuses before that.
 *
 * @example removeEtcdMember({ node: 'cp3', peerUrl: 'https://10.0.0.13:2380' })
 */
export function removeEtcdMember(params: PerHostParams<EtcdMemberRemovalParams>, options?: TaskOptions): Task<void> {
  const member = async (ctx: CheckContext, p: EtcdMemberRemovalParams) => (await readEtcdMembers(ctx, 'kubeadm')).find((m) => m.peerUrl === p.peerUrl);
  return defineTask<EtcdMemberRemovalParams>(
    {
      kind: 'remove-etcd-member',
      id: (p) => `remove-etcd-member:${p.peerUrl}`,
      title: (p) => `etcd member of ${p.node} removed`,
      validate: (p) => {
        validateNode(p);
        if (typeof p.peerUrl !== 'string' || !/^https:\/\/[^\s,/]+:\d+$/.test(p.peerUrl)) throw new Error(`peerUrl must be like https://10.0.0.13:2380, got ${JSON.stringify(p.peerUrl)}`);
      },
      async check(ctx, p): Promise<Drift[]> {
        const found = await member(ctx, p);
        if (!found) return [];
        return [{ subject: `etcd member ${found.name || found.id}`, current: `${found.id} at ${p.peerUrl} (${found.healthy ? 'healthy' : 'not answering'})`, desired: 'removed', ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        const found = await member(ctx, p);
        if (!found) return;
        ctx.log((await ctx.run(etcdctlLocal('kubeadm', ['member', 'remove', found.id]))).stdout.trim());
      },
    },
    params,
    options,
  );
}
