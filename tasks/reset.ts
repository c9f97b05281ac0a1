/**
 * Taking a node back to before `kubeadm init`/`join`: `kubeadm reset -f`, then what kubeadm leaves
 * behind and tells the operator to clean by hand ("The reset process does not perform cleanup of
 * CNI plugin configuration, network filtering rules and kubeconfig files"): the CNI's config and
 * state, Kubernetes' and the CNI's iptables chains (only theirs: a host firewall's rules stay),
 * IPVS services, the CNI's network interfaces, and the copies of admin.conf in home directories.
 *
 * Every task reports what it would remove as drift, so `--check` is the list of what a reset deletes.
 */
import { defineTask, sh, type CheckContext, type Drift, type Task, type TaskOptions } from '../runner/index.js';
import { CNI_STAMP } from './cni.js';
import { ADMIN_CONF, JOIN_CONFIG, KUBEADM_CONFIG, redactKubeadmOutput } from './kubeadm.js';

/** What `kubeadm init`/`join` leave on a node (kubeadm reset removes these), and Capstan's own files beside them. */
export const KUBEADM_STATE = [
  ADMIN_CONF,
  '/etc/kubernetes/super-admin.conf',
  '/etc/kubernetes/kubelet.conf',
  '/etc/kubernetes/bootstrap-kubelet.conf',
  '/etc/kubernetes/controller-manager.conf',
  '/etc/kubernetes/scheduler.conf',
  '/etc/kubernetes/manifests',
  '/etc/kubernetes/pki',
  '/var/lib/kubelet/config.yaml',
  '/var/lib/kubelet/kubeadm-flags.env',
  '/var/lib/kubelet/pki',
  '/var/lib/etcd/member',
  KUBEADM_CONFIG,
  JOIN_CONFIG,
  CNI_STAMP,
] as const;

/** Directories that hold state only while something is in them: an empty one is what a fresh node has. */
const NON_EMPTY_DIRS = new Set<string>(['/etc/kubernetes/manifests', '/etc/kubernetes/pki', '/var/lib/kubelet/pki']);

/**
 * Which of `paths` exist on the host (directories in `nonEmpty` only when they hold something),
 * in the order given. One read-only probe.
 */
async function readPresent(ctx: Pick<CheckContext, 'probe'>, paths: readonly string[], nonEmpty: ReadonlySet<string> = new Set()): Promise<string[]> {
  const files = paths.filter((p) => !nonEmpty.has(p));
  const dirs = paths.filter((p) => nonEmpty.has(p));
  const result = await ctx.probe(sh`for p in ${files}; do { [ -e "$p" ] || [ -L "$p" ]; } && echo "$p"; done
for p in ${dirs}; do [ -d "$p" ] && [ -n "$(ls -A "$p" 2>/dev/null)" ] && echo "$p"; done; true`);
  const found = new Set(result.stdout.split('\n').filter(Boolean));
  return paths.filter((p) => found.has(p));
}

/**
 * Read-only: which of {@link KUBEADM_STATE} the host has (empty on a host never joined, or reset).
 * Its value is the list, in --check too; a play of it is also how a playbook learns whether a host
 * answers before it plans work there (playbooks/remove-node.ts).
 *
 * @example const state = readKubeadmState(); const read = await play('reach', 'worker2', [state]);
 */
export function readKubeadmState(options?: TaskOptions): Task<string[]> {
  const found = new Map<string, string[]>();
  return defineTask<Record<string, never>, string[]>(
    {
      kind: 'kubeadm-state',
      id: () => 'kubeadm-state:read',
      title: () => 'kubeadm state on the host',
      async check(ctx) {
        found.set(ctx.host.name, await readPresent(ctx, KUBEADM_STATE, NON_EMPTY_DIRS));
        return [];
      },
      async apply() {},
      async result(ctx) {
        return found.get(ctx.host.name) ?? [];
      },
    },
    {},
    options,
  );
}

