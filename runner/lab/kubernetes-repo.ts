/**
 * The lab's Kubernetes package repository, laid out like pkgs.k8s.io: one flat, signed apt
 * repository per minor (`<base>/core:/stable:/v1.34/deb/` with Packages, Release, InRelease,
 * Release.gpg and the armored key at Release.key), each carrying several patch versions of
 * kubeadm, kubelet and kubectl as `.deb`s named like the real ones (`kubeadm_1.34.1-1.1_amd64.deb`).
 *
 * The packages hold the Kubernetes STAND-INS (test doubles, test/lab/README.md), not the real
 * tools: each package installs its stand-in where the real package puts the tool and records its
 * own version in /usr/lib/capstan-standin/versions/<tool>, which the stand-in reports (so kubeadm
 * 1.35.0 beside kubelet 1.34.1 is a real state of a host). Their shared modules and the static-Pod
 * units are one more package, `capstan-standin-common`, that all three depend on. The kubelet
 * package is enabled and started on its first install (it crash-loops until kubeadm init/join, as
 * the real one does) and is not restarted by an upgrade: that is the operator's daemon-reload and
 * restart.
 *
 * Built with Debian's own tools in a directory of the caller's (dpkg-deb, apt-ftparchive, a fresh
 * ed25519 gpg key) and served over plain HTTP by {@link serveKubernetesRepo}.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import semver from 'semver';
import { KUBERNETES_CNI_PLUGINS, STANDIN_FILES, STANDIN_SOURCE, type InstalledFile } from './standins.js';

const exec = promisify(execFile);

/** The Kubernetes versions the lab repository carries: two patch versions of each of two minors. */
export const LAB_KUBERNETES_VERSIONS: readonly string[] = ['1.34.1', '1.34.2', '1.35.0', '1.35.1'];
/** The Debian revision pkgs.k8s.io gives its packages (`1.34.1-1.1`). */
export const PACKAGE_REVISION = '1.1';
/** The three packages of each Kubernetes version. */
export const KUBERNETES_PACKAGES = ['kubeadm', 'kubelet', 'kubectl'] as const;
/** The stand-ins' shared modules and units, one version for every Kubernetes version. */
export const COMMON_PACKAGE = 'capstan-standin-common';
/** Where each package records its version for the stand-in to report. */
export const PACKAGE_VERSIONS_DIR = '/usr/lib/capstan-standin/versions';

/** One file of a package: copied from the stand-ins' sources, or given as text. */
export interface PackageFile {
  target: string;
  mode: string;
  source?: string;
  content?: string;
}

/** What a .deb is made of (pure data; {@link controlFile} renders its control file). */
export interface PackageSpec {
  name: string;
  version: string;
  architecture: 'amd64' | 'all';
  depends: string[];
  description: string;
  files: PackageFile[];
  /** DEBIAN/postinst, when the package has one. */
  postinst?: string;
}

/** `1.35.0` → `1.35.0-1.1`, the Debian version pkgs.k8s.io gives it (pure). */
export function debianVersion(kubernetesVersion: string): string {
  return `${plainVersion(kubernetesVersion)}-${PACKAGE_REVISION}`;
}

function plainVersion(version: string): string {
  const parsed = semver.parse(version.replace(/^v/, ''));
  if (!parsed || parsed.prerelease.length > 0) throw new Error(`not a released Kubernetes version (like 1.35.0): ${JSON.stringify(version)}`);
  return parsed.version;
}

/** `1.35.1` → `v1.35` (pure). */
export function minorOf(version: string): string {
  const parsed = semver.parse(plainVersion(version))!;
  return `v${parsed.major}.${parsed.minor}`;
}

/** The repository of a minor under the base URL's path: `/core:/stable:/v1.35/deb/` (pure). */
export function repositoryPath(minor: string): string {
  if (!/^v\d+\.\d+$/.test(minor)) throw new Error(`not a Kubernetes minor (like v1.35): ${JSON.stringify(minor)}`);
  return `/core:/stable:/${minor}/deb/`;
}

