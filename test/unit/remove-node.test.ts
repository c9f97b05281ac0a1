import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { loadInventory, type Inventory } from '../../runner/inventory/index.js';
import { Confirmation } from '../../runner/confirm.js';
import { PlayResult, type HostPlayResult, type PlaybookContext } from '../../runner/playbook.js';
import type { ReportTable } from '../../runner/events.js';
import removeNode from '../../playbooks/remove-node.js';
import { planRemoval, removalPlanTable, type RemovalTarget } from '../../playbooks/lib/remove-plan.js';
import { etcdMemberTable, parseEtcdMembership, quorumAfterRemoval, urlHost, type EtcdMember } from '../../tasks/etcd-members.js';
import type { NodeStatus } from '../../tasks/status-parse.js';
import { plays } from '../helpers/plays.js';

const inventory = (name: string) => loadInventory(fileURLToPath(new URL(`../../inventory/${name}.yaml`, import.meta.url)));

// etcdctl 3.4's simple printer (etcdctl/ctlv3/command/printer_simple.go): ID, status, name, peer
// addrs, client addrs, is learner — joined with ", ". `endpoint health --cluster` prints a healthy
// endpoint on stdout and an unhealthy one on stderr, then "Error: unhealthy cluster" (exit 1).
const MEMBER_LIST = [
  '8e9e05c52164694d, started, node1.internal, https://192.168.0.61:2380, https://192.168.0.61:2379, false',
  '91bc3c398fb3c146, started, node2.internal, https://192.168.0.62:2380, https://192.168.0.62:2379, false',
  'fd422379fda50e48, started, node3.internal, https://192.168.0.63:2380, https://192.168.0.63:2379, false',
].join('\n');
const HEALTH_ONE_DOWN = [
  'https://192.168.0.61:2379 is healthy: successfully committed proposal: took = 9.12ms',
  'https://192.168.0.62:2379 is healthy: successfully committed proposal: took = 11.4ms',
  '{"level":"warn","ts":"2026-12-03T10:20:01.512Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-5b7a/192.168.0.63:2379","attempt":0,"error":"rpc error: code = DeadlineExceeded desc = latest balancer error: connection error"}',
  'https://192.168.0.63:2379 is unhealthy: failed to commit proposal: context deadline exceeded',
  'Error: unhealthy cluster',
].join('\n');

const member = (id: string, name: string, octet: number, healthy = true): EtcdMember => ({
  id,
  name,
  peerUrl: `https://192.168.0.${octet}:2380`,
  clientUrl: `https://192.168.0.${octet}:2379`,
  started: true,
  healthy,
});
const node = (name: string, octet: number, ready = 'Ready', roles = 'control-plane'): NodeStatus => ({ name, roles, version: 'v1.34.1', ready, internalIp: `192.168.0.${octet}` });
const target = (host: string, octet: number, controlPlane: boolean, reachable = true): RemovalTarget => ({ host, address: `192.168.0.${octet}`, controlPlane, plannedName: `${host}.internal`, reachable });

const NODES = [node('node1.internal', 61), node('node2.internal', 62), node('node3.internal', 63), node('node4.internal', 64, 'Ready', '<none>'), node('node5.internal', 65, 'NotReady', '<none>')];
const MEMBERS = [member('8e9e05c52164694d', 'node1.internal', 61), member('91bc3c398fb3c146', 'node2.internal', 62), member('fd422379fda50e48', 'node3.internal', 63)];

