import { posix } from 'node:path';
import { defineTask, sh, type Drift, type HostView, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { describeKey, downloadKey, KUBERNETES_KEY_FINGERPRINT, normaliseFingerprint } from './apt.js';
import { kubernetesMinor } from './kubernetes-version.js';
import { requireAbsolutePath } from './validate.js';

/*
 * RHEL-family hosts (seed 004 runs CentOS 9): SELinux in permissive mode and yum/dnf repositories
 * and packages, where Debian hosts use apt. No RHEL test host exists in Capstan's lab (Debian
 * containers only): what is tested is the rendering of every file, exactly, by the pure functions
 * below.
 *
 *   setenforce 0
 *   sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config
 *   cat <<EOF > /etc/yum.repos.d/kubernetes.repo      (…exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni)
 *   yum install -y kubelet kubeadm kubectl --disableexcludes=kubernetes
 */

/* ------------------------------------------------------------------ SELinux */

export const SELINUX_CONFIG = '/etc/selinux/config';

/**
 * /etc/selinux/config with SELinux permissive at boot (pure), as the seed's sed: an `SELINUX=enforcing`
 * line becomes `SELINUX=permissive`; `permissive` and `disabled` (stricter than asked: nothing
 * enforced) are kept; every other line is kept byte for byte. A file without an SELINUX= line gets
 * one appended.
 */
export function selinuxPermissiveConfig(text: string): string {
  const lines = text.split('\n');
  let found = false;
  const edited = lines.map((line) => {
    const match = /^(\s*SELINUX\s*=\s*)(\S*)(.*)$/.exec(line);
    if (!match) return line;
    found = true;
    return match[2]!.toLowerCase() === 'enforcing' ? `${match[1]}permissive${match[3]}` : line;
  });
  if (found) return edited.join('\n');
  const base = text === '' || text.endsWith('\n') ? text : `${text}\n`;
  return `${base}SELINUX=permissive\n`;
}

/** `getenforce`'s answer (pure): Enforcing, Permissive or Disabled; null when SELinux is not there. */
export function parseGetenforce(output: string, code: number | null): 'Enforcing' | 'Permissive' | 'Disabled' | null {
  if (code !== 0) return null;
  const value = output.trim();
  return value === 'Enforcing' || value === 'Permissive' || value === 'Disabled' ? value : null;
}

/**
 * Ensures SELinux does not enforce, now (`setenforce 0`) and at boot (/etc/selinux/config, see
 * {@link selinuxPermissiveConfig}), as the Kubernetes packages' install guide and seed 004 ask. A
 * host without SELinux (no getenforce, no config file: Debian) is in sync. Id: `selinux`.
 *
 * @example await play('rhel', 'all', [ensureSelinuxPermissive()]);
 */
export function ensureSelinuxPermissive(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'selinux',
      id: () => 'selinux',
      title: () => 'SELinux permissive (now and at boot)',
      desired: () => 'permissive',
      probes: () => [{ kind: 'read', path: SELINUX_CONFIG }],
      async check(ctx) {
        const drift: Drift[] = [];
        const running = await ctx.probe(sh`getenforce`);
        const mode = parseGetenforce(running.stdout, running.code);
        if (mode === 'Enforcing') drift.push({ subject: 'SELinux now', current: 'Enforcing', desired: 'Permissive' });
        const current = await ctx.readText(SELINUX_CONFIG);
        if (current !== null) {
          const desired = selinuxPermissiveConfig(current);
          if (desired !== current) drift.push({ subject: 'SELinux at boot', file: SELINUX_CONFIG, current, desired });
        }
        return drift;
      },
      async apply(ctx, _p, drift) {
        if (drift.some((d) => d.subject === 'SELinux now')) await ctx.run(sh`setenforce 0`);
        const current = await ctx.readText(SELINUX_CONFIG);
        if (current !== null) {
          const desired = selinuxPermissiveConfig(current);
          if (desired !== current) await ctx.writeFile(SELINUX_CONFIG, desired);
        }
      },
    },
    {},
    options,
  );
}

/* ------------------------------------------------------------------ yum repositories */