/** The package file's name, as pkgs.k8s.io names them: `kubeadm_1.34.1-1.1_amd64.deb` (pure). */
export function debFileName(spec: Pick<PackageSpec, 'name' | 'version' | 'architecture'>): string {
  return `${spec.name}_${spec.version}_${spec.architecture}.deb`;
}

/** DEBIAN/control of a package (pure). */
export function controlFile(spec: PackageSpec): string {
  return [
    `Package: ${spec.name}`,
    `Version: ${spec.version}`,
    `Architecture: ${spec.architecture}`,
    'Maintainer: Capstan lab <lab@capstan.invalid>',
    ...(spec.depends.length > 0 ? [`Depends: ${spec.depends.join(', ')}`] : []),
    'Section: admin',
    'Priority: optional',
    `Description: ${spec.description}`,
    '',
  ].join('\n');
}

/** Which package a stand-in file belongs to. */
function packageOf(file: InstalledFile): string {
  if (file.target === '/usr/bin/kubeadm') return 'kubeadm';
  if (file.target === '/usr/bin/kubectl') return 'kubectl';
  if (file.target === '/usr/bin/kubelet' || file.target.startsWith('/usr/lib/systemd/system/kubelet.service')) return 'kubelet';
  return COMMON_PACKAGE;
}

/** The common package's version: its sources' digest, so changed stand-ins are a newer package. */
export function commonPackageVersion(): string {
  const hash = createHash('sha256');
  for (const file of STANDIN_FILES.filter((f) => packageOf(f) === COMMON_PACKAGE)) hash.update(file.source).update(readFileSync(join(STANDIN_SOURCE, file.source)));
  return `1.0+${hash.digest('hex').slice(0, 12)}`;
}

/**
 * kubelet's maintainer script: enabled and started on the first install only (the kubelet
 * crash-loops until kubeadm writes its configuration); an upgrade leaves the running kubelet alone.
 */
const KUBELET_POSTINST = `#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "$2" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable kubelet.service >/dev/null 2>&1
  systemctl start kubelet.service || true
fi
`;

/** The common package's maintainer script: the static-Pod stand-ins' entry points and units. */
const COMMON_POSTINST = `#!/bin/sh
set -e
ln -sf standin_servers.py /usr/lib/capstan-standin/etcd-standin
ln -sf standin_servers.py /usr/lib/capstan-standin/kube-apiserver-standin
mkdir -p /etc/kubernetes/manifests /var/lib/kubelet /etc/cni/net.d
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
`;

/** The packages of one Kubernetes version: kubeadm, kubelet, kubectl (pure but for reading nothing). */
export function kubernetesPackageSpecs(kubernetesVersion: string): PackageSpec[] {
  const version = debianVersion(kubernetesVersion);
  const tag = `v${plainVersion(kubernetesVersion)}`;
  const common = `${COMMON_PACKAGE}`;
  const filesOf = (name: string): PackageFile[] => [
    ...STANDIN_FILES.filter((file) => packageOf(file) === name).map((file) => ({ target: file.target, mode: file.mode, source: file.source })),
    { target: `${PACKAGE_VERSIONS_DIR}/${name}`, mode: '644', content: `${tag}\n` },
  ];
  return [
    { name: 'kubeadm', version, architecture: 'amd64', depends: [common], description: 'Capstan lab STAND-IN for kubeadm (a test double, not Kubernetes)', files: filesOf('kubeadm') },
    {
      name: 'kubelet',
      version,
      architecture: 'amd64',
      // The real package's dependencies; kubernetes-cni brings the plugins a node needs to be Ready.
      depends: [common, 'iptables (>= 1.4.21)', `${KUBERNETES_CNI_PACKAGE} (>= 1.2.0)`, 'iproute2', 'socat', 'util-linux', 'mount', 'ebtables', 'ethtool', 'conntrack'],
      description: 'Capstan lab STAND-IN for the kubelet (a test double, not Kubernetes)',
      files: filesOf('kubelet'),
      postinst: KUBELET_POSTINST,
    },
    { name: 'kubectl', version, architecture: 'amd64', depends: [common], description: 'Capstan lab STAND-IN for kubectl (a test double, not Kubernetes)', files: filesOf('kubectl') },
  ];
}