describe('etcd membership (tasks/etcd-members.ts)', () => {
  it('reads members from member list and health from endpoint health --cluster, warnings and the error line ignored', () => {
    expect(parseEtcdMembership(MEMBER_LIST, HEALTH_ONE_DOWN)).to.deep.equal([
      member('8e9e05c52164694d', 'node1.internal', 61),
      member('91bc3c398fb3c146', 'node2.internal', 62),
      member('fd422379fda50e48', 'node3.internal', 63, false),
    ]);
  });

  it('a member added but never started has no name and no client URL: unstarted, not healthy', () => {
    const [added] = parseEtcdMembership('5e1ab9ce0a8f2a14, unstarted, , https://192.168.0.64:2380, , false', '');
    expect(added).to.deep.equal({ id: '5e1ab9ce0a8f2a14', name: '', peerUrl: 'https://192.168.0.64:2380', clientUrl: '', started: false, healthy: false });
    expect(etcdMemberTable([added!]).rows).to.deep.equal([['(not started)', '5e1ab9ce0a8f2a14', 'https://192.168.0.64:2380', '-', 'unstarted']]);
  });

  it('etcd\'s removal rule: the healthy members left must be a majority of the members left', () => {
    const oneDown = [MEMBERS[0]!, MEMBERS[1]!, { ...MEMBERS[2]!, healthy: false }];
    expect(quorumAfterRemoval(oneDown, new Set(['fd422379fda50e48']))).to.deep.equal({ left: 2, healthyLeft: 2, quorum: 2, ok: true });
    expect(quorumAfterRemoval(oneDown, new Set(['91bc3c398fb3c146']))).to.deep.equal({ left: 2, healthyLeft: 1, quorum: 2, ok: false });
    expect(quorumAfterRemoval(MEMBERS, new Set(MEMBERS.map((m) => m.id)))).to.include({ left: 0, ok: false });
    expect(urlHost('https://[fd00::3]:2380')).to.equal('fd00::3');
  });
});

describe('removal planner (playbooks/lib/remove-plan.ts)', () => {
  it('matches nodes by InternalIP and members by peer URL, drains only Ready nodes, and keeps the order given', () => {
    const plan = planRemoval({ targets: [target('node4', 64, false), target('node3', 63, true)], nodes: NODES, members: MEMBERS });
    expect(plan.ok).to.equal(true);
    if (!plan.ok) return;
    expect(plan.removals.map((r) => [r.host, r.nodeName, r.member?.id ?? null, r.drain])).to.deep.equal([
      ['node4', 'node4.internal', null, true],
      ['node3', 'node3.internal', 'fd422379fda50e48', true],
    ]);
    expect(removalPlanTable(plan.removals, true)).to.deep.equal({
      title: 'Removal plan, in order',
      columns: ['HOST', 'NODE', 'ROLE', 'IN CLUSTER', 'ETCD MEMBER', 'STEPS'],
      rows: [
        ['node4', 'node4.internal', 'worker', 'Ready', '-', 'drain, kubeadm reset + cleanup, delete node'],
        ['node3', 'node3.internal', 'control-plane', 'Ready', 'fd422379fda50e48 (healthy)', 'drain, load balancers without it, kubeadm reset + cleanup, etcd member remove, delete node'],
      ],
    });
  });

  it('a dead worker: not drained (NotReady), its host not cleaned, its Node deleted', () => {
    const plan = planRemoval({ targets: [target('node5', 65, false, false)], nodes: NODES, members: MEMBERS });
    expect(plan.ok && removalPlanTable(plan.removals, false).rows).to.deep.equal([['node5', 'node5.internal', 'worker', 'NotReady', '-', 'host unreachable: not drained, not cleaned, delete node']]);
  });

  it('a host that does not answer is not drained even while its Node still says Ready; a reachable NotReady one is not drained either', () => {
    const plan = planRemoval({ targets: [target('node4', 64, false, false), target('node5', 65, false, true)], nodes: NODES, members: MEMBERS });
    expect(plan.ok && plan.removals.map((r) => [r.host, r.drain, removalPlanTable([r], false).rows[0]![5]])).to.deep.equal([
      ['node4', false, 'host unreachable: not drained, not cleaned, delete node'],
      ['node5', false, 'not drained (NotReady), kubeadm reset + cleanup, delete node'],
    ]);
  });

  it('a host removed already (no Node, no member): only its host cleanup is left', () => {
    const plan = planRemoval({ targets: [target('node3', 63, true)], nodes: NODES.filter((n) => n.name !== 'node3.internal'), members: MEMBERS.slice(0, 2) });
    expect(plan.ok && removalPlanTable(plan.removals, true).rows).to.deep.equal([['node3', 'node3.internal', 'control-plane', 'no (removed already)', 'none', 'load balancers without it, kubeadm reset + cleanup']]);
  });

  it('refuses removing a healthy member while another does not answer (quorum), naming both', () => {
    const down = MEMBERS.map((m) => (m.name === 'node3.internal' ? { ...m, healthy: false } : m));
    const controlPlanes = [1, 2, 3].map((n) => ({ host: `node${n}`, address: `192.168.0.6${n}` }));
    expect(planRemoval({ targets: [target('node2', 62, true)], nodes: NODES, members: down, controlPlanes })).to.deep.equal({
      ok: false,
      refusals: [
        {
          rule: 'etcd-quorum',
          hosts: ['node2'],
          message:
            'removing node2 would leave etcd 1 healthy of 2 members, below its quorum of 2: the cluster would stop accepting writes. ' +
            'Not answering now: node3.internal (host node3) — bring them back, or remove them first (-e node=node3)',
        },
      ],
    });
  });

  it('removes the member that does not answer first, so a healthy one can follow it (5 members, 2 down)', () => {
    const five = [...MEMBERS, member('aa01', 'node4.internal', 64, false), member('aa02', 'node5.internal', 65, false)];
    // node3 (healthy) first would leave 2 healthy of 4 (quorum 3): refused by etcd. node5 (dead) first: 3 of 4, then 2 of 3.
    const plan = planRemoval({ targets: [target('node3', 63, true), target('node5', 65, true, false)], nodes: NODES, members: five });
    expect(plan.ok && plan.removals.map((r) => r.host)).to.deep.equal(['node5', 'node3']);
  });
});