export interface YumRepoParams {
  /** The section name and file name: `kubernetes` → [kubernetes] in /etc/yum.repos.d/kubernetes.repo; also what --disableexcludes names. */
  id: string;
  name: string;
  baseurl: string;
  enabled?: boolean;
  gpgcheck?: boolean;
  /** Where the repository's signing key is published (https, file://, or plain http only with `gpgkeyFingerprint`). */
  gpgkey?: string;
  /**
   * The full fingerprint(s) of the key at `gpgkey`, as for apt keys: the key is downloaded on the
   * host, must be exactly that key (a mismatch fails, in --check too, and nothing is written), and is
   * kept ASCII-armored in `gpgkeyPath`; the .repo file's `gpgkey=` names that file, so dnf imports
   * the checked key, never another download of it.
   */
  gpgkeyFingerprint?: string | readonly string[];
  /** Where the checked key is kept; default /etc/pki/rpm-gpg/RPM-GPG-KEY-<id>. Only with `gpgkeyFingerprint`. */
  gpgkeyPath?: string;
  /** Packages `yum update` must leave alone (seed 004: Kubernetes is upgraded by its own procedure). */
  exclude?: readonly string[];
}

const REPO_ID = /^[A-Za-z0-9_.:-]+$/;

/**
 * The fingerprint of the key that signs pkgs.k8s.io's rpm repositories: the same OBS project key
 * ("isv:kubernetes OBS Project") as its deb repositories' Release.key, {@link KUBERNETES_KEY_FINGERPRINT}.
 */
export const KUBERNETES_RPM_KEY_FINGERPRINT = KUBERNETES_KEY_FINGERPRINT;

/**
 * The fingerprint of Docker's rpm signing key (download.docker.com/linux/{centos,fedora,rhel}/gpg),
 * "060A 61C5 1B55 8A7F 742B 77AA C52F EB6B 621E 9F35" in Docker's install guides for CentOS, Fedora
 * and RHEL. It is not the key of Docker's deb repositories (9DC8 5822 …, DOCKER_KEY_FINGERPRINT).
 */
export const DOCKER_RPM_KEY_FINGERPRINT = '060A61C51B558A7F742B77AAC52FEB6B621E9F35';

/** Where a repository's checked key is kept: `gpgkeyPath`, else /etc/pki/rpm-gpg/RPM-GPG-KEY-<id> (the RPM convention). */
export function yumKeyPath(p: Pick<YumRepoParams, 'id' | 'gpgkeyPath'>): string {
  return p.gpgkeyPath ?? `/etc/pki/rpm-gpg/RPM-GPG-KEY-${p.id}`;
}

export function validateYumRepo(p: YumRepoParams): void {
  if (!REPO_ID.test(p.id)) throw new Error(`id must be letters, digits, _ . : -, got ${JSON.stringify(p.id)}`);
  if (typeof p.name !== 'string' || p.name === '' || /\n/.test(p.name)) throw new Error('name must be one line of text');
  for (const key of ['baseurl', 'gpgkey'] as const) {
    const value = p[key];
    if (value !== undefined && !/^(https?|file):\/\/\S+$/.test(value)) throw new Error(`${key} must be a URL without blanks, got ${JSON.stringify(value)}`);
  }
  if (p.baseurl === undefined) throw new Error('baseurl is required');
  if (p.gpgkeyFingerprint !== undefined) {
    if (p.gpgkey === undefined) throw new Error('gpgkeyFingerprint needs gpgkey (where the key is published)');
    const list = typeof p.gpgkeyFingerprint === 'string' ? [p.gpgkeyFingerprint] : p.gpgkeyFingerprint;
    if (!Array.isArray(list) || list.length === 0) throw new Error('gpgkeyFingerprint must be a fingerprint or a non-empty list of them');
    list.forEach(normaliseFingerprint);
    requireAbsolutePath('gpgkeyPath', yumKeyPath(p));
    if (/\s/.test(yumKeyPath(p))) throw new Error(`gpgkeyPath must not contain blanks (gpgkey= is a list of URLs), got ${JSON.stringify(yumKeyPath(p))}`);
  } else if (p.gpgkeyPath !== undefined) {
    throw new Error('gpgkeyPath is where a checked key is kept: give gpgkeyFingerprint with it');
  } else if (p.gpgkey !== undefined && /^http:/i.test(p.gpgkey)) {
    // dnf would import whatever key answers over plain http, and then trust it for every package.
    throw new Error(`the key ${p.gpgkey} is fetched over plain http: give gpgkeyFingerprint (its full fingerprint, as the vendor publishes it), or an https:// URL`);
  }
  if (p.exclude !== undefined && !(Array.isArray(p.exclude) && p.exclude.every((name) => /^[A-Za-z0-9_.+*?-]+$/.test(name)))) {
    throw new Error(`exclude must be a list of package names (globs allowed), got ${JSON.stringify(p.exclude)}`);
  }
}