/**
 * `kubeadm reset -f` where kubeadm left state (certificates, kubeconfigs, static pod manifests,
 * kubelet configuration, the local etcd member), and Capstan's kubeadm config files. In sync when
 * none of {@link KUBEADM_STATE} is left. kubeadm stops the kubelet; the service stays enabled and
 * crash-loops until the next init or join, as on a node that never had one.
 *
 * @example await play('reset workers', 'workers', [kubeadmReset(), removeCniState(), removeKubernetesNetfilter(), removeCniInterfaces()]);
 */
export function kubeadmReset(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'kubeadm-reset',
      id: () => 'kubeadm:reset',
      title: () => 'kubeadm reset',
      async check(ctx) {
        const present = await readPresent(ctx, KUBEADM_STATE, NON_EMPTY_DIRS);
        return present.length ? [{ subject: 'kubeadm state', current: present.join(', '), desired: 'none (kubeadm reset -f)' }] : [];
      },
      async apply(ctx) {
        const ours = [KUBEADM_CONFIG, JOIN_CONFIG, CNI_STAMP] as string[];
        const kubeadmState = KUBEADM_STATE.filter((p) => !ours.includes(p));
        if ((await readPresent(ctx, kubeadmState, NON_EMPTY_DIRS)).length) {
          if ((await ctx.exec(sh`command -v kubeadm`)).code !== 0) {
            throw new Error(`kubeadm is not installed, but its state is: ${kubeadmState.join(', ')} — install kubeadm again to reset, or remove them by hand`);
          }
          const result = await ctx.run(sh`kubeadm reset -f`, { timeoutMs: 300_000 });
          for (const line of redactKubeadmOutput(result.stdout).split('\n').filter(Boolean).slice(-30)) ctx.log(line);
        }
        await ctx.run(sh`rm -f -- ${ours}`);
      },
    },
    {},
    options,
  );
}

/** CNI configuration (kubeadm reset leaves it) and the CNI plugins' IPAM and runtime state. */
export const CNI_STATE_DIRS = ['/etc/cni/net.d', '/var/lib/cni', '/run/flannel'] as const;

/**
 * Empties the CNI's directories ({@link CNI_STATE_DIRS}): a CNI config left behind makes a node
 * that joins later "Ready" with the old network's settings before its new CNI runs. The plugin
 * binaries in /opt/cni/bin are the kubernetes-cni package's and stay.
 */
export function removeCniState(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'cni-state',
      id: () => 'cni-state:removed',
      title: () => `remove the CNI's config and state (${CNI_STATE_DIRS.join(', ')})`,
      async check(ctx) {
        const entries = (await ctx.probe(sh`for d in ${[...CNI_STATE_DIRS]}; do [ -d "$d" ] && ls -A "$d" | sed "s|^|$d/|"; done; true`)).stdout.split('\n').filter(Boolean);
        return entries.length ? [{ subject: 'CNI state', current: entries.join(', '), desired: 'none' }] : [];
      },
      async apply(ctx) {
        // find -mindepth 1 -delete: the entries, never the directories themselves or what a symlink points to.
        await ctx.run(sh`for d in ${[...CNI_STATE_DIRS]}; do [ -d "$d" ] && find "$d" -mindepth 1 -delete; done; true`);
      },
    },
    {},
    options,
  );
}

/** Chains that kube-proxy and the CNIs create (kube-proxy, portmap/CNI, Calico, Flannel, Weave Net). */
export const KUBERNETES_CHAIN = /^(KUBE-|CNI-|cali-|FLANNEL-|WEAVE)/;

/** One table's Kubernetes chains and rules, as found in `iptables-save` output. */
export interface KubernetesNetfilter {
  table: string;
  chains: string[];
  /** Rules in those chains or jumping to them (including jumps from built-in chains such as PREROUTING). */
  rules: number;
}

interface SaveTable {
  name: string;
  lines: string[];
}

function parseSave(save: string): SaveTable[] {
  const tables: SaveTable[] = [];
  let current: SaveTable | undefined;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) {
      current = { name: line.slice(1).trim(), lines: [line] };
      tables.push(current);
    } else if (current) {
      current.lines.push(line);
      if (line.trim() === 'COMMIT') current = undefined;
    }
  }
  return tables;
}

