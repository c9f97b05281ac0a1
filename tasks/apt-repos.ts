/**
 * Repository sources (one-line .list or deb822 .sources) and the seeds' repositories: pkgs.k8s.io and Docker's.
 */
import { defineTask, sh, type CheckContext, type Drift, type HostView, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireString } from './validate.js';
import { kubernetesMinor } from './kubernetes-version.js';
import { ensureAptKey, requireKeyring, requireUrl, type AptKeyParams } from './apt-keys.js';
import { markStale, notifyingUpdate } from './apt-update.js';

/* ------------------------------------------------------------------ repositories */

export type AptSourceFormat = 'one-line' | 'deb822';

export interface AptRepoParams {
  /** File name under /etc/apt/sources.list.d, without extension: `kubernetes` → kubernetes.list / kubernetes.sources. */
  name: string;
  /** The repository's base URI. */
  uri: string;
  /** Distribution (`bookworm`), or a path ending in `/` for a flat repository (`/`). Default: the host's codename. */
  suite?: string;
  /** Components (`main`, `stable`); none for a flat repository. */
  components?: readonly string[];
  /** The keyring for `signed-by=` (see ensureAptKey). */
  keyring: string;
  /** `arch=`: default the host's `dpkg --print-architecture`; null for no arch option (every configured architecture). */
  arch?: string | null;
  /** `one-line` (`<name>.list`, default) or `deb822` (`<name>.sources`). */
  format?: AptSourceFormat;
}

/** An AptRepoParams with the host's defaults filled in: what renderAptSource renders. */
export interface ResolvedAptRepo {
  uri: string;
  suite: string;
  components: readonly string[];
  keyring: string;
  arch: string | null;
}

/** Fills in the defaults from the host's facts: suite = codename, arch = `dpkg --print-architecture`. */
export function resolveAptRepo(p: AptRepoParams, host: Pick<HostView, 'facts'>): ResolvedAptRepo {
  const suite = p.suite ?? host.facts.codename;
  if (!suite) throw new Error(`no suite given and the host has no codename fact (VERSION_CODENAME)`);
  const arch = p.arch === undefined ? host.facts.arch || null : p.arch;
  return { uri: p.uri, suite, components: p.components ?? [], keyring: p.keyring, arch };
}

const isFlat = (suite: string): boolean => suite.endsWith('/');

/**
 * The source entry, exactly as apt reads it (pure). One-line:
 * `deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable`;
 * deb822: Types/URIs/Suites/Components/Architectures/Signed-By fields (no Components for a flat repo).
 */
export function renderAptSource(repo: ResolvedAptRepo, format: AptSourceFormat = 'one-line'): string {
  const archs = repo.arch ? repo.arch.split(',') : [];
  if (format === 'deb822') {
    const fields = [
      `Types: deb`,
      `URIs: ${repo.uri}`,
      `Suites: ${repo.suite}`,
      ...(repo.components.length ? [`Components: ${repo.components.join(' ')}`] : []),
      ...(archs.length ? [`Architectures: ${archs.join(' ')}`] : []),
      `Signed-By: ${repo.keyring}`,
    ];
    return `${fields.join('\n')}\n`;
  }
  const options = [...(archs.length ? [`arch=${archs.join(',')}`] : []), `signed-by=${repo.keyring}`];
  return `${['deb', `[${options.join(' ')}]`, repo.uri, repo.suite, ...repo.components].join(' ')}\n`;
}

const SOURCES_DIR = '/etc/apt/sources.list.d';

/** The file for a repository in a format, and the file of the other format (removed if present). */
export function aptSourcePaths(name: string, format: AptSourceFormat = 'one-line'): { path: string; other: string } {
  const list = `${SOURCES_DIR}/${name}.list`;
  const sources = `${SOURCES_DIR}/${name}.sources`;
  return format === 'deb822' ? { path: sources, other: list } : { path: list, other: sources };
}