/**
 * The .repo file (pure), in the order of the seed's. With `gpgkeyFingerprint`, `gpgkey=` is the
 * checked copy (file:///etc/pki/rpm-gpg/RPM-GPG-KEY-<id>), where the seed names the URL.
 */
export function renderYumRepo(p: YumRepoParams): string {
  validateYumRepo(p);
  const gpgkey = p.gpgkeyFingerprint !== undefined ? `file://${yumKeyPath(p)}` : p.gpgkey;
  return [
    `[${p.id}]`,
    `name=${p.name}`,
    `baseurl=${p.baseurl}`,
    `enabled=${p.enabled === false ? 0 : 1}`,
    `gpgcheck=${p.gpgcheck === false ? 0 : 1}`,
    ...(gpgkey ? [`gpgkey=${gpgkey}`] : []),
    ...(p.exclude?.length ? [`exclude=${p.exclude.join(' ')}`] : []),
    '',
  ].join('\n');
}

/** The packages the pkgs.k8s.io repository's `exclude=` keeps away from `yum update`. */
export const KUBERNETES_RPM_EXCLUDES = ['kubelet', 'kubeadm', 'kubectl', 'cri-tools', 'kubernetes-cni'] as const;

/**
 * The pkgs.k8s.io rpm repository of a Kubernetes minor (seed 004, which used v1.32):
 * `baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/`, its repomd.xml.key (pinned to
 * {@link KUBERNETES_RPM_KEY_FINGERPRINT}, kept as /etc/pki/rpm-gpg/RPM-GPG-KEY-kubernetes), and
 * `exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni`.
 *
 * @example ensureYumRepo(kubernetesYumRepo('1.34'))
 */
export function kubernetesYumRepo(version: string): YumRepoParams {
  const base = `https://pkgs.k8s.io/core:/stable:/${kubernetesMinor(version)}/rpm/`;
  return {
    id: 'kubernetes',
    name: 'Kubernetes',
    baseurl: base,
    enabled: true,
    gpgcheck: true,
    gpgkey: `${base}repodata/repomd.xml.key`,
    gpgkeyFingerprint: KUBERNETES_RPM_KEY_FINGERPRINT,
    exclude: [...KUBERNETES_RPM_EXCLUDES],
  };
}

/** `ID` values of /etc/os-release for the RHEL family (seed 004's CentOS 9 and its relatives, Fedora). */
export const RHEL_FAMILY_OS_IDS: readonly string[] = ['rhel', 'centos', 'rocky', 'almalinux', 'fedora', 'ol'];

/** True for a RHEL-family `ID` (pure): yum/dnf and SELinux instead of apt. */
export function isRhelFamilyOs(osId: string): boolean {
  return RHEL_FAMILY_OS_IDS.includes(osId);
}

/**
 * Which of Docker's rpm trees (download.docker.com/linux/<tree>/) serves a distribution (pure):
 * Fedora and RHEL have their own (the CentOS tree has no Fedora release numbers: `$releasever`
 * 40 would be a 404); CentOS Stream, Rocky, AlmaLinux and Oracle Linux use CentOS's, as Docker's
 * install guide says for them. Not a RHEL-family ID: an error.
 */
export function dockerRpmTree(osId: string): 'centos' | 'fedora' | 'rhel' {
  if (!isRhelFamilyOs(osId)) throw new Error(`${JSON.stringify(osId)} is not a RHEL-family distribution (Docker's rpm repositories serve ${RHEL_FAMILY_OS_IDS.join(', ')})`);
  return osId === 'fedora' ? 'fedora' : osId === 'rhel' ? 'rhel' : 'centos';
}

/**
 * Docker's docker-ce-stable repository for a RHEL-family distribution (pure), as Docker's own
 * docker-ce.repo for that tree (https://download.docker.com/linux/<tree>/docker-ce.repo) has it,
 * its key pinned to {@link DOCKER_RPM_KEY_FINGERPRINT}: containerd.io, and docker-ce with `docker_engine`. seed 004 itself installs containerd from
 * release tarballs; the playbooks use the same source as on Debian.
 *
 * @example ensureYumRepo({ ...dockerYumRepo('centos'), baseurl: (host) => dockerYumRepo(host.facts.osId).baseurl })
 */
export function dockerYumRepo(osId = 'centos'): YumRepoParams {
  const tree = dockerRpmTree(osId);
  return {
    id: 'docker-ce-stable',
    name: 'Docker CE Stable - $basearch',
    baseurl: `https://download.docker.com/linux/${tree}/$releasever/$basearch/stable`,
    enabled: true,
    gpgcheck: true,
    gpgkey: `https://download.docker.com/linux/${tree}/gpg`,
    gpgkeyFingerprint: DOCKER_RPM_KEY_FINGERPRINT,
  };
}

