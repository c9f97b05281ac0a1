/**
 * The VM lab's disk image: Debian bookworm with Debian's kernel (linux-image-amd64), built once
 * with mmdebstrap into a raw ext4 image plus the kernel and initramfs taken out of it for QEMU's
 * direct kernel boot. Cached under <lab cache>/vm-image/<recipe hash>/ like the container rootfs:
 * built into `<hash>.partial` and renamed when complete, older recipes deleted after a build.
 *
 * Everything a kernel-level test needs is installed at build time (apt in a TCG VM is slow):
 * dphys-swapfile (disabled), kmod, procps, e2fsprogs. Nothing per VM is in the image: each VM's
 * identity (ssh host keys, hostname, apt proxy) comes from its seed disk (see SEED_SCRIPT) and its
 * address from the kernel command line (`ip=`, read by systemd-network-generator).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { quote } from '../quote.js';
import { removeTree } from './mounts.js';
import { run } from './proc.js';
import { LAB_USER, LAB_USER_PASSWORD } from './rootfs.js';

const SUITE = 'bookworm';

/** The guest's root filesystem label (the kernel command line and fstab name it). */
export const ROOT_LABEL = 'capstan-root';
/** The virtio serial number of the seed disk, which the guest finds it by. */
export const SEED_SERIAL = 'capstan-seed';
/** Virtual size of the root filesystem (sparse: the image holds ~1 GB of data). */
const IMAGE_SIZE = '8G';
/** /etc/hosts of the image (minbase has none); each VM's seed adds its own 127.0.1.1 line. */
export const BASE_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n';

const PACKAGES = [
  // boot: Debian's kernel and initramfs, systemd as init, udev for devices
  'linux-image-amd64', 'initramfs-tools', 'systemd', 'systemd-sysv', 'udev', 'dbus',
  // what every lab host has (as the container rootfs)
  'openssh-server', 'sudo', 'python3', 'iproute2', 'procps', 'kmod', 'ca-certificates', 'gnupg', 'curl',
  'netbase', 'iputils-ping', 'less',
  // kernel-level tests: swap files (mkswap/swapon are in util-linux), Raspberry Pi OS's swap service
  'e2fsprogs', 'util-linux', 'dphys-swapfile',
];

