/**
 * The pure half of playbooks/status.ts: what `kubectl get nodes -o json` and `kubeadm token list`
 * print, parsed, and the tables the playbook shows. No host is contacted here.
 */
import type { ReportTable } from '../runner/index.js';

/** One node as `kubectl get nodes` shows it. */
export interface NodeStatus {
  name: string;
  /** kubectl's ROLES: the node-role.kubernetes.io/<role> labels (and kubernetes.io/role), sorted; `<none>` without. */
  roles: string;
  /** The kubelet's version (status.nodeInfo.kubeletVersion). */
  version: string;
  /** kubectl's STATUS: Ready, NotReady or Unknown, with ",SchedulingDisabled" on a cordoned node. */
  ready: string;
  internalIp: string;
}

interface NodeObject {
  metadata?: { name?: string; labels?: Record<string, string> };
  spec?: { unschedulable?: boolean };
  status?: {
    conditions?: { type?: string; status?: string }[];
    addresses?: { type?: string; address?: string }[];
    nodeInfo?: { kubeletVersion?: string };
  };
}

const ROLE_LABEL_PREFIX = 'node-role.kubernetes.io/';

/** kubectl's findNodeRoles (pkg/printers/internalversion/printers.go): role labels, sorted, or `<none>`. */
function nodeRoles(labels: Record<string, string>): string {
  const roles = new Set<string>();
  for (const [key, value] of Object.entries(labels)) {
    if (key.startsWith(ROLE_LABEL_PREFIX) && key.length > ROLE_LABEL_PREFIX.length) roles.add(key.slice(ROLE_LABEL_PREFIX.length));
    else if (key === 'kubernetes.io/role' && value !== '') roles.add(value);
  }
  return roles.size ? [...roles].sort().join(',') : '<none>';
}

/** kubectl's printNode status: the Ready condition (True: Ready, else NotReady; absent: Unknown), then SchedulingDisabled. */
function nodeReady(node: NodeObject): string {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const status = ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown';
  return node.spec?.unschedulable ? `${status},SchedulingDisabled` : status;
}

/** The nodes in `kubectl get nodes -o json` (a v1 List of Node objects), in the order listed (pure). */
export function parseNodes(json: string): NodeStatus[] {
  let list: { kind?: string; items?: NodeObject[] };
  try {
    list = JSON.parse(json) as typeof list;
  } catch {
    throw new Error(`kubectl get nodes -o json printed no JSON: ${JSON.stringify(json.slice(0, 200))}`);
  }
  if (!Array.isArray(list.items)) throw new Error(`kubectl get nodes -o json printed no items (kind ${String(list.kind)})`);
  return list.items.map((node) => ({
    name: node.metadata?.name ?? '<unknown>',
    roles: nodeRoles(node.metadata?.labels ?? {}),
    version: node.status?.nodeInfo?.kubeletVersion ?? '<unknown>',
    ready: nodeReady(node),
    internalIp: node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '<none>',
  }));
}

/** The Nodes table (pure). */
export function nodeTable(nodes: readonly NodeStatus[]): ReportTable {
  return {
    title: 'Nodes',
    columns: ['NAME', 'ROLES', 'VERSION', 'READY', 'INTERNAL-IP'],
    rows: nodes.map((n) => [n.name, n.roles, n.version, n.ready, n.internalIp]),
  };
}

/** One bootstrap token from `kubeadm token list`: its public id only, never the secret. */
export interface JoinToken {
  /** The token id, the six characters before the dot (public: it names the Secret bootstrap-token-<id>). */
  id: string;
  ttl: string;
  expires: string;
  usages: string;
  description: string;
  extraGroups: string;
}

const TOKEN_COLUMNS = ['TOKEN', 'TTL', 'EXPIRES', 'USAGES', 'DESCRIPTION', 'EXTRA GROUPS'] as const;
const TOKEN_RE = /^([a-z0-9]{6})\.[a-z0-9]{16}$/;
/** What the host's sed leaves of a token (see READ_JOIN_TOKENS): the id, then the secret masked to its width. */
const MASKED_TOKEN_RE = /^([a-z0-9]{6})\.\*{16}$/;