/** Where containerd comes from on a RHEL-family host (the playbooks' `containerd_source`). */
export type RpmContainerdSource = 'docker' | 'distro';

/**
 * The rpm packages of the container runtime on a RHEL-family host (pure), or an error that says
 * why the combination cannot be set up there:
 * - `docker`: containerd.io from Docker's repository (+ docker-ce docker-ce-cli with the engine);
 * - `distro` on Fedora: Fedora's own `containerd` (+ its Docker Engine, moby-engine, as Debian's
 *   docker.io is on Debian);
 * - `distro` elsewhere: RHEL, CentOS Stream, Rocky, AlmaLinux and Oracle Linux ship no containerd
 *   package (their runtimes are podman and CRI-O): an error naming the host.
 */
export function rpmContainerRuntimePackages(host: string, osId: string, source: RpmContainerdSource, dockerEngine: boolean): string[] {
  if (source === 'docker') return ['containerd.io', ...(dockerEngine ? ['docker-ce', 'docker-ce-cli'] : [])];
  if (osId !== 'fedora') {
    throw new Error(`host ${host}: containerd_source: distro is not supported on ${osId || 'this distribution'}, which ships no containerd package; use containerd_source: docker (containerd.io from Docker's repository)`);
  }
  return ['containerd', ...(dockerEngine ? ['moby-engine'] : [])];
}

/**
 * {@link ensureYumRepo} of Docker's repository for each host's distribution ({@link dockerYumRepo}
 * of its os-release ID): one task, the tree chosen per host. Id: `yum-repo:docker-ce-stable`.
 *
 * @example ensureDockerYumRepo({ when: (host) => isRhelFamilyOs(host.facts.osId) })
 */
export function ensureDockerYumRepo(options?: TaskOptions): Task<void> {
  const forHost = (host: HostView) => dockerYumRepo(host.facts.osId);
  return ensureYumRepo({ ...dockerYumRepo(), baseurl: (host) => forHost(host).baseurl, gpgkey: (host) => forHost(host).gpgkey }, options);
}

export function yumRepoPath(id: string): string {
  return `/etc/yum.repos.d/${id}.repo`;
}

const KEY_MODE = '0644';

/** The repository's key, downloaded on the host and checked against its fingerprint(s), ASCII-armored as rpm imports it. */
function downloadRepoKey(probe: Parameters<typeof downloadKey>[0], p: YumRepoParams) {
  return downloadKey(probe, { url: p.gpgkey!, keyring: yumKeyPath(p), fingerprint: p.gpgkeyFingerprint }, 'armored');
}

/**
 * Ensures /etc/yum.repos.d/<id>.repo is exactly {@link renderYumRepo}'s file (mode 0644). The seed's
 * `cat <<EOF | tee` overwrites the file too. With `gpgkeyFingerprint` the key is pinned like an apt
 * key: downloaded on the host with curl on every run, refused unless it is exactly the key with that
 * fingerprint (a hard error in --check too, nothing written), and kept ASCII-armored, 0644, in
 * `gpgkeyPath` (/etc/pki/rpm-gpg/RPM-GPG-KEY-<id>), which the repository's `gpgkey=` names. Id: `yum-repo:<id>`.
 *
 * @example ensureYumRepo(kubernetesYumRepo('1.34'))
 */