function validateRepo(p: AptRepoParams): void {
  requireString('name', p.name);
  if (!/^[A-Za-z0-9_.-]+$/.test(p.name)) throw new Error(`name must be a file name of letters, digits, _ . - (apt ignores others), got ${JSON.stringify(p.name)}`);
  requireUrl('uri', p.uri);
  requireKeyring(p.keyring);
  if (p.suite !== undefined && (typeof p.suite !== 'string' || !/^[A-Za-z0-9_.\-/~:+]+$/.test(p.suite))) throw new Error(`suite must be a distribution name or a path ending in /, got ${JSON.stringify(p.suite)}`);
  const components = p.components ?? [];
  if (!Array.isArray(components) || !components.every((c) => typeof c === 'string' && /^[A-Za-z0-9_.\-/]+$/.test(c))) {
    throw new Error(`components must be a list of component names, got ${JSON.stringify(p.components)}`);
  }
  if (p.suite !== undefined && isFlat(p.suite) && components.length) throw new Error(`a flat repository (suite ${p.suite}) has no components`);
  if ((p.suite === undefined || !isFlat(p.suite)) && components.length === 0) throw new Error('components are required unless suite is a path ending in / (flat repository)');
  if (p.arch !== undefined && p.arch !== null && (typeof p.arch !== 'string' || !/^[a-z0-9-]+(,[a-z0-9-]+)*$/.test(p.arch))) {
    throw new Error(`arch must be a Debian architecture like amd64 or arm64 (comma-separated for several), or null, got ${JSON.stringify(p.arch)}`);
  }
  if (p.format !== undefined && p.format !== 'one-line' && p.format !== 'deb822') throw new Error(`format must be one-line or deb822, got ${JSON.stringify(p.format)}`);
}

/**
 * Ensures an apt repository is configured with `signed-by=` its keyring, in one-line
 * (`/etc/apt/sources.list.d/<name>.list`) or deb822 (`<name>.sources`) format; the file of the
 * other format is removed, so apt never sees the repository twice. `arch` defaults to the host's
 * `dpkg --print-architecture` (arm64 on a 64-bit Pi) and `suite` to its codename. A change marks
 * the host's package lists stale: the next ensurePackages, or the aptUpdate handler notified by
 * default, runs `apt-get update` once.
 *
 * @example ensureAptRepo({ name: 'docker', uri: 'https://download.docker.com/linux/debian', components: ['stable'], keyring: '/etc/apt/keyrings/docker.gpg' })
 */
export function ensureAptRepo(params: PerHostParams<AptRepoParams>, options?: TaskOptions): Task<void> {
  const desired = (ctx: CheckContext, p: AptRepoParams) => renderAptSource(resolveAptRepo(p, ctx.host), p.format);
  return defineTask<AptRepoParams>(
    {
      kind: 'apt-repo',
      id: (p) => `apt-repo:${p.name}`,
      title: (p) => `apt repository ${p.name}`,
      validate: validateRepo,
      probes: (p) => {
        const { path, other } = aptSourcePaths(p.name, p.format);
        return [{ kind: 'read', path }, { kind: 'stat', path }, { kind: 'stat', path: other }];
      },
      async check(ctx, p) {
        const { path, other } = aptSourcePaths(p.name, p.format);
        const want = desired(ctx, p);
        const [current, stat, otherStat] = await Promise.all([ctx.readText(path), ctx.stat(path), ctx.stat(other)]);
        const drift: Drift[] = [];
        if (current !== want) drift.push({ subject: 'content', file: path, current, desired: want });
        else if (stat && stat.mode !== '0644') drift.push({ subject: 'mode', current: stat.mode, desired: '0644' });
        if (otherStat) drift.push({ subject: other, current: 'present', desired: 'absent' });
        if (drift.length && ctx.checkMode) markStale(ctx.host, `repository ${p.name}`);
        return drift;
      },
      async apply(ctx, p) {
        const { path, other } = aptSourcePaths(p.name, p.format);
        await ctx.run(sh`mkdir -p -m 0755 -- ${SOURCES_DIR}`);
        await ctx.writeFile(path, desired(ctx, p), { mode: '0644' });
        await ctx.run(sh`rm -f -- ${other}`);
        markStale(ctx.host, `repository ${p.name}`);
      },
    },
    params,
    notifyingUpdate(options),
  );
}

/* ------------------------------------------------------------------ the seeds' repositories */

/** A key and the repository it signs, for ensureAptSource. */
export interface AptSource {
  key: PerHostParams<AptKeyParams>;
  repo: PerHostParams<AptRepoParams>;
}