describe('playbooks/remove-node.ts', () => {
  it('refuses, before any host is contacted: no node, an unknown host, a host outside the cluster groups, every control plane', async () => {
    const vip = await inventory('ha-vip');
    const refused = (vars: Record<string, unknown>, inv = vip) => plays(removeNode, inv, { confirm: 'kubernetes', ...vars }).then(() => 'ran', (e: unknown) => (e as Error).message);
    expect(await refused({})).to.match(/^variable node \(vars of node1 with -e\) is required: the inventory host\(s\) to remove, -e node=NAME or -e node=NAME1,NAME2$/);
    expect(await refused({ node: 'node9' })).to.match(/^node node9: .*ha-vip\.yaml has no host of that name \(its nodes: node1, node2, node3, node4, node5\)$/);
    expect(await refused({ node: 'balancer' }, await inventory('ha'))).to.match(/^node balancer: not in the control_plane or workers group of .*ha\.yaml: only cluster nodes can be removed$/);
    expect(await refused({ node: 'node1,node2, node3' })).to.match(
      /^removing node1, node2, node3 would remove every control plane of the cluster \(node1, node2, node3\): refused, nothing was changed\. To take the whole cluster down, use playbooks\/reset\.ts$/,
    );
    expect(await refused({ node: 'node4;reboot' })).to.match(/^variable node .* must be inventory host names separated by commas, got "node4;reboot"$/);
    expect(await refused({ node: 'node4' })).to.equal('ran');
  });

  it('asks for the cluster name (no terminal: -e confirm=)', async () => {
    const refused = await plays(removeNode, await inventory('ha-vip'), { node: 'node4' }).catch((e: unknown) => (e as Error).message);
    expect(refused).to.match(/^remove node4 from cluster "kubernetes": drained, deleted from the cluster and etcd, .*; pass -e confirm=kubernetes \(nothing was changed\)$/);
  });

  it('plans, from what the cluster says, per host in order: drain, load balancers, reset, etcd member, delete; a dead host is only removed from the cluster', async () => {
    const ha = await inventory('ha-vip');
    const run = await fakeRun(ha, { node: 'node5,node3,node4', confirm: 'kubernetes' }, { unreachable: ['node5'] });
    expect(run.plays).to.deep.equal([
      'removal preflight: the cluster @ node1: status:nodes etcd-members:local',
      'removal preflight: the hosts to remove @ node5,node3,node4: kubeadm-state:read',
      'remove node5: from the cluster @ node1: remove-node-object:node5.internal',
      'remove node3: drain @ node1: remove-drain:node3.internal',
      'remove node3: load balancers without it @ node1,node2: file:/etc/haproxy/haproxy.cfg service:haproxy',
      'remove node3: reset the host @ node3: service:keepalived service:haproxy kubeconfig-copies:removed kubeadm:reset cni-state:removed kubernetes-netfilter:removed cni-interfaces:removed',
      'remove node3: from the cluster @ node1: remove-etcd-member:https://192.168.0.63:2380 remove-node-object:node3.internal',
      'remove node4: drain @ node1: remove-drain:node4.internal',
      'remove node4: reset the host @ node4: kubeadm:reset cni-state:removed kubernetes-netfilter:removed cni-interfaces:removed',
      'remove node4: from the cluster @ node1: remove-node-object:node4.internal',
    ]);
    expect(run.reports.map((r) => r.title)).to.deep.equal(['Removal plan, in order', 'Removed from the cluster, hosts NOT cleaned (they did not answer)']);
    expect(run.reports[1]!.rows[0]!.slice(0, 2)).to.deep.equal(['node5', 'node5.internal']);
  });

  it('the first control plane that stays is down: the next one that answers reads the cluster and runs the cluster-side steps', async () => {
    const run = await fakeRun(await inventory('ha-vip'), { node: 'node4', confirm: 'kubernetes' }, { unreachable: ['node1'] });
    expect(run.plays).to.deep.equal([
      'removal preflight: the cluster @ node1: status:nodes',
      'removal preflight: the cluster @ node2: status:nodes',
      'removal preflight: the hosts to remove @ node4: kubeadm-state:read',
      'remove node4: drain @ node2: remove-drain:node4.internal',
      'remove node4: reset the host @ node4: kubeadm:reset cni-state:removed kubernetes-netfilter:removed cni-interfaces:removed',
      'remove node4: from the cluster @ node2: remove-node-object:node4.internal',
    ]);
    const none = await fakeRun(await inventory('ha-vip'), { node: 'node4', confirm: 'kubernetes' }, { unreachable: ['node1', 'node2', 'node3'] }).catch((e: unknown) => (e as Error).message);
    expect(none).to.equal('the cluster could not be read on any control plane that stays (node1, node2, node3; see their tasks above): nothing was changed');
  });

  it('removing the first control plane: the next one reads the cluster and runs kubectl and etcdctl', async () => {
    const run = await fakeRun(await inventory('ha-vip'), { node: 'node1', confirm: 'kubernetes' });
    expect(run.plays[0]).to.equal('removal preflight: the cluster @ node2: status:nodes etcd-members:local');
    expect(run.plays.filter((p) => p.startsWith('remove node1: from the cluster'))).to.deep.equal([
      'remove node1: from the cluster @ node2: remove-etcd-member:https://192.168.0.61:2380 remove-node-object:node1.internal',
    ]);
  });
});