export function ensureYumRepo(params: PerHostParams<YumRepoParams>, options?: TaskOptions): Task<void> {
  return defineTask<YumRepoParams>(
    {
      kind: 'yum-repo',
      id: (p) => `yum-repo:${p.id}`,
      title: (p) => `yum repository ${p.id}${p.exclude?.length ? ` (exclude ${p.exclude.join(' ')})` : ''}`,
      validate: validateYumRepo,
      probes: (p) => [{ kind: 'read', path: yumRepoPath(p.id) }],
      async check(ctx, p) {
        const drift: Drift[] = [];
        if (p.gpgkeyFingerprint !== undefined) {
          const key = await downloadRepoKey((command) => ctx.probe(command), p);
          if (key.current?.sha256 !== key.sha256) {
            drift.push({ subject: 'gpg key', current: key.current ? `other key (sha256 ${key.current.sha256.slice(0, 16)})` : 'absent', desired: `${describeKey(key)} in ${yumKeyPath(p)}` });
          } else if (key.current.mode !== KEY_MODE) {
            drift.push({ subject: 'gpg key mode', current: key.current.mode, desired: KEY_MODE });
          }
        }
        const path = yumRepoPath(p.id);
        const current = await ctx.readText(path);
        const desired = renderYumRepo(p);
        if (current !== desired) drift.push({ subject: 'content', file: path, current, desired });
        return drift;
      },
      async apply(ctx, p, drift) {
        // The key first: the repository names the file, so it must hold the checked key before dnf reads it.
        if (drift.some((d) => d.subject === 'gpg key')) {
          // Download again: apply acts on what is published now, verified again before it is written.
          const key = await downloadRepoKey((command) => ctx.run(command), p);
          const path = yumKeyPath(p);
          await ctx.run(sh`mkdir -p -m 0755 -- ${posix.dirname(path)}`);
          await ctx.writeFile(path, key.bytes, { mode: KEY_MODE, owner: 'root', group: 'root' });
          ctx.log(`installed ${describeKey(key)} as ${path}`);
        } else if (drift.some((d) => d.subject === 'gpg key mode')) {
          await ctx.run(sh`chmod ${KEY_MODE} -- ${yumKeyPath(p)}`);
        }
        if (drift.some((d) => d.subject === 'content')) {
          await ctx.run(sh`mkdir -p -m 0755 /etc/yum.repos.d`);
          await ctx.writeFile(yumRepoPath(p.id), renderYumRepo(p), { mode: '0644' });
        }
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ packages */

export interface RpmPackagesParams {
  names: readonly string[];
  /** Repositories whose `exclude=` is lifted for this install (seed 004: --disableexcludes=kubernetes). */
  disableExcludes?: string;
}

/** Installed package names from `rpm -q --qf '%{NAME}\n' …` (pure): lines that are not "package X is not installed". */
export function installedRpms(output: string): Set<string> {
  return new Set(output.split('\n').map((l) => l.trim()).filter((l) => l && !/ is not installed$/.test(l)));
}

/** The install command (pure): dnf (yum on older releases) with the excludes lifted for the named repository. */
export function rpmInstallCommand(names: readonly string[], disableExcludes?: string) {
  const args = [...names, ...(disableExcludes ? [`--disableexcludes=${disableExcludes}`] : [])];
  return sh`if command -v dnf >/dev/null 2>&1; then dnf install -y ${args}; else yum install -y ${args}; fi`;
}

/**
 * Ensures rpm packages are installed (`dnf install -y`, or yum; seed 004: `yum install -y kubelet
 * kubeadm kubectl --disableexcludes=kubernetes`). Check reads the rpm database (`rpm -q`). Id:
 * `rpm-packages:<names>`.
 *
 * @example ensureRpmPackages(['kubelet', 'kubeadm', 'kubectl'], { disableExcludes: 'kubernetes' })
 */
export function ensureRpmPackages(names: PerHost<readonly string[]>, params: Omit<RpmPackagesParams, 'names'> = {}, options?: TaskOptions): Task<void> {
  return defineTask<RpmPackagesParams>(
    {
      kind: 'rpm-packages',
      id: (p) => `rpm-packages:${[...p.names].sort().join(',')}`,
      title: (p) => `rpm packages ${p.names.join(', ')}${p.disableExcludes ? ` (--disableexcludes=${p.disableExcludes})` : ''}`,
      validate: (p) => {
        if (!Array.isArray(p.names) || p.names.length === 0 || !p.names.every((n) => /^[A-Za-z0-9_.+-]+$/.test(n))) throw new Error('names must be a non-empty list of package names');
        if (p.disableExcludes !== undefined && !REPO_ID.test(p.disableExcludes)) throw new Error(`disableExcludes must be a repository id, got ${JSON.stringify(p.disableExcludes)}`);
      },
      async check(ctx, p) {
        const result = await ctx.probe(sh`rpm -q --qf '%{NAME}\\n' ${[...p.names]}`);
        const installed = installedRpms(result.stdout);
        const missing = p.names.filter((n) => !installed.has(n));
        return missing.length ? [{ subject: 'missing', current: missing.join(', '), desired: 'installed' }] : [];
      },
      provides: (p) => p.names.map((name) => ({ package: name })),
      async apply(ctx, p) {
        await ctx.run(rpmInstallCommand(p.names, p.disableExcludes), { timeoutMs: 1_800_000 });
      },
    },
    { ...params, names } as PerHostParams<RpmPackagesParams>,
    options,
  );
}