/** The Kubernetes community repositories' signing key (pkgs.k8s.io, "isv:kubernetes OBS Project"). */
export const KUBERNETES_KEY_FINGERPRINT = 'DE15B14486CD377B9E876E1A234654DA9A296436';
/** Docker's release key ("Docker Release (CE deb)"). */
export const DOCKER_KEY_FINGERPRINT = '9DC858229FC7DD38854AE2D88D81803C0EBFCD88';


/** pkgs.k8s.io's base URL: one repository per minor below it. */
export const KUBERNETES_REPO_BASE_URL = 'https://pkgs.k8s.io';

/** The repository of a Kubernetes minor under a pkgs.k8s.io-shaped base URL: `<base>/core:/stable:/v1.34/deb/` (pure). */
export function kubernetesRepoUrl(version: string, baseUrl: string = KUBERNETES_REPO_BASE_URL): string {
  return `${baseUrl.replace(/\/+$/, '')}/core:/stable:/${kubernetesMinor(version)}/deb/`;
}

/**
 * The pkgs.k8s.io repository for a Kubernetes minor (seed 001): key
 * `https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key` → /etc/apt/keyrings/kubernetes-apt-keyring.gpg,
 * flat repository `deb [signed-by=…] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /` (packages of
 * every architecture, so no arch option). `baseUrl` and `fingerprint` name a mirror laid out like
 * pkgs.k8s.io and its signing key (the lab's repository).
 *
 * @example ensureAptSource(kubernetesRepo('1.34.2'))
 */
export function kubernetesRepo(
  version: string,
  options: { format?: AptSourceFormat; keyring?: string; name?: string; baseUrl?: string; fingerprint?: string } = {},
): AptSource {
  const uri = kubernetesRepoUrl(version, options.baseUrl);
  const keyring = options.keyring ?? '/etc/apt/keyrings/kubernetes-apt-keyring.gpg';
  return {
    key: { url: `${uri}Release.key`, keyring, fingerprint: options.fingerprint ?? KUBERNETES_KEY_FINGERPRINT },
    repo: { name: options.name ?? 'kubernetes', uri, suite: '/', components: [], keyring, arch: null, ...(options.format ? { format: options.format } : {}) },
  };
}

export type DockerDistro = 'debian' | 'ubuntu' | 'raspbian';

/** Docker's distribution directory for a host: ubuntu on Ubuntu, raspbian on 32-bit Raspberry Pi OS, else debian (64-bit Pi OS too). */
export function dockerDistro(host: Pick<HostView, 'facts'>): DockerDistro {
  if (host.facts.osId === 'ubuntu') return 'ubuntu';
  if (host.facts.osId === 'raspbian' && host.facts.arch === 'armhf') return 'raspbian';
  return 'debian';
}

/**
 * Docker's repository (seeds 000/001/002): key `https://download.docker.com/linux/<distro>/gpg`
 * → /etc/apt/keyrings/docker.gpg, `deb [arch=<host arch> signed-by=…] https://download.docker.com/linux/<distro> <codename> stable`.
 * The distro defaults per host (see dockerDistro); the codename and arch come from the host.
 *
 * @example ensureAptSource(dockerRepo()), ensurePackages(['containerd.io'])
 */
export function dockerRepo(options: { distro?: DockerDistro; format?: AptSourceFormat; keyring?: string; name?: string } = {}): AptSource {
  const keyring = options.keyring ?? '/etc/apt/keyrings/docker.gpg';
  const base = (host: HostView) => `https://download.docker.com/linux/${options.distro ?? dockerDistro(host)}`;
  return {
    key: { url: (host) => `${base(host)}/gpg`, keyring, fingerprint: DOCKER_KEY_FINGERPRINT },
    repo: { name: options.name ?? 'docker', uri: base, components: ['stable'], keyring, ...(options.format ? { format: options.format } : {}) },
  };
}

/**
 * The two tasks for a repository: its key, then the repository.
 *
 * @example await play('repos', 'all', [...ensureAptSource(kubernetesRepo('1.34.2')), ...ensureAptSource(dockerRepo())])
 */
export function ensureAptSource(source: AptSource, options?: TaskOptions): Task<void>[] {
  return [ensureAptKey(source.key, options), ensureAptRepo(source.repo, options)];
}
