/**
 * Host firewalls (seed 000 "Configurando as portas", seed 004's CentOS with firewalld): when ufw or
 * firewalld is active on a host, the ports its role needs are opened; a host with neither active is
 * left alone, silently. Capstan never enables a firewall and never closes a port.
 */
import { defineTask, sh, type ApplyContext, type CheckContext, type Drift, type PerHost, type Task, type TaskOptions } from '../runner/index.js';
import type { CniName } from './cni.js';

/* ================================================================== rules */

/** A port or port range of one transport protocol, or a whole IP protocol (IP-in-IP is 4, VRRP is 112). */
export type FirewallRule = { kind: 'port'; from: number; to: number; transport: 'tcp' | 'udp' } | { kind: 'protocol'; number: number };

/**
 * Parses a rule spec (pure): `6443/tcp`, `30000-32767/udp`, or `protocol/112` for a whole IP
 * protocol. Throws naming the spec when it is malformed.
 */
export function parseRuleSpec(spec: string): FirewallRule {
  const protocol = /^protocol\/(\d{1,3})$/.exec(spec);
  if (protocol) {
    const number = Number(protocol[1]);
    if (number > 255) throw new Error(`IP protocol numbers are 0-255, got ${JSON.stringify(spec)}`);
    return { kind: 'protocol', number };
  }
  const port = /^(\d{1,5})(?:-(\d{1,5}))?\/(tcp|udp)$/.exec(spec);
  if (!port) throw new Error(`a firewall rule is PORT/tcp, PORT/udp, FIRST-LAST/tcp|udp or protocol/NUMBER, got ${JSON.stringify(spec)}`);
  const from = Number(port[1]);
  const to = port[2] === undefined ? from : Number(port[2]);
  if (from < 1 || to > 65535 || from > to) throw new Error(`ports are 1-65535 and a range goes up, got ${JSON.stringify(spec)}`);
  return { kind: 'port', from, to, transport: port[3] as 'tcp' | 'udp' };
}

/** The canonical spec of a rule: `6443/tcp`, `30000-32767/tcp`, `protocol/4`. */
export function ruleSpec(rule: FirewallRule): string {
  if (rule.kind === 'protocol') return `protocol/${rule.number}`;
  return `${rule.from === rule.to ? rule.from : `${rule.from}-${rule.to}`}/${rule.transport}`;
}

/** Whether `open` lets through everything `wanted` needs (a range inside an open range counts). */
function covers(open: FirewallRule, wanted: FirewallRule): boolean {
  if (open.kind === 'protocol' || wanted.kind === 'protocol') return open.kind === 'protocol' && wanted.kind === 'protocol' && open.number === wanted.number;
  return open.transport === wanted.transport && open.from <= wanted.from && wanted.to <= open.to;
}

/** The wanted rules no open rule covers, in the wanted order (pure). */
export function missingRules(open: readonly FirewallRule[], wanted: readonly FirewallRule[]): FirewallRule[] {
  return wanted.filter((rule) => !open.some((candidate) => covers(candidate, rule)));
}

/* ================================================================== ufw */

/**
 * The rules `ufw status` shows as allowed from anywhere, IPv4 lines only (`ufw allow` adds the v6
 * twin itself) (pure). Format of ufw 0.36 (Debian 12): `Status: active`, a blank line, the
 * `To  Action  From` header and its `--` underline, then columns separated by two or more spaces:
 * `22/tcp  ALLOW  Anywhere`, `30000:32767/tcp`, `80,443/tcp`, `6443` (tcp and udp), `… (v6)`.
 * Rules limited to a source address, an interface (`22/tcp on eth0`) or an app profile (`OpenSSH`)
 * are not counted: they do not open the port to the cluster's other nodes for sure.
 */
export function parseUfwStatus(output: string): { active: boolean; rules: FirewallRule[] } {
  const lines = output.split('\n');
  const active = lines.some((line) => line.trim() === 'Status: active');
  const rules: FirewallRule[] = [];
  const underline = lines.findIndex((line) => /^--\s+------\s+----/.test(line));
  if (underline < 0) return { active, rules };
  for (const line of lines.slice(underline + 1)) {
    const [to, action, from] = line.trim().split(/\s{2,}/);
    if (!to || !action || !from || to.endsWith('(v6)')) continue;
    if (!/^ALLOW( IN)?$/.test(action) || from !== 'Anywhere') continue;
    const match = /^([\d,:]+)(?:\/(tcp|udp))?$/.exec(to);
    if (!match) continue;
    const transports: ('tcp' | 'udp')[] = match[2] ? [match[2] as 'tcp' | 'udp'] : ['tcp', 'udp'];
    for (const part of match[1]!.split(',')) {
      const [first, last] = part.split(':');
      for (const transport of transports) rules.push({ kind: 'port', from: Number(first), to: Number(last ?? first), transport });
    }
  }
  return { active, rules };
}

