import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { defineTask, Secret, sh, writeLocalFileAtomic, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireAccountName } from './validate.js';
import { ADMIN_CONF } from './kubeadm.js';

export interface KubeconfigParams {
  /** The user who gets admin.conf as ~/.kube/config (the seeds' mkdir/cp/chown). */
  user: string;
}

/**
 * Copies /etc/kubernetes/admin.conf to the user's ~/.kube/config, owned by the user, mode 0600
 * (seeds 000–004: `mkdir -p $HOME/.kube; cp -i /etc/kubernetes/admin.conf …; chown $(id -u):$(id -g) …`).
 * The content holds the cluster-admin key: it is a Secret, compared but never shown or diffed.
 *
 * @example ensureKubeconfig({ user: 'pi' })
 */
export function ensureKubeconfig(params: PerHostParams<KubeconfigParams>, options?: TaskOptions): Task<void> {
  return defineTask<KubeconfigParams>(
    {
      kind: 'kubeconfig',
      id: (p) => `kubeconfig:${p.user}`,
      title: (p) => `kubeconfig for ${p.user}`,
      validate: (p) => requireAccountName('user', p.user),
      async check(ctx, p) {
        const account = await accountOf(ctx, p.user);
        const admin = await ctx.readText(ADMIN_CONF);
        if (admin === null) throw new Error(`${ADMIN_CONF} does not exist on ${ctx.host.name}: is it an initialised control plane?`);
        const path = `${account.home}/.kube/config`;
        const current = await ctx.readText(path);
        const stat = current === null ? null : await ctx.stat(path);
        const drift = [];
        if (current !== admin) drift.push({ subject: 'content', file: path, current: current === null ? null : new Secret(current), desired: new Secret(admin) });
        if (stat && stat.mode !== '0600') drift.push({ subject: 'mode', current: stat.mode, desired: '0600' });
        if (stat && (stat.owner !== p.user || stat.group !== account.group)) drift.push({ subject: 'owner', current: `${stat.owner}:${stat.group}`, desired: `${p.user}:${account.group}` });
        return drift;
      },
      async apply(ctx, p) {
        const account = await accountOf(ctx, p.user);
        const admin = await ctx.readText(ADMIN_CONF);
        if (admin === null) throw new Error(`${ADMIN_CONF} disappeared`);
        const dir = `${account.home}/.kube`;
        if (p.user === 'root') {
          await ctx.run(sh`install -d -m 0700 -- ${dir}`);
          await ctx.writeFile(`${dir}/config`, new Secret(admin), { mode: '0600', owner: 'root', group: account.group });
          return;
        }
        // The user owns ~/.kube, so root must not follow anything in it: a symlink there (or a temp file
        // swapped for one) would make root chown or overwrite a file the user chose. Every step runs as
        // the user instead, who can only reach what the user could reach anyway.
        await ctx.run(sh`runuser -u ${p.user} -- sh -c ${KUBECONFIG_AS_USER} capstan-kubeconfig ${dir}`, { stdin: new Secret(admin) });
      },
    },
    params,
    options,
  );
}

/**
 * Run as the kubeconfig's user by `runuser` with the directory as $1 and admin.conf on stdin: the
 * directory made 0700 (a symlink in its place refused), the content written to an exclusive temp file
 * (0600 from the start, umask 077) and renamed over `config`, which replaces a symlink rather than
 * writing through it.
 */
export const KUBECONFIG_AS_USER = `set -e
umask 077
if [ -L "$1" ]; then echo "$1 is a symbolic link: refusing to write the kubeconfig through it" >&2; exit 1; fi
mkdir -p -- "$1"
chmod 0700 -- "$1"
tmp=$(mktemp "$1/.config.capstan-XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod 0600 -- "$tmp"
mv -f -- "$tmp" "$1/config"
trap - EXIT`;

async function accountOf(ctx: { probe: import('../runner/task.js').CheckContext['probe'] }, user: string): Promise<{ home: string; group: string }> {
  const passwd = await ctx.probe(sh`getent passwd ${user}`);
  const home = passwd.stdout.trim().split(':')[5];
  if (passwd.code !== 0 || !home) throw new Error(`no user ${user} on this host`);
  const group = (await ctx.probe(sh`id -gn ${user}`)).stdout.trim();
  return { home, group };
}

interface KubeconfigFile {
  apiVersion?: string;
  kind?: string;
  clusters?: { name: string; cluster: Record<string, unknown> }[];
  users?: { name: string; user: Record<string, unknown> }[];
  contexts?: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
  'current-context'?: string;
  preferences?: Record<string, unknown>;
}

/**
 * What a control plane's kubeconfig may hand this machine: where the API server is, how to trust it and
 * one static credential. Anything else is refused, not dropped: an `exec` or `auth-provider` entry runs a
 * program on the operator's machine, a file path (`client-key`, `certificate-authority`) or `proxy-url`
 * points the operator's kubectl somewhere the control plane chose.
 */
const CLUSTER_FIELDS = ['server', 'certificate-authority-data'] as const;
const USER_FIELDS = ['client-certificate-data', 'client-key-data', 'token'] as const;