/** The default Debian sources, for a machine whose own do not name the lab's suite. */
const DEFAULT_SOURCES = `Types: deb
URIs: http://deb.debian.org/debian
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

/**
 * Runs at every boot before sshd, until it has seeded once: finds the seed disk (a virtio disk
 * whose serial is SEED_SERIAL; its content is a plain tar archive, no filesystem) and unpacks it
 * over /, giving the VM its ssh host keys, hostname, /etc/hosts and apt proxy. Without a seed
 * disk (the image booted by hand) it makes host keys itself, so sshd always has keys.
 */
const SEED_SCRIPT = `#!/bin/sh
set -eu
done_flag=/var/lib/capstan-lab/seeded
[ -e "$done_flag" ] && exit 0
seed=
for dev in /sys/block/vd*; do
  [ "$(cat "$dev/serial" 2>/dev/null)" = ${SEED_SERIAL} ] && seed=/dev/\${dev##*/}
done
if [ -n "$seed" ]; then
  tar -x -f "$seed" -C / --no-overwrite-dir
  echo "capstan-lab-seed: unpacked $seed"
else
  echo "capstan-lab-seed: no seed disk, making host keys"
fi
ssh-keygen -A
mkdir -p /var/lib/capstan-lab
: > "$done_flag"
`;

const SEED_UNIT = `[Unit]
Description=Capstan lab: this VM's identity from its seed disk (first boot)
DefaultDependencies=no
After=local-fs.target
Before=ssh.service sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/capstan-lab-seed

[Install]
WantedBy=sysinit.target
`;

/** Everything the image is made from; its hash names the cached image. */
interface ImageRecipe {
  suite: string;
  packages: string[];
  sources: { file: string; text: string };
  hook: string;
  size: string;
}

/** The cached image: a raw ext4 root filesystem and the kernel and initramfs to boot it with. */
export interface VmImage {
  dir: string;
  hash: string;
  /** Raw ext4 filesystem image (no partition table), the backing file of every VM's overlay. */
  base: string;
  kernel: string;
  initrd: string;
  /** The kernel's release (`uname -r` in the guest). */
  kernelRelease: string;
}

/** The machine's own Debian sources when they name the lab's suite (the mirror it can reach), else Debian's. */
function aptSources(): ImageRecipe['sources'] {
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

/** The mmdebstrap customize hook (sh, `$1` = the root): logins, sshd, apt, boot and network setup. */
function customizeHook(publicKey: string, sources: ImageRecipe['sources']): string {
  const sshdConfig = 'PermitRootLogin prohibit-password\nUseDNS no\nMaxSessions 10\n';
  const fstab = `LABEL=${ROOT_LABEL}\t/\text4\tdefaults,discard\t0\t1\n`;
  return `set -eu
r="$1"
# root logs in with the lab key only
install -d -m 700 "$r/root/.ssh"
printf '%s\\n' ${quote(publicKey)} > "$r/root/.ssh/authorized_keys"
chmod 600 "$r/root/.ssh/authorized_keys"
printf '%s' ${quote(sshdConfig)} > "$r/etc/ssh/sshd_config.d/capstan-lab.conf"
# host keys come per VM from its seed disk, never shared through the image
rm -f "$r"/etc/ssh/ssh_host_*
# a sudo user whose sudo asks for the password, as in the container lab
chroot "$r" useradd --create-home --shell /bin/bash --groups sudo ${LAB_USER}
printf '%s\\n' ${quote(`${LAB_USER}:${LAB_USER_PASSWORD}`)} | chroot "$r" chpasswd
chroot "$r" install -d -m 700 -o ${LAB_USER} -g ${LAB_USER} /home/${LAB_USER}/.ssh
chroot "$r" install -m 600 -o ${LAB_USER} -g ${LAB_USER} /root/.ssh/authorized_keys /home/${LAB_USER}/.ssh/authorized_keys
# the machine's Debian sources; the seed points apt at apt-cacher-ng on the VM's lab bridge
rm -f "$r/etc/apt/sources.list" "$r"/etc/apt/sources.list.d/*
printf '%s' ${quote(sources.text)} > "$r/etc/apt/${sources.file}"
printf '%s' ${quote(BASE_HOSTS)} > "$r/etc/hosts"
printf '%s' ${quote(fstab)} > "$r/etc/fstab"
# apt's daily timers would take the dpkg lock in the middle of a test
ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
# e2scrub's boot-time reaper costs a minute of TCG boot and checks LVM snapshots the lab has none of
ln -sf /dev/null "$r/etc/systemd/system/e2scrub_reap.service"
ln -sf /dev/null "$r/etc/systemd/system/e2scrub_all.timer"
# each VM makes its own machine-id at first boot
: > "$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
# per-VM identity from the seed disk, before sshd
printf '%s' ${quote(SEED_SCRIPT)} > "$r/usr/local/sbin/capstan-lab-seed"
chmod 755 "$r/usr/local/sbin/capstan-lab-seed"
printf '%s' ${quote(SEED_UNIT)} > "$r/etc/systemd/system/capstan-lab-seed.service"
# the address comes from the kernel command line (ip=…), turned into a .network file by systemd-network-generator
chroot "$r" systemctl enable capstan-lab-seed.service systemd-networkd.service systemd-network-generator.service
# installed for tests, but no swap unless a test asks for it
chroot "$r" systemctl disable dphys-swapfile.service
`;
}

function imageRecipe(publicKey: string): ImageRecipe {
  const sources = aptSources();
  return { suite: SUITE, packages: PACKAGES, sources, hook: customizeHook(publicKey, sources), size: IMAGE_SIZE };
}

function recipeHash(recipe: ImageRecipe): string {
  return createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
}

function imageAt(dir: string, hash: string): VmImage {
  const info = JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as { kernelRelease: string };
  return { dir, hash, base: join(dir, 'base.img'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), kernelRelease: info.kernelRelease };
}

/** The one kernel release installed under <root>/boot (linux-image-amd64 pulls exactly one). */
function kernelRelease(root: string): string {
  const releases = readdirSync(join(root, 'boot'))
    .filter((entry) => entry.startsWith('vmlinuz-'))
    .map((entry) => entry.slice('vmlinuz-'.length));
  if (releases.length !== 1) throw new Error(`expected one kernel in ${root}/boot, found: ${releases.join(', ') || 'none'}`);
  return releases[0]!;
}

/**
 * Returns the cached VM image for the recipe (lab key, packages, the machine's Debian sources),
 * building it first when the recipe changed: mmdebstrap into a directory, the kernel and initramfs
 * copied out, `mke2fs -d` turns the directory into the raw ext4 image, the directory is deleted.
 */
export async function ensureVmImage(parent: string, publicKey: string, log: (line: string) => void): Promise<VmImage> {
  const recipe = imageRecipe(publicKey);
  const hash = recipeHash(recipe);
  const target = join(parent, hash);
  if (existsSync(join(target, 'image.json'))) return imageAt(target, hash);
  mkdirSync(parent, { recursive: true });
  const partial = `${target}.partial`;
  await removeTree(partial);
  mkdirSync(partial, { recursive: true });
  const root = join(partial, 'root');
  log(`building the VM image ${hash} (mmdebstrap ${recipe.suite} + Debian kernel, ${recipe.packages.length} packages)`);
  const started = Date.now();
  await run('mmdebstrap', mmdebstrapArgs(recipe, root), { input: recipe.sources.text });
  const release = kernelRelease(root);
  copyFileSync(join(root, 'boot', `vmlinuz-${release}`), join(partial, 'vmlinuz'));
  copyFileSync(join(root, 'boot', `initrd.img-${release}`), join(partial, 'initrd.img'));
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', ROOT_LABEL, '-E', 'root_owner=0:0', '-d', root, join(partial, 'base.img'), recipe.size]);
  await removeTree(root);
  writeFileSync(join(partial, 'image.json'), `${JSON.stringify({ hash, kernelRelease: release, built: new Date().toISOString(), recipe }, null, 2)}\n`);
  await removeTree(target);
  renameSync(partial, target);
  log(`VM image built in ${((Date.now() - started) / 1000).toFixed(1)} s (kernel ${release})`);
  for (const entry of readdirSync(parent)) {
    if (entry !== hash) await removeTree(join(parent, entry));
  }
  return imageAt(target, hash);
}

function mmdebstrapArgs(recipe: ImageRecipe, target: string): string[] {
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