/** True for a rule line of a Kubernetes chain, or one that jumps or goes to one. */
function isKubernetesRule(line: string): boolean {
  const words = line.trim().split(/\s+/);
  if (words[0] !== '-A') return false;
  if (KUBERNETES_CHAIN.test(words[1] ?? '')) return true;
  return words.some((word, i) => (word === '-j' || word === '-g' || word === '--jump' || word === '--goto') && KUBERNETES_CHAIN.test(words[i + 1] ?? ''));
}

function chainDeclared(line: string): string | undefined {
  return line.startsWith(':') ? line.slice(1).split(/\s+/)[0] : undefined;
}

/** The Kubernetes chains and rules per table in `iptables-save` output; tables without any are left out (pure). */
export function kubernetesNetfilter(save: string): KubernetesNetfilter[] {
  return parseSave(save)
    .map((table) => ({
      table: table.name,
      chains: table.lines.map(chainDeclared).filter((c): c is string => c !== undefined && KUBERNETES_CHAIN.test(c)),
      rules: table.lines.filter(isKubernetesRule).length,
    }))
    .filter((t) => t.chains.length > 0 || t.rules > 0);
}

/**
 * `iptables-restore` input that replaces each table holding Kubernetes chains or rules with the
 * same table without them: every other chain, policy and rule (a host firewall's) is kept as saved.
 * Tables without Kubernetes rules are not in the output, so restoring it leaves them alone (pure).
 */
export function withoutKubernetesNetfilter(save: string): string {
  const out: string[] = [];
  for (const table of parseSave(save)) {
    const touched = table.lines.some((line) => isKubernetesRule(line) || KUBERNETES_CHAIN.test(chainDeclared(line) ?? ''));
    if (!touched) continue;
    for (const line of table.lines) {
      if (isKubernetesRule(line)) continue;
      const chain = chainDeclared(line);
      if (chain !== undefined && KUBERNETES_CHAIN.test(chain)) continue;
      if (line.startsWith('#')) continue;
      out.push(line);
    }
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

const NETFILTER_TOOLS = ['iptables', 'ip6tables'] as const;

/**
 * Removes the netfilter state kube-proxy and the CNI leave (kubeadm reset does not): their iptables
 * and ip6tables chains and every rule that jumps to them, and IPVS services (ipvsadm --clear, when
 * ipvsadm is installed and any exist). Unlike the "iptables -F" of kubeadm's documentation, it keeps
 * the host's own rules (ufw, firewalld, Docker's): each affected table is restored without the
 * Kubernetes lines, atomically by iptables-restore.
 */
export function removeKubernetesNetfilter(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'kubernetes-netfilter',
      id: () => 'kubernetes-netfilter:removed',
      title: () => "remove kube-proxy's and the CNI's iptables chains and IPVS services",
      async check(ctx) {
        const drift: Drift[] = [];
        for (const tool of NETFILTER_TOOLS) {
          const saved = await ctx.probe(sh`command -v ${`${tool}-save`} >/dev/null 2>&1 || exit 0; ${`${tool}-save`}`);
          if (saved.code !== 0) throw new Error(`${tool}-save failed: ${saved.stderr.trim()}`);
          for (const found of kubernetesNetfilter(saved.stdout)) {
            drift.push({ subject: `${tool} ${found.table}`, current: `${found.chains.length} chains (${found.chains.slice(0, 6).join(', ')}${found.chains.length > 6 ? ', …' : ''}), ${found.rules} rules`, desired: 'none' });
          }
        }
        const ipvs = await ctx.probe(sh`command -v ipvsadm >/dev/null 2>&1 || exit 0; ipvsadm -S -n`);
        const services = ipvs.stdout.split('\n').filter((l) => l.startsWith('-A')).length;
        if (services) drift.push({ subject: 'IPVS', current: `${services} virtual services`, desired: 'none' });
        return drift;
      },
      async apply(ctx, _params, drift) {
        for (const tool of NETFILTER_TOOLS) {
          if (!drift.some((d) => d.subject.startsWith(`${tool} `))) continue;
          const saved = await ctx.run(sh`${`${tool}-save`}`);
          const restore = withoutKubernetesNetfilter(saved.stdout);
          if (restore) await ctx.run(sh`${`${tool}-restore`} -w`, { stdin: restore });
        }
        if (drift.some((d) => d.subject === 'IPVS')) await ctx.run(sh`ipvsadm --clear`);
      },
    },
    {},
    options,
  );
}