/** The `ufw allow` argument for a port rule: ufw writes ranges with a colon (`30000:32767/tcp`). */
export function ufwAllowArgument(rule: FirewallRule): string {
  if (rule.kind === 'protocol') {
    throw new Error(
      `ufw cannot allow IP protocol ${rule.number} from its command line (only tcp, udp, esp, ah, gre, igmp, ipv6); ` +
        `add "-A ufw-before-input -p ${rule.number} -j ACCEPT" to /etc/ufw/before.rules, or use firewalld`,
    );
  }
  return `${rule.from === rule.to ? rule.from : `${rule.from}:${rule.to}`}/${rule.transport}`;
}

/* ================================================================== firewalld */

/** Protocol names firewalld may print instead of numbers (/etc/protocols): only the ones Capstan asks for. */
const PROTOCOL_NUMBERS: Record<string, number> = { ipencap: 4, 'ip-encap': 4, vrrp: 112 };

/**
 * The rules of `firewall-cmd --list-ports` and `--list-protocols` (pure): firewalld 1.3 prints each
 * list on one line, space-separated (`6443/tcp 30000-32767/tcp`, `vrrp 4`), an empty line when
 * nothing is added. Other transports (sctp, dccp) are ignored.
 */
export function parseFirewalldLists(ports: string, protocols: string): FirewallRule[] {
  const rules: FirewallRule[] = [];
  for (const word of ports.trim().split(/\s+/).filter(Boolean)) {
    const match = /^(\d+)(?:-(\d+))?\/(tcp|udp)$/.exec(word);
    if (match) rules.push({ kind: 'port', from: Number(match[1]), to: Number(match[2] ?? match[1]), transport: match[3] as 'tcp' | 'udp' });
  }
  for (const word of protocols.trim().split(/\s+/).filter(Boolean)) {
    const number = /^\d+$/.test(word) ? Number(word) : PROTOCOL_NUMBERS[word];
    if (number !== undefined) rules.push({ kind: 'protocol', number });
  }
  return rules;
}

/** The firewall-cmd option that adds a rule: `--add-port=6443/tcp`, `--add-protocol=112`. */
export function firewalldAddOption(rule: FirewallRule): string {
  return rule.kind === 'protocol' ? `--add-protocol=${rule.number}` : `--add-port=${ruleSpec(rule)}`;
}

/**
 * The firewall-cmd calls that add `rules` (pure): ports in one call, IP protocols in another, since
 * firewall-cmd refuses `--add-protocol` "not allowed with argument --add-port" in one command line.
 */
export function firewalldCalls(rules: readonly FirewallRule[]): string[][] {
  const ports = rules.filter((rule) => rule.kind === 'port').map(firewalldAddOption);
  const protocols = rules.filter((rule) => rule.kind === 'protocol').map(firewalldAddOption);
  return [ports, protocols].filter((options) => options.length > 0);
}

/* ================================================================== probe */

/**
 * Which firewall is active and what it lets through, in one read-only command. ufw first (its
 * status needs root, as Capstan runs); firewalld only when `firewall-cmd --state` says running.
 * Sections are marked with `== ` lines so the parser needs no guessing.
 */
export const FIREWALL_PROBE = sh`if command -v ufw >/dev/null 2>&1 && LC_ALL=C ufw status 2>/dev/null | grep -qx 'Status: active'; then
echo '== ufw'; LC_ALL=C ufw status
elif command -v firewall-cmd >/dev/null 2>&1 && [ "$(firewall-cmd --state 2>/dev/null)" = running ]; then
echo '== firewalld'
echo "== runtime-ports"; firewall-cmd --list-ports
echo "== runtime-protocols"; firewall-cmd --list-protocols
echo "== permanent-ports"; firewall-cmd --permanent --list-ports
echo "== permanent-protocols"; firewall-cmd --permanent --list-protocols
else echo '== none'; fi`;

