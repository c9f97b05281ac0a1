/**
 * etcd's membership as one member sees it: who the members are (`etcdctl member list`) and which
 * answer (`etcdctl endpoint health --cluster`, every member's client URL asked from this host). Read
 * by playbooks/remove-node.ts to keep quorum and by playbooks/status.ts for its table.
 */
import type { ReportTable } from '../runner/index.js';
import { defineTask, sh, type CheckContext, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { parseEndpointHealth, parseMemberList } from './etcd.js';
import { ETCD_CLIENT_FILES, LOCAL_ETCD_ENDPOINT, type EtcdLayout } from './etcd-snapshot.js';

/** One member, with whether it answered. */
export interface EtcdMember {
  /** The member ID in hex, as etcdctl prints it and `member remove` takes it. */
  id: string;
  /** The member's name (kubeadm: the node's name); empty for a member added but never started. */
  name: string;
  /** Its first peer URL, `https://10.0.0.11:2380`: what kubeadm looks a member up by. */
  peerUrl: string;
  clientUrl: string;
  started: boolean;
  /** `endpoint health` said healthy (a committed proposal through it). */
  healthy: boolean;
}

/** The host a URL points at (`https://10.0.0.11:2380` → `10.0.0.11`); IPv6 brackets removed. Pure. */
export function urlHost(url: string): string {
  try {
    return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return '';
  }
}

/**
 * The members from `etcdctl member list` and the health lines of `endpoint health --cluster`
 * (stdout and stderr together: etcdctl prints unhealthy endpoints on stderr). Pure.
 */
export function parseEtcdMembership(memberList: string, health: string): EtcdMember[] {
  const healthy = parseEndpointHealth(health);
  return parseMemberList(memberList).map((m) => {
    const clientUrl = m.clientUrls.split(/\s+/)[0] ?? '';
    return {
      id: m.id,
      name: m.name,
      peerUrl: m.peerUrls.split(/\s+/)[0] ?? '',
      clientUrl,
      started: m.status === 'started',
      healthy: clientUrl !== '' && healthy.get(clientUrl) === true,
    };
  });
}

/** `etcdctl` against this host's member with the layout's client certificate, short timeouts (a dead member must not stall a read). */
export function etcdctlLocal(layout: EtcdLayout, args: readonly string[]) {
  const files = ETCD_CLIENT_FILES[layout];
  return sh`ETCDCTL_API=3 etcdctl --endpoints=${LOCAL_ETCD_ENDPOINT} --cacert=${files.cacert} --cert=${files.cert} --key=${files.key} --dial-timeout=3s --command-timeout=8s ${args}`;
}

/** Reads the membership through this host's member; throws with etcdctl's words when it cannot list the members. */
export async function readEtcdMembers(ctx: Pick<CheckContext, 'probe' | 'host'>, layout: EtcdLayout): Promise<EtcdMember[]> {
  const list = await ctx.probe(etcdctlLocal(layout, ['member', 'list']));
  if (list.code === 127) throw new Error(`etcdctl is not installed on ${ctx.host.name}: install it (Debian/Ubuntu: apt-get install etcd-client) to read etcd's members`);
  if (list.code !== 0) {
    const why = `${list.stderr}\n${list.stdout}`.trim().split('\n').slice(-3).join('; ');
    throw new Error(`etcdctl member list on ${ctx.host.name} failed (exit ${list.code}): ${why || 'no output'}`);
  }
  // Exit 1 when any member is unhealthy: the lines still say which.
  const health = await ctx.probe(etcdctlLocal(layout, ['endpoint', 'health', '--cluster']));
  return parseEtcdMembership(list.stdout, `${health.stdout}\n${health.stderr}`);
}

export interface EtcdMembershipParams {
  /** Default 'kubeadm'. */
  layout?: EtcdLayout;
  /** Without etcdctl on the host, read nothing (value []) and say so, instead of failing: for a read-only overview. */
  etcdctlOptional?: boolean;
}

/**
 * Read-only: etcd's members and which of them answer, as this host's member sees them. Never
 * changes anything; its value is the list (in --check too). Run it on one control plane.
 *
 * @example
 * const members = readEtcdMembership({ layout: 'kubeadm' });
 * const read = await play('etcd members', 'control_plane[0]', [members]);
 * const list = read.value(members); // EtcdMember[]
 */
export function readEtcdMembership(params: PerHostParams<EtcdMembershipParams> = {}, options?: TaskOptions): Task<EtcdMember[]> {
  const read = new Map<string, EtcdMember[]>();
  const missing = new Set<string>();
  return defineTask<EtcdMembershipParams, EtcdMember[]>(
    {
      kind: 'etcd-members',
      id: () => 'etcd-members:local',
      title: () => 'etcd members (etcdctl member list, endpoint health --cluster)',
      validate: (p) => {
        if (p.layout !== undefined && !(p.layout in ETCD_CLIENT_FILES)) throw new Error(`layout must be kubeadm or hard-way, got ${JSON.stringify(p.layout)}`);
      },
      async check(ctx, p) {
        if (p.etcdctlOptional && (await ctx.probe(sh`command -v etcdctl`)).code !== 0) {
          missing.add(ctx.host.name);
          read.set(ctx.host.name, []);
          return [];
        }
        read.set(ctx.host.name, await readEtcdMembers(ctx, p.layout ?? 'kubeadm'));
        return [];
      },
      async apply() {},
      async result(ctx) {
        return read.get(ctx.host.name) ?? [];
      },
      report: (value) => (value.length === 0 && missing.size ? 'etcdctl is not installed here (Debian/Ubuntu: apt-get install etcd-client): etcd not read' : undefined),
    },
    params,
    options,
  );
}

/** The etcd members table: NAME ID PEER-URL CLIENT-URL STATUS (pure). */
export function etcdMemberTable(members: readonly EtcdMember[]): ReportTable {
  return {
    title: 'etcd members',
    columns: ['NAME', 'ID', 'PEER URL', 'CLIENT URL', 'STATUS'],
    rows: members.map((m) => [m.name || '(not started)', m.id, m.peerUrl, m.clientUrl || '-', !m.started ? 'unstarted' : m.healthy ? 'healthy' : 'unhealthy']),
  };
}

/** etcd's rule for removing a voting member: the healthy members left must still be a majority of the members left. Pure. */
export function quorumAfterRemoval(members: readonly Pick<EtcdMember, 'id' | 'healthy'>[], removed: ReadonlySet<string>): { left: number; healthyLeft: number; quorum: number; ok: boolean } {
  const left = members.filter((m) => !removed.has(m.id));
  const healthyLeft = left.filter((m) => m.healthy).length;
  const quorum = Math.floor(left.length / 2) + 1;
  return { left: left.length, healthyLeft, quorum, ok: left.length > 0 && healthyLeft >= quorum };
}