/**
 * Runs the playbook's body for real (not planning) against a cluster that exists only here: the
 * preflight plays answer with the nodes and members above; every play is recorded, none contacts a host.
 */
async function fakeRun(inv: Inventory, extraVars: Record<string, unknown>, options: { unreachable?: string[] } = {}) {
  const recorded: string[] = [];
  const reports: ReportTable[] = [];
  const confirmation = new Confirmation({ checkMode: false, extraVars });
  const nodes = NODES.map((n) => ({ ...n, ready: options.unreachable?.includes(n.name.replace('.internal', '')) ? 'NotReady' : 'Ready' }));
  const ctx: PlaybookContext = {
    checkMode: false,
    planning: false,
    extraVars,
    inventory: inv,
    confirm: (request) => confirmation.require(request),
    report: (table) => void reports.push(table),
    selectHosts: (pattern) => inv.select(pattern),
    play: async (title, pattern, tasks) => {
      recorded.push(`${title} @ ${pattern}: ${tasks.map((t) => t.static?.id ?? `${t.kind}*`).join(' ')}`);
      const hosts = new Map<string, HostPlayResult>();
      for (const host of inv.select(pattern)) {
        const unreachable = options.unreachable?.includes(host.name);
        const values = new Map<unknown, unknown>();
        if (title === 'removal preflight: the cluster' && !unreachable) {
          values.set(tasks[0], nodes);
          values.set(tasks[1], MEMBERS);
        }
        hosts.set(host.name, { status: unreachable ? 'unreachable' : 'ok', values: values as HostPlayResult['values'] });
      }
      return new PlayResult(title, hosts);
    },
  };
  await removeNode.body(ctx);
  return { plays: recorded, reports };
}
