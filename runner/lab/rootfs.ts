import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { quote } from '../quote.js';
import { removeTree } from './mounts.js';
import { run } from './proc.js';

const SUITE = 'bookworm';

/** What every lab host has: systemd as PID 1, sshd, sudo, python3 (the Ansible benchmark), apt tooling. */
const PACKAGES = [
  'openssh-server', 'sudo', 'systemd', 'systemd-sysv', 'dbus', 'python3', 'iproute2', 'procps', 'kmod',
  'ca-certificates', 'gnupg', 'curl', 'netbase', 'iputils-ping', 'less',
];

/** The non-root login that tests use for `become` with a password. */
export const LAB_USER = 'capstan';
export const LAB_USER_PASSWORD = 'capstan-lab';

/** The default Debian sources, for a machine whose own do not name the lab's suite. */
const DEFAULT_SOURCES = `Types: deb
URIs: http://deb.debian.org/debian
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

/** Everything the rootfs is made from; its hash names the cached rootfs. */
interface RootfsRecipe {
  suite: string;
  packages: string[];
  /** apt sources text, and its path under /etc/apt in the rootfs. */
  sources: { file: string; text: string };
  /** The mmdebstrap customize hook (sh, `$1` = the rootfs). */
  hook: string;
}

/**
 * The machine's own Debian sources (so hosts use the same mirror the machine can reach), when
 * they name the lab's suite; Debian's defaults otherwise.
 */
function aptSources(): RootfsRecipe['sources'] {
  const candidates = [
    { path: '/etc/apt/sources.list.d/debian.sources', file: 'sources.list.d/debian.sources' },
    { path: '/etc/apt/sources.list', file: 'sources.list' },
  ];
  for (const { path, file } of candidates) {
    const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
    if (text.includes(SUITE)) return { file, text };
  }
  return { file: 'sources.list.d/debian.sources', text: DEFAULT_SOURCES };
}

/**
 * Paths for modules.builtin, only for modules verified to be built into this kernel: a module
 * built in has no `initstate` in /sys/module (loaded ones do). br_netfilter has no parameters, so
 * it has no /sys/module entry at all; its sysctls under /proc/sys/net/bridge prove it is there.
 * Hosts have no loadable modules, so this list is what makes `modprobe` answer truthfully.
 */
function builtinModules(): string[] {
  const builtIn = (name: string, evidence: string) =>
    existsSync(evidence) && !existsSync(`/sys/module/${name}/initstate`);
  const modules: string[] = [];
  if (builtIn('overlay', '/sys/module/overlay')) modules.push('kernel/fs/overlayfs/overlay.ko');
  if (builtIn('br_netfilter', '/proc/sys/net/bridge')) modules.push('kernel/net/bridge/br_netfilter.ko');
  return modules;
}

/** The customize hook: login keys and users, sshd and apt settings, /etc/hosts, modules. */
function customizeHook(publicKey: string, sources: RootfsRecipe['sources'], kernel: string, modules: string[]): string {
  const sshdConfig = 'PermitRootLogin prohibit-password\nUseDNS no\nMaxSessions 10\n';
  const hosts = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n';
  const builtin = modules.map((path) => `${path}\n`).join('');
  return `set -eu
r="$1"
# root logs in with the lab key only
install -d -m 700 "$r/root/.ssh"
printf '%s\\n' ${quote(publicKey)} > "$r/root/.ssh/authorized_keys"
chmod 600 "$r/root/.ssh/authorized_keys"
printf '%s' ${quote(sshdConfig)} > "$r/etc/ssh/sshd_config.d/capstan-lab.conf"
# host keys are made per host in its overlay, never shared through the rootfs
rm -f "$r"/etc/ssh/ssh_host_*
# a sudo user whose sudo asks for the password, for become-with-password tests
chroot "$r" useradd --create-home --shell /bin/bash --groups sudo ${LAB_USER}
printf '%s\\n' ${quote(`${LAB_USER}:${LAB_USER_PASSWORD}`)} | chroot "$r" chpasswd
chroot "$r" install -d -m 700 -o ${LAB_USER} -g ${LAB_USER} /home/${LAB_USER}/.ssh
chroot "$r" install -m 600 -o ${LAB_USER} -g ${LAB_USER} /root/.ssh/authorized_keys /home/${LAB_USER}/.ssh/authorized_keys
# the machine's Debian sources; each host's overlay points apt at apt-cacher-ng on its bridge (no NAT to the outside)
rm -f "$r/etc/apt/sources.list" "$r"/etc/apt/sources.list.d/*
printf '%s' ${quote(sources.text)} > "$r/etc/apt/${sources.file}"
# minbase has no /etc/hosts; each host adds its own 127.0.1.1 line at start
printf '%s' ${quote(hosts)} > "$r/etc/hosts"
# apt's daily timers would take the dpkg lock in the middle of a test
ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
# each host gets its own machine-id at start
: > "$r/etc/machine-id"
# no loadable modules in hosts: declare the built-in ones so modprobe answers as on a real host
install -d "$r/lib/modules/${kernel}"
printf '%s' ${quote(builtin)} > "$r/lib/modules/${kernel}/modules.builtin"
chroot "$r" depmod -a ${quote(kernel)}
`;
}

/** The recipe for this machine and lab key. */
function rootfsRecipe(publicKey: string): RootfsRecipe {
  const sources = aptSources();
  return { suite: SUITE, packages: PACKAGES, sources, hook: customizeHook(publicKey, sources, release(), builtinModules()) };
}

function recipeHash(recipe: RootfsRecipe): string {
  return createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
}

/**
 * Returns the cached rootfs for the recipe, building it first when the recipe changed. It is
 * built into `<hash>.partial` and renamed when complete, so an interrupted build is never
 * reused; rootfs trees of older recipes are deleted after a successful build.
 */
export async function ensureRootfs(parent: string, publicKey: string, log: (line: string) => void): Promise<string> {
  const recipe = rootfsRecipe(publicKey);
  const hash = recipeHash(recipe);
  const target = join(parent, hash);
  if (existsSync(target)) return target;
  mkdirSync(parent, { recursive: true });
  const partial = `${target}.partial`;
  await removeTree(partial);
  log(`building the host rootfs ${hash} (mmdebstrap ${recipe.suite}, ${recipe.packages.length} packages)`);
  const started = Date.now();
  await run('mmdebstrap', mmdebstrapArgs(recipe, partial), { input: recipe.sources.text });
  renameSync(partial, target);
  log(`rootfs built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await removeOtherRootfs(parent, hash);
  return target;
}

function mmdebstrapArgs(recipe: RootfsRecipe, target: string): string[] {
  return [
    '--quiet',
    '--mode=root',
    '--variant=minbase',
    `--include=${recipe.packages.join(',')}`,
    `--customize-hook=${recipe.hook}`,
    recipe.suite,
    target,
    '-', // the sources come on stdin
  ];
}

async function removeOtherRootfs(parent: string, keep: string): Promise<void> {
  for (const entry of readdirSync(parent)) {
    if (entry !== keep) await removeTree(join(parent, entry));
  }
}