/**
 * `kubeadm token list`'s table (kubeadm's tabwriter columns TOKEN TTL EXPIRES USAGES DESCRIPTION
 * EXTRA GROUPS; a description may hold spaces, so cells are cut at the header's column starts)
 * to tokens, keeping only each token's id (pure). A full token in the input is an error: the
 * secret must have been masked on the host.
 */
export function parseTokenList(output: string): JoinToken[] {
  const lines = output.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) return [];
  const header = lines[0]!;
  const starts = TOKEN_COLUMNS.map((column) => header.search(new RegExp(`(^|\\s)${column}(\\s|$)`)) + (column === 'TOKEN' ? 0 : 1));
  if (starts.some((start, i) => start < 0 || (i > 0 && start <= starts[i - 1]!))) {
    throw new Error(`kubeadm token list: unexpected header ${JSON.stringify(header)} (expected ${TOKEN_COLUMNS.join(', ')})`);
  }
  return lines.slice(1).map((line) => {
    const cells = starts.map((start, i) => line.slice(start, starts[i + 1]).trim());
    const [token, ttl, expires, usages, description, extraGroups] = cells as [string, string, string, string, string, string];
    if (TOKEN_RE.test(token)) throw new Error('kubeadm token list: a token secret reached the parser unmasked');
    const id = MASKED_TOKEN_RE.exec(token)?.[1];
    if (!id) throw new Error(`kubeadm token list: unexpected line ${JSON.stringify(line.slice(0, 7))}…`);
    return { id, ttl, expires, usages, description, extraGroups };
  });
}

/** The Join tokens table: the token ids, never their secrets (pure). */
export function joinTokenTable(tokens: readonly JoinToken[]): ReportTable {
  return {
    title: 'Join tokens',
    columns: ['TOKEN ID', 'TTL', 'EXPIRES', 'USAGES', 'DESCRIPTION', 'EXTRA GROUPS'],
    rows: tokens.map((t) => [t.id, t.ttl, t.expires, t.usages, t.description, t.extraGroups]),
  };
}

/** What the status playbook read on one control plane. */
export interface ControlPlaneStatus {
  host: string;
  /** The API server's /readyz answer ("ok"), or why it did not answer. */
  readyz: string;
  /** With a keepalived VIP: whether this host holds it now. */
  holdsVip?: boolean;
  /** With haproxy on this host: `systemctl is-active haproxy` (active, inactive, failed…). */
  haproxy?: string;
  /** The systemd units asked about (the hard way's control plane), each with its `systemctl is-active` state. */
  units?: Record<string, string>;
}

/** The SERVICES cell: `all N active`, or the units that are not, with their state. */
function unitsCell(units: Record<string, string>): string {
  const down = Object.entries(units).filter(([, state]) => state !== 'active');
  return down.length === 0 ? `all ${Object.keys(units).length} active` : down.map(([unit, state]) => `${unit} ${state}`).join(', ');
}

/** The Control planes table; the SERVICES, VIP and HAPROXY columns only when the topology has them (pure). */
export function controlPlaneTable(statuses: readonly ControlPlaneStatus[], vip?: string): ReportTable {
  const withHaproxy = statuses.some((s) => s.haproxy !== undefined);
  const withUnits = statuses.some((s) => s.units !== undefined);
  return {
    title: 'Control planes',
    columns: ['HOST', 'READYZ', ...(withUnits ? ['SERVICES'] : []), ...(vip ? [`VIP ${vip}`] : []), ...(withHaproxy ? ['HAPROXY'] : [])],
    rows: statuses.map((s) => [
      s.host,
      s.readyz,
      ...(withUnits ? [s.units ? unitsCell(s.units) : '-'] : []),
      ...(vip ? [s.holdsVip ? 'holds it' : '-'] : []),
      ...(withHaproxy ? [s.haproxy ?? '-'] : []),
    ]),
  };
}