export type FirewallState =
  | { firewall: 'none' }
  | { firewall: 'ufw'; open: FirewallRule[] }
  | { firewall: 'firewalld'; runtime: FirewallRule[]; permanent: FirewallRule[] };

/** Parses FIREWALL_PROBE's output (pure). */
export function parseFirewallProbe(output: string): FirewallState {
  const sections = new Map<string, string>();
  let current = '';
  for (const line of output.split('\n')) {
    if (line.startsWith('== ')) {
      current = line.slice(3).trim();
      sections.set(current, '');
    } else if (current) sections.set(current, `${sections.get(current)}${line}\n`);
  }
  if (sections.has('ufw')) return { firewall: 'ufw', open: parseUfwStatus(sections.get('ufw')!).rules };
  if (sections.has('firewalld')) {
    const get = (name: string) => sections.get(name) ?? '';
    return {
      firewall: 'firewalld',
      runtime: parseFirewalldLists(get('runtime-ports'), get('runtime-protocols')),
      permanent: parseFirewalldLists(get('permanent-ports'), get('permanent-protocols')),
    };
  }
  return { firewall: 'none' };
}

/** The drift of a firewall state against the wanted rules: one entry per rule to open, none without an active firewall (pure). */
export function firewallDrift(state: FirewallState, wanted: readonly FirewallRule[]): Drift[] {
  if (state.firewall === 'none') return [];
  if (state.firewall === 'ufw') {
    return missingRules(state.open, wanted).map((rule) => ({ subject: `ufw: ${ruleSpec(rule)}`, current: 'closed', desired: 'allowed' }));
  }
  const closedAtRuntime = new Set(missingRules(state.runtime, wanted));
  const closedPermanently = new Set(missingRules(state.permanent, wanted));
  return wanted
    .filter((rule) => closedAtRuntime.has(rule) || closedPermanently.has(rule))
    .map((rule) => ({
      subject: `firewalld: ${ruleSpec(rule)}`,
      current: closedAtRuntime.has(rule) && closedPermanently.has(rule) ? 'closed' : closedAtRuntime.has(rule) ? 'closed at runtime (permanent only)' : 'open until reload (not permanent)',
      desired: 'open (runtime and permanent)',
    }));
}

/* ================================================================== task */

export interface FirewallPortsParams {
  /** Rule specs: `6443/tcp`, `30000-32767/udp`, `protocol/112`. */
  ports: string[];
}

async function readFirewall(ctx: CheckContext): Promise<FirewallState> {
  const result = await ctx.probe(FIREWALL_PROBE);
  if (result.code !== 0) throw new Error(`cannot read the host firewall: ${result.stderr.trim() || `exit ${result.code}`}`);
  return parseFirewallProbe(result.stdout);
}

/**
 * Ensures that, when ufw or firewalld is active, the given ports and IP protocols are open: ufw
 * `allow PORT/PROTO` (v4 and v6), firewalld `--permanent --add-port` and the same at runtime (no
 * reload, which would drop runtime-only rules others made). Only missing rules are added; nothing
 * is ever closed; a firewall that is not active is not enabled, and a host without one reports
 * nothing. ufw cannot open whole IP protocols (VRRP, IP-in-IP) from its command line: such a rule
 * on a ufw host fails with what to add to /etc/ufw/before.rules.
 *
 * @param params.ports rule specs, validated when the playbook loads
 * @example ensureFirewallPorts({ ports: firewallPortsForRole({ role: 'worker', cni: 'weave' }) })
 */
export function ensureFirewallPorts(params: { ports: PerHost<string[]> }, options?: TaskOptions): Task<void> {
  return defineTask<FirewallPortsParams>(
    {
      kind: 'firewall',
      id: () => 'firewall:ports',
      title: (p) => `firewall ports ${p.ports.join(' ')}`,
      desired: (p) => [...new Set(p.ports.map((spec) => ruleSpec(parseRuleSpec(spec))))].sort(),
      validate: (p) => {
        if (!Array.isArray(p.ports)) throw new Error(`ports must be a list of rule specs, got ${JSON.stringify(p.ports)}`);
        for (const spec of p.ports) parseRuleSpec(spec);
      },
      probes: () => [{ kind: 'exec', command: FIREWALL_PROBE }],
      check: async (ctx, p) => firewallDrift(await readFirewall(ctx), p.ports.map(parseRuleSpec)),
      apply: async (ctx: ApplyContext, p) => {
        const state = await readFirewall(ctx);
        const wanted = p.ports.map(parseRuleSpec);
        if (state.firewall === 'ufw') {
          for (const rule of missingRules(state.open, wanted)) await ctx.run(sh`ufw allow ${ufwAllowArgument(rule)}`);
        } else if (state.firewall === 'firewalld') {
          for (const options of firewalldCalls(missingRules(state.permanent, wanted))) await ctx.run(sh`firewall-cmd --permanent ${options}`);
          for (const options of firewalldCalls(missingRules(state.runtime, wanted))) await ctx.run(sh`firewall-cmd ${options}`);
        }
      },
    },
    params,
    options,
  );
}