function copyOnly(entry: Record<string, unknown> | undefined, allowed: readonly string[], what: string): Record<string, unknown> {
  const fields = entry ?? {};
  const refused = Object.keys(fields).filter((key) => !allowed.includes(key));
  if (refused.length) {
    throw new Error(`the control plane's admin kubeconfig ${what} has ${refused.map((key) => JSON.stringify(key)).join(', ')}: Capstan copies only ${allowed.join(', ')} into this machine's kubeconfig and refuses anything else (an exec plugin or auth provider would run on this machine)`);
  }
  const notText = Object.keys(fields).filter((key) => typeof fields[key] !== 'string');
  if (notText.length) throw new Error(`the control plane's admin kubeconfig ${what} has ${notText.join(', ')} that is not a string`);
  const copied: Record<string, unknown> = {};
  for (const key of allowed) if (key in fields) copied[key] = fields[key];
  return copied;
}

/**
 * Merges a cluster's admin kubeconfig into an existing kubeconfig under one name (cluster, user
 * `<name>-admin` and context `<name>`), like `k3sup --merge`: entries of other names are kept, entries
 * of this name are replaced, current-context is set to it (pure). Of the incoming cluster and user it
 * copies only the server, CA data and client certificate/key or token (see CLUSTER_FIELDS, USER_FIELDS).
 */
export function mergeKubeconfig(existing: string | null, admin: string, name: string, server?: string): string {
  const base = (existing && existing.trim() ? parse(existing) : {}) as KubeconfigFile;
  const incoming = parse(admin) as KubeconfigFile;
  const sourceContext = incoming.contexts?.find((c) => c.name === incoming['current-context']) ?? incoming.contexts?.[0];
  const cluster = incoming.clusters?.find((c) => c.name === sourceContext?.context.cluster) ?? incoming.clusters?.[0];
  const user = incoming.users?.find((u) => u.name === sourceContext?.context.user) ?? incoming.users?.[0];
  if (!cluster || !user) throw new Error('the admin kubeconfig has no cluster or user');
  const userName = `${name}-admin`;
  const clusterEntry = { name, cluster: copyOnly(cluster.cluster, CLUSTER_FIELDS, `cluster ${JSON.stringify(cluster.name)}`) };
  if (server) clusterEntry.cluster.server = server;
  const merged: KubeconfigFile = {
    apiVersion: base.apiVersion ?? 'v1',
    kind: base.kind ?? 'Config',
    clusters: [...(base.clusters ?? []).filter((c) => c.name !== name), clusterEntry],
    users: [...(base.users ?? []).filter((u) => u.name !== userName), { name: userName, user: copyOnly(user.user, USER_FIELDS, `user ${JSON.stringify(user.name)}`) }],
    contexts: [...(base.contexts ?? []).filter((c) => c.name !== name), { name, context: { cluster: name, user: userName } }],
    'current-context': name,
    preferences: base.preferences ?? {},
  };
  return stringify(merged);
}

export interface FetchKubeconfigParams {
  /** Local kubeconfig to merge into; default ~/.kube/config of the user running Capstan. */
  to?: string;
  /** Name for the cluster, user (<name>-admin) and context. */
  context: string;
  /** Replace the server URL (e.g. with an address reachable from the controller). */
  server?: string;
}

/**
 * Copies a control plane's admin.conf to the controller machine and merges it into a local
 * kubeconfig under a named context, never overwriting other contexts. The local file is written
 * atomically with mode 0600. Run it on one control plane (`runOnce`).
 *
 * @example fetchKubeconfig({ context: 'homelab' })
 */
export function fetchKubeconfig(params: PerHostParams<FetchKubeconfigParams>, options?: TaskOptions): Task<void> {
  return defineTask<FetchKubeconfigParams>(
    {
      kind: 'fetch-kubeconfig',
      id: (p) => `local-kubeconfig:${p.to ?? '~/.kube/config'}:${p.context}`,
      title: (p) => `kubeconfig context ${p.context} on this machine (${localPath(p.to)})`,
      validate: (p) => {
        if (!/^[A-Za-z0-9._@-]+$/.test(p.context)) throw new Error(`context must be a simple name, got ${JSON.stringify(p.context)}`);
      },
      async check(ctx, p) {
        const admin = await ctx.readText(ADMIN_CONF);
        if (admin === null) throw new Error(`${ADMIN_CONF} does not exist on ${ctx.host.name}`);
        const current = readLocal(localPath(p.to));
        const desired = mergeKubeconfig(current, admin, p.context, p.server);
        return current === desired ? [] : [{ subject: 'content', file: localPath(p.to), current: current === null ? null : new Secret(current), desired: new Secret(desired) }];
      },
      async apply(ctx, p) {
        const admin = await ctx.readText(ADMIN_CONF);
        if (admin === null) throw new Error(`${ADMIN_CONF} disappeared`);
        const path = localPath(p.to);
        writeLocalAtomically(path, mergeKubeconfig(readLocal(path), admin, p.context, p.server));
      },
    },
    params,
    options,
  );
}

function localPath(to: string | undefined): string {
  if (!to) return join(homedir(), '.kube', 'config');
  return to.startsWith('~/') ? join(homedir(), to.slice(2)) : to;
}

function readLocal(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Same guarantees as on hosts (temp file in the same directory, 0600, fsync, rename), with a random
 * temp name created exclusively: the old `<path>.capstan-<pid>` could be pre-created as a symlink by
 * another local user, and root would have written the admin kubeconfig through it.
 */
function writeLocalAtomically(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeLocalFileAtomic(path, content, 0o600);
}