/** The CNI plugins package the kubelet depends on, as pkgs.k8s.io ships it beside each minor. */
export const KUBERNETES_CNI_PACKAGE = 'kubernetes-cni';
/** Its version in the v1.34 and v1.35 repositories (the plugins' release 1.7.1). */
const KUBERNETES_CNI_VERSION = '1.7.1-1.1';

/** kubernetes-cni: the standard plugins in /opt/cni/bin, each a copy of the stand-in plugin (pure but for reading nothing). */
export function kubernetesCniPackageSpec(): PackageSpec {
  return {
    name: KUBERNETES_CNI_PACKAGE,
    version: KUBERNETES_CNI_VERSION,
    architecture: 'amd64',
    depends: [],
    description: 'Capstan lab STAND-IN for the CNI plugins (test doubles, not the containernetworking plugins)',
    files: KUBERNETES_CNI_PLUGINS.map((plugin) => ({ target: `/opt/cni/bin/${plugin}`, mode: '755', source: 'cni-plugin.sh' })),
  };
}

/** The common package (shared modules, static-Pod units). */
export function commonPackageSpec(): PackageSpec {
  return {
    name: COMMON_PACKAGE,
    version: commonPackageVersion(),
    architecture: 'all',
    depends: ['python3', 'python3-yaml', 'python3-cryptography'],
    description: 'Capstan lab Kubernetes stand-ins: shared modules (test doubles, not Kubernetes)',
    files: STANDIN_FILES.filter((file) => packageOf(file) === COMMON_PACKAGE).map((file) => ({ target: file.target, mode: file.mode, source: file.source })),
    postinst: COMMON_POSTINST,
  };
}

async function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { ...options, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

async function buildDeb(spec: PackageSpec, stage: string, out: string): Promise<void> {
  const root = join(stage, `${spec.name}_${spec.version}`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  writeFileSync(join(root, 'DEBIAN/control'), controlFile(spec));
  if (spec.postinst) writeFileSync(join(root, 'DEBIAN/postinst'), spec.postinst, { mode: 0o755 });
  for (const file of spec.files) {
    const path = join(root, file.target);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, file.content ?? readFileSync(join(STANDIN_SOURCE, file.source!)), { mode: Number.parseInt(file.mode, 8) });
  }
  await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, out]);
}

/** A built repository: where it is and the key that signs it. */
export interface KubernetesRepo {
  /** The directory served as the base URL (it holds `core:/stable:/v1.34/deb/`, …). */
  dir: string;
  /** The signing key's fingerprint (40 hex digits). */
  fingerprint: string;
  /** The minors it carries, `v1.34`, `v1.35`. */
  minors: string[];
}

/**
 * Builds the repository under `dir` (made; its `gnupg` and `stage` subdirectories are scratch):
 * every version of `versions` (default {@link LAB_KUBERNETES_VERSIONS}) in the repository of its
 * minor, the common package in each, indexes signed with a fresh key.
 */