/** Network interfaces the CNIs and kube-proxy create on a node (pods' veths go with their namespaces). */
export const CNI_INTERFACE = /^(cni0|flannel\.1|flannel-v6\.1|flannel-wg|weave|datapath|vxlan-6784|vxlan\.calico|vxlan-v6\.calico|kube-ipvs0|nodelocaldns|cilium_host|cilium_net|cilium_vxlan)$/;

/**
 * Deletes the CNI's and kube-proxy's network interfaces ({@link CNI_INTERFACE}): a bridge left
 * with the old pod subnet's address breaks the next cluster's pod network on this node.
 */
export function removeCniInterfaces(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'cni-interfaces',
      id: () => 'cni-interfaces:removed',
      title: () => "remove the CNI's network interfaces",
      async check(ctx) {
        const names = await cniInterfaces(ctx);
        return names.length ? [{ subject: 'interfaces', current: names.join(', '), desired: 'none' }] : [];
      },
      async apply(ctx) {
        for (const name of await cniInterfaces(ctx)) await ctx.run(sh`ip link delete ${name}`);
      },
    },
    {},
    options,
  );
}

async function cniInterfaces(ctx: Pick<CheckContext, 'probe'>): Promise<string[]> {
  return (await ctx.probe(sh`ip -o link show`)).stdout
    .split('\n')
    .map((line) => /^\d+:\s+([^:@\s]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && CNI_INTERFACE.test(name));
}

export interface KubeconfigCopiesParams {
  /** Users whose ~/.kube/config may be a copy of admin.conf (the playbooks' kubeconfig_user, root). */
  users: string[];
}

/**
 * Removes ~/.kube/config of each user where it is a byte-for-byte copy of this node's admin.conf
 * (what the playbooks put there): after a reset it holds a dead cluster's admin credentials. A
 * kubeconfig that differs (merged, edited) is the user's and stays; a symlink is never followed.
 * Run it before {@link kubeadmReset}, which deletes the admin.conf to compare with.
 */
export function removeAdminKubeconfigCopies(params: KubeconfigCopiesParams, options?: TaskOptions): Task<void> {
  return defineTask<KubeconfigCopiesParams>(
    {
      kind: 'kubeconfig-copies',
      id: () => 'kubeconfig-copies:removed',
      title: (p) => `remove copies of admin.conf in ${p.users.map((u) => `~${u}/.kube/config`).join(', ')}`,
      validate: (p) => {
        for (const user of p.users) if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) throw new Error(`not a user name: ${JSON.stringify(user)}`);
      },
      async check(ctx, p) {
        const copies = await adminConfCopies(ctx, p.users);
        return copies.length ? [{ subject: 'admin.conf copies', current: copies.join(', '), desired: 'none' }] : [];
      },
      async apply(ctx, p) {
        for (const path of await adminConfCopies(ctx, p.users)) await ctx.run(sh`rm -f -- ${path}`);
      },
    },
    params,
    options,
  );
}

async function adminConfCopies(ctx: Pick<CheckContext, 'probe'>, users: readonly string[]): Promise<string[]> {
  const result = await ctx.probe(sh`[ -f ${ADMIN_CONF} ] || exit 0
admin=$(sha256sum < ${ADMIN_CONF})
for u in ${[...new Set(users)]}; do
  home=$(getent passwd "$u" | cut -d: -f6)
  [ -n "$home" ] || continue
  f="$home/.kube/config"
  [ -f "$f" ] && [ ! -L "$f" ] && [ "$(sha256sum < "$f")" = "$admin" ] && echo "$f"
done; true`);
  return [...new Set(result.stdout.split('\n').filter(Boolean))];
}
