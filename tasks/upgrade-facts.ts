/**
 * What the upgrade playbook reads before it changes anything (kubeadm's "Upgrading kubeadm
 * clusters": versions, node health, the package repository of the target minor). Commands plus pure
 * parsers; {@link upgradeFacts} is the read-only task that makes every read of a host in one round trip.
 */
import { defineTask, sh, type CheckContext, type Command, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ADMIN_CONF } from './kubeadm.js';

/** Where the upgrade tasks record "this node was cordoned by the upgrade" (so only they uncordon it). */
export const UPGRADE_CORDON_MARKER = '/var/lib/capstan/upgrade-cordoned';

/** One node as the API server knows it. */
export interface ClusterNode {
  name: string;
  /** status.nodeInfo.kubeletVersion: the RUNNING kubelet's version ("v1.34.1"). */
  kubeletVersion: string;
  ready: boolean;
  unschedulable: boolean;
}

/** `kubectl get nodes -o json` (or one node's object) → its nodes (pure). */
export function parseClusterNodes(json: string): ClusterNode[] {
  const data = JSON.parse(json) as { kind?: string; items?: unknown[] };
  const items = (data.kind === 'List' || Array.isArray(data.items) ? data.items ?? [] : [data]) as {
    metadata?: { name?: string };
    spec?: { unschedulable?: boolean };
    status?: { nodeInfo?: { kubeletVersion?: string }; conditions?: { type?: string; status?: string }[] };
  }[];
  return items.map((item) => ({
    name: item.metadata?.name ?? '',
    kubeletVersion: item.status?.nodeInfo?.kubeletVersion ?? '',
    ready: (item.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    unschedulable: item.spec?.unschedulable === true,
  }));
}

/** The Debian versions of `name` in an apt `Packages` index, in the index's order (pure). */
export function parsePackagesIndex(text: string, name: string): string[] {
  const versions: string[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const pkg = /^Package:\s*(\S+)\s*$/m.exec(stanza)?.[1];
    const version = /^Version:\s*(\S+)\s*$/m.exec(stanza)?.[1];
    if (pkg === name && version && !versions.includes(version)) versions.push(version);
  }
  return versions;
}

/** `1.35.1-1.1` → `1.35.1`, the upstream part of a Debian version (epoch and revision dropped; pure). */
export function upstreamVersion(debianVersion: string): string {
  return debianVersion.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
}

/** The image tag of a static Pod manifest (`image: registry.k8s.io/kube-apiserver:v1.34.1` → `v1.34.1`); null without one (pure). */
export function manifestImageTag(manifest: string | null): string | null {
  const image = manifest ? /^[\s-]*image:\s*["']?(\S+?)["']?\s*$/m.exec(manifest)?.[1] : undefined;
  if (!image) return null;
  const last = image.slice(image.lastIndexOf('/') + 1);
  return last.includes(':') ? last.slice(last.lastIndexOf(':') + 1) : null;
}

/** The kubectl that reads this node's own Node object with the kubelet's credentials (every kubeadm node has them). */
export function ownNodeCommand(node: string): Command {
  return sh`kubectl --kubeconfig=/etc/kubernetes/kubelet.conf get node ${node} -o json`;
}

/** This node as the API server sees it, read with the kubelet's credentials; throws naming the node when it cannot. */
export async function readOwnNode(ctx: Pick<CheckContext, 'probe'>, node: string): Promise<ClusterNode> {
  const result = await ctx.probe(ownNodeCommand(node));
  if (result.code !== 0) throw new Error(`cannot read node ${node} from the API server: ${result.stderr.trim() || `exit ${result.code}`}`);
  const [found] = parseClusterNodes(result.stdout);
  if (!found) throw new Error(`the API server returned no node ${node}`);
  return found;
}

/** What one host said. */
export interface UpgradeHostFacts {
  host: string;
  /** The node name its kubelet registers (the hostname, lower case). */
  node: string;
  /** `kubeadm version -o short`; "" when kubeadm does not run. */
  kubeadm: string;
  /** The upgrade cordoned this node and has not uncordoned it yet (an interrupted run). */
  cordonedForUpgrade: boolean;
  /** Control planes: the API server's `/version` gitVersion on the node's address (null: no answer) and its /readyz. */
  apiServer?: { version: string | null; readyz: { ok: boolean; text: string } };
  /** The first control plane: every node the API server has, and the repository's kubeadm versions (or why none). */
  cluster?: { nodes: ClusterNode[]; repository: { url: string; versions: string[] } | { url: string; error: string } };
}

export interface UpgradeFactsParams {
  /** Control planes: the node's address, where its API server listens (6443). */
  apiServerAddress?: string;
  /** On the first control plane only: the target minor's repository (`…/core:/stable:/v1.35/deb/`), whose Packages index is read. */
  repositoryUrl?: string;
}

const versionOf = (text: string) => text.trim().split('\n')[0]?.trim() ?? '';

async function readFacts(ctx: CheckContext, p: UpgradeFactsParams): Promise<UpgradeHostFacts> {
  const [kubeadm, marker] = await Promise.all([ctx.probe(sh`kubeadm version -o short`), ctx.stat(UPGRADE_CORDON_MARKER)]);
  const facts: UpgradeHostFacts = {
    host: ctx.host.name,
    node: (ctx.host.facts.hostname || ctx.host.name).toLowerCase(),
    kubeadm: kubeadm.code === 0 ? versionOf(kubeadm.stdout) : '',
    cordonedForUpgrade: marker !== null,
  };
  if (p.apiServerAddress) {
    const base = `https://${p.apiServerAddress}:6443`;
    // Anonymous /version and /readyz, as kubeadm's health checks read them (system:public-info-viewer).
    const [version, readyz] = await Promise.all([
      ctx.probe(sh`curl -sk --max-time 10 ${`${base}/version`}`),
      ctx.probe(sh`curl -sk --max-time 10 -w ${'\n%{http_code}'} ${`${base}/readyz`}`),
    ]);
    let gitVersion: string | null = null;
    try {
      gitVersion = version.code === 0 ? ((JSON.parse(version.stdout) as { gitVersion?: string }).gitVersion ?? null) : null;
    } catch {
      gitVersion = null;
    }
    const lines = readyz.stdout.trimEnd().split('\n');
    const status = lines.pop() ?? '';
    facts.apiServer = { version: gitVersion, readyz: { ok: readyz.code === 0 && status === '200', text: readyz.code === 0 ? `HTTP ${status} ${lines.join(' ').trim()}`.trim() : 'no answer' } };
  }
  if (p.repositoryUrl) {
    const nodes = await ctx.probe(sh`kubectl --kubeconfig=${ADMIN_CONF} get nodes -o json`);
    if (nodes.code !== 0) throw new Error(`kubectl get nodes failed: ${nodes.stderr.trim() || `exit ${nodes.code}`}`);
    const index = await ctx.probe(sh`curl -fsSL --max-time 60 ${`${p.repositoryUrl}Packages`}`);
    facts.cluster = {
      nodes: parseClusterNodes(nodes.stdout),
      repository:
        index.code === 0
          ? { url: p.repositoryUrl, versions: parsePackagesIndex(index.stdout, 'kubeadm') }
          : { url: p.repositoryUrl, error: index.stderr.trim().split('\n').pop() || `curl exit ${index.code}` },
    };
  }
  return facts;
}

const read = new WeakMap<CheckContext, UpgradeHostFacts>();

/**
 * Reads, without changing anything, what an upgrade needs to know of a host: its kubeadm version,
 * whether an earlier upgrade left it cordoned, on control planes its API server's version and
 * /readyz, and on the first control plane every node's running kubelet version, Ready state and
 * cordon, and the kubeadm versions in the target minor's repository. Never drift; the value is
 * the host's {@link UpgradeHostFacts}, for the planner.
 *
 * @example upgradeFacts({ apiServerAddress: '192.168.0.150', repositoryUrl: 'https://pkgs.k8s.io/core:/stable:/v1.35/deb/' })
 */
export function upgradeFacts(params: PerHostParams<UpgradeFactsParams> = {}, options?: TaskOptions): Task<UpgradeHostFacts> {
  return defineTask<UpgradeFactsParams, UpgradeHostFacts>(
    {
      kind: 'upgrade-facts',
      id: () => 'upgrade-facts',
      title: () => 'upgrade preflight: versions and health',
      desired: () => 'read-only probe',
      validate: (p) => {
        if (p.repositoryUrl !== undefined && !/^(https?:\/\/\S+\/)$/.test(p.repositoryUrl)) throw new Error(`repositoryUrl must be an http(s) URL ending in /, got ${JSON.stringify(p.repositoryUrl)}`);
      },
      async check(ctx, p) {
        read.set(ctx, await readFacts(ctx, p));
        return [];
      },
      apply: async () => undefined,
      result: async (ctx, p) => read.get(ctx) ?? readFacts(ctx, p),
    },
    params,
    options,
  );
}