export async function buildKubernetesRepo(dir: string, versions: readonly string[] = LAB_KUBERNETES_VERSIONS): Promise<KubernetesRepo> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const gnupg = join(dir, 'gnupg');
  rmSync(gnupg, { recursive: true, force: true });
  mkdirSync(gnupg, { mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: gnupg };
  const gpg = (...args: string[]) => run('gpg', ['--batch', '--quiet', ...args], { env });
  await gpg('--passphrase', '', '--quick-gen-key', 'Capstan lab Kubernetes packages <lab@capstan.invalid>', 'ed25519', 'sign', 'never');
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(await gpg('--with-colons', '--list-keys'))?.[1];
  if (!fingerprint) throw new Error('gpg made no key for the lab repository');
  const armoredKey = await gpg('--armor', '--export', fingerprint);
  const stage = join(dir, 'stage');
  mkdirSync(stage, { recursive: true });
  const common = commonPackageSpec();
  const byMinor = new Map<string, string[]>();
  for (const version of versions) byMinor.set(minorOf(version), [...(byMinor.get(minorOf(version)) ?? []), version]);
  for (const [minor, minorVersions] of byMinor) {
    const repo = join(dir, repositoryPath(minor));
    rmSync(repo, { recursive: true, force: true });
    for (const spec of [common, kubernetesCniPackageSpec(), ...minorVersions.flatMap((version) => kubernetesPackageSpecs(version))]) {
      mkdirSync(join(repo, spec.architecture), { recursive: true });
      await buildDeb(spec, stage, join(repo, spec.architecture, debFileName(spec)));
    }
    // Filename: amd64/kubeadm_….deb, relative to the repository as on pkgs.k8s.io.
    let packages = '';
    for (const architecture of ['all', 'amd64']) packages += await run('apt-ftparchive', ['packages', architecture], { cwd: repo });
    writeFileSync(join(repo, 'Packages'), packages);
    writeFileSync(join(repo, 'Packages.gz'), gzipSync(packages));
    const release = await run('apt-ftparchive', [
      '-o', 'APT::FTPArchive::Release::Origin=Capstan lab',
      '-o', `APT::FTPArchive::Release::Label=core:stable:${minor}`,
      '-o', 'APT::FTPArchive::Release::Architectures=amd64',
      'release', '.',
    ], { cwd: repo });
    writeFileSync(join(repo, 'Release'), release);
    await gpg('--local-user', fingerprint, '--clearsign', '--output', join(repo, 'InRelease'), join(repo, 'Release'));
    await gpg('--local-user', fingerprint, '--armor', '--detach-sign', '--output', join(repo, 'Release.gpg'), join(repo, 'Release'));
    writeFileSync(join(repo, 'Release.key'), armoredKey);
  }
  rmSync(stage, { recursive: true, force: true });
  return { dir, fingerprint, minors: [...byMinor.keys()] };
}

/** A repository served over HTTP. */
export interface ServedRepo {
  /** `http://<address>:<port>`, no trailing slash: the base URL (pkgs.k8s.io's `https://pkgs.k8s.io`). */
  url: string;
  /** Every request's path and client address (to prove which host fetched what). */
  requests: { path: string; from: string }[];
  close(): Promise<void>;
}

/** Serves `dir` (read-only, GET and HEAD, nothing outside it) on `address` and `port` (default: an ephemeral one). */
export async function serveKubernetesRepo(dir: string, address: string, port = 0): Promise<ServedRepo> {
  const root = normalize(dir);
  const requests: ServedRepo['requests'] = [];
  const server = createServer((request, response) => {
    let path: string;
    try {
      path = decodeURIComponent((request.url ?? '/').split('?')[0]!);
    } catch {
      response.writeHead(400).end();
      return;
    }
    requests.push({ path, from: request.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '' });
    const file = normalize(join(root, path));
    let size = -1;
    try {
      const stat = statSync(file);
      if (stat.isFile() && file.startsWith(root + sep) && !file.startsWith(join(root, 'gnupg') + sep)) size = stat.size;
    } catch {
      // not found
    }
    if (size < 0 || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    response.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    if (request.method === 'HEAD') response.end();
    else createReadStream(file).pipe(response);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    url: `http://${address}:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The port `capstan run --lab` serves the repository on: fixed, so the hosts' apt sources stay the same from run to run. */
export const LAB_KUBERNETES_REPO_PORT = 8380;

/**
 * The lab's repository in `dir`, built once and kept (its key with it: a new key on every run would
 * change every host's keyring); built again only when the stand-ins' sources or the versions changed.
 */
export async function labKubernetesRepo(dir: string): Promise<KubernetesRepo> {
  const stampPath = join(dir, 'capstan-repo.json');
  const wanted = { common: commonPackageVersion(), versions: LAB_KUBERNETES_VERSIONS };
  try {
    const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as { common?: string; versions?: string[]; repo?: KubernetesRepo };
    if (stamp.repo && stamp.common === wanted.common && JSON.stringify(stamp.versions) === JSON.stringify(wanted.versions)) return stamp.repo;
  } catch {
    // not built yet
  }
  const repo = await buildKubernetesRepo(dir);
  writeFileSync(stampPath, `${JSON.stringify({ ...wanted, repo })}\n`, { mode: 0o600 });
  return repo;
}