/* ================================================================== roles */

/** What a host does in the cluster, for its firewall. */
export type FirewallRole = 'control-plane' | 'worker' | 'balancer' | 'hard-way-controller' | 'hard-way-balancer';

export interface RolePortsParams {
  role: FirewallRole;
  /** The CNI (kubeadm topologies): its overlay/routing ports on every node. */
  cni?: CniName;
  /** A control plane that also runs workloads (single node, untainted): NodePorts too. */
  runsWorkloads?: boolean;
  /** Seed 004's VIP on the control planes: haproxy's port (8888) and VRRP between keepalived peers. */
  vip?: { port: number };
  /** The port an API front end (balancer) listens on: 6443 by default. */
  frontEndPort?: number;
  /** haproxy's stats page, when the balancer serves one. */
  statsPort?: number;
}

/*
 * Sources: Kubernetes "Ports and Protocols" (kubernetes.io/docs/reference/networking/ports-and-protocols/):
 * control plane 6443, 2379-2380, 10250, 10259 (scheduler), 10257 (controller-manager); every node
 * 10250 (kubelet), 10256 (kube-proxy), 30000-32767 tcp+udp (NodePorts). Seed 000 adds 10250-10255 on
 * every node. CNIs: Weave Net 6783/tcp + 6783-6784/udp (seed 000, weave docs); Calico's "network
 * requirements" page: BGP 179/tcp, IP-in-IP (protocol 4, the default pool's encapsulation in
 * calico.yaml), VXLAN 4789/udp, Typha 5473/tcp (only the calico-typha manifest, which Capstan does
 * not install); flannel's vxlan backend 8472/udp; Cilium's system requirements: vxlan 8472/udp,
 * health 4240/tcp.
 */
const CNI_RULES: Record<CniName, string[]> = {
  weave: ['6783/tcp', '6783-6784/udp'],
  calico: ['179/tcp', 'protocol/4'],
  flannel: ['8472/udp'],
  cilium: ['8472/udp', '4240/tcp'],
};

const NODE_PORTS = ['30000-32767/tcp', '30000-32767/udp'];

/**
 * The rule specs a host of `role` needs (pure). Every kubeadm node: kubelet and seed 000's
 * 10250-10255, kube-proxy's 10256, the CNI's ports; control planes add the API server, etcd, the
 * scheduler and controller-manager (and VIP's haproxy port + VRRP, protocol 112); workers and
 * workload-running control planes the NodePort range. Hard way: controllers 6443, 2379-2380 and
 * nginx's /healthz on 80; balancers the front end (6443) and haproxy's stats port if any.
 */
export function firewallPortsForRole(params: RolePortsParams): string[] {
  const cni = params.cni ? CNI_RULES[params.cni] : [];
  const frontEnd = [`${params.frontEndPort ?? 6443}/tcp`, ...(params.statsPort ? [`${params.statsPort}/tcp`] : [])];
  const node = ['10250-10255/tcp', '10256/tcp', ...cni];
  switch (params.role) {
    case 'control-plane':
      return [
        '6443/tcp',
        '2379-2380/tcp',
        '10257/tcp',
        '10259/tcp',
        ...node,
        ...(params.runsWorkloads ? NODE_PORTS : []),
        ...(params.vip ? [`${params.vip.port}/tcp`, 'protocol/112'] : []),
      ];
    case 'worker':
      return [...node, ...NODE_PORTS];
    case 'balancer':
    case 'hard-way-balancer':
      return frontEnd;
    case 'hard-way-controller':
      return ['6443/tcp', '2379-2380/tcp', '80/tcp'];
  }
}
