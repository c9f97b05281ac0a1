import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DOCKER_KEY_FINGERPRINT, KUBERNETES_KEY_FINGERPRINT } from '../../tasks/apt.js';
import {
  DOCKER_RPM_KEY_FINGERPRINT,
  dockerYumRepo,
  isRhelFamilyOs,
  rpmContainerRuntimePackages,
  ensureRpmPackages,
  ensureSelinuxPermissive,
  ensureYumRepo,
  installedRpms,
  KUBERNETES_RPM_KEY_FINGERPRINT,
  kubernetesYumRepo,
  parseGetenforce,
  renderYumRepo,
  rpmInstallCommand,
  selinuxPermissiveConfig,
} from '../../tasks/rhel.js';
import { describeDrift } from '../../runner/drift.js';
import { localHost, run } from '../helpers/local.js';
import { useLocalAptRepo } from '../helpers/apt-repo.js';

// CentOS Stream 9's /etc/selinux/config as installed (the file seed 004's sed edits).
const CENTOS9_SELINUX = `
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#     enforcing - SELinux security policy is enforced.
#     permissive - SELinux prints warnings instead of enforcing.
#     disabled - No SELinux policy is loaded.
# See also:
# https://docs.fedoraproject.org/en-US/quick-docs/getting-started-with-selinux/#getting-started-with-selinux-selinux-states-and-modes
#
# NOTE: In earlier Fedora kernel builds, SELINUX=disabled would also
# fully disable SELinux during boot. If you need a system with SELinux
# fully disabled instead of SELinux running with no policy loaded, you
# need to pass selinux=0 to the kernel command line. You can use grubby
# to persistently set the bootloader to boot with selinux=0:
#
#    grubby --update-kernel ALL --args selinux=0
#
# To revert back to SELinux enabled:
#
#    grubby --update-kernel ALL --remove-args selinux
#
SELINUX=enforcing
# SELINUXTYPE= can take one of these three values:
#     targeted - Targeted processes are protected,
#     minimum - Modification of targeted policy. Only selected processes are protected.
#     mls - Multi Level Security protection.
SELINUXTYPE=targeted

`;

describe('RHEL family (seed 004, CentOS 9): SELinux and yum — rendering only, no RHEL test host', () => {
  it('makes SELinux permissive at boot as the seed\'s sed does: only the SELINUX=enforcing line changes', () => {
    expect(selinuxPermissiveConfig(CENTOS9_SELINUX)).to.equal(CENTOS9_SELINUX.replace('\nSELINUX=enforcing\n', '\nSELINUX=permissive\n'));
    // Already permissive, or disabled (enforces nothing either): unchanged, byte for byte.
    expect(selinuxPermissiveConfig('SELINUX=permissive\nSELINUXTYPE=targeted\n')).to.equal('SELINUX=permissive\nSELINUXTYPE=targeted\n');
    expect(selinuxPermissiveConfig('SELINUX=disabled\n')).to.equal('SELINUX=disabled\n');
    // A file without the setting gets it; SELINUXTYPE is not mistaken for it.
    expect(selinuxPermissiveConfig('SELINUXTYPE=targeted')).to.equal('SELINUXTYPE=targeted\nSELINUX=permissive\n');
    expect(selinuxPermissiveConfig('')).to.equal('SELINUX=permissive\n');
  });

  it('reads getenforce', () => {
    expect(parseGetenforce('Enforcing\n', 0)).to.equal('Enforcing');
    expect(parseGetenforce('Permissive\n', 0)).to.equal('Permissive');
    expect(parseGetenforce('Disabled\n', 0)).to.equal('Disabled');
    expect(parseGetenforce('', 127)).to.equal(null);
  });

  it('renders the seed\'s kubernetes.repo exactly (v1.32 there), with exclude=, the key pinned and named by its checked copy', () => {
    expect(renderYumRepo(kubernetesYumRepo('1.32'))).to.equal(`[kubernetes]
name=Kubernetes
baseurl=https://pkgs.k8s.io/core:/stable:/v1.32/rpm/
enabled=1
gpgcheck=1
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-kubernetes
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
`);
    // Fetched from the seed's URL, pinned to the pkgs.k8s.io OBS key (the same key signs its deb repositories).
    expect(kubernetesYumRepo('1.32')).to.include({ gpgkey: 'https://pkgs.k8s.io/core:/stable:/v1.32/rpm/repodata/repomd.xml.key', gpgkeyFingerprint: KUBERNETES_KEY_FINGERPRINT });
    expect(KUBERNETES_RPM_KEY_FINGERPRINT).to.equal('DE15B14486CD377B9E876E1A234654DA9A296436');
    // Without a pin the .repo names the URL, as the seed writes it.
    const { gpgkeyFingerprint: _pin, ...unpinned } = kubernetesYumRepo('1.32');
    expect(renderYumRepo(unpinned)).to.include('\ngpgkey=https://pkgs.k8s.io/core:/stable:/v1.32/rpm/repodata/repomd.xml.key\n');
    expect(renderYumRepo(kubernetesYumRepo('v1.34.2'))).to.include('baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/\n');
  });

  it('renders Docker\'s CentOS repository (for containerd.io) exactly, its rpm key pinned (not the deb key)', () => {
    expect(renderYumRepo(dockerYumRepo())).to.equal(`[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker-ce-stable
`);
    expect(dockerYumRepo()).to.include({ gpgkey: 'https://download.docker.com/linux/centos/gpg', gpgkeyFingerprint: '060A61C51B558A7F742B77AAC52FEB6B621E9F35' });
    expect(DOCKER_RPM_KEY_FINGERPRINT).not.to.equal(DOCKER_KEY_FINGERPRINT);
    expect(['fedora', 'rhel', 'rocky'].map((id) => dockerYumRepo(id).gpgkeyFingerprint)).to.deep.equal(Array(3).fill(DOCKER_RPM_KEY_FINGERPRINT));
  });

  it('picks Docker\'s rpm tree per distribution: Fedora and RHEL their own, CentOS\'s for its rebuilds', () => {
    expect(renderYumRepo(dockerYumRepo('fedora'))).to.equal(`[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/fedora/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker-ce-stable
`);
    expect(dockerYumRepo('fedora').gpgkey).to.equal('https://download.docker.com/linux/fedora/gpg');
    expect(dockerYumRepo('rhel').baseurl).to.equal('https://download.docker.com/linux/rhel/$releasever/$basearch/stable');
    expect(['centos', 'rocky', 'almalinux', 'ol'].map((id) => dockerYumRepo(id).gpgkey)).to.deep.equal(Array(4).fill('https://download.docker.com/linux/centos/gpg'));
    expect(() => dockerYumRepo('debian')).to.throw(/"debian" is not a RHEL-family distribution/);
    expect(isRhelFamilyOs('fedora')).to.equal(true);
    expect(isRhelFamilyOs('raspbian')).to.equal(false);
  });

  it('chooses the runtime rpms from containerd_source and docker_engine, or refuses naming the host', () => {
    expect(rpmContainerRuntimePackages('cp1', 'centos', 'docker', false)).to.deep.equal(['containerd.io']);
    expect(rpmContainerRuntimePackages('cp1', 'rocky', 'docker', true)).to.deep.equal(['containerd.io', 'docker-ce', 'docker-ce-cli']);
    expect(rpmContainerRuntimePackages('cp1', 'fedora', 'distro', false)).to.deep.equal(['containerd']);
    expect(rpmContainerRuntimePackages('cp1', 'fedora', 'distro', true)).to.deep.equal(['containerd', 'moby-engine']);
    expect(() => rpmContainerRuntimePackages('cp1', 'centos', 'distro', false)).to.throw(
      "host cp1: containerd_source: distro is not supported on centos, which ships no containerd package; use containerd_source: docker (containerd.io from Docker's repository)",
    );
  });

  it('refuses repository parameters yum would misread', () => {
    expect(() => renderYumRepo({ id: 'bad id', name: 'x', baseurl: 'https://x/' })).to.throw(/id must be letters/);
    expect(() => renderYumRepo({ id: 'x', name: 'two\nlines', baseurl: 'https://x/' })).to.throw(/name must be one line/);
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'ftp://x/' })).to.throw(/baseurl must be a URL/);
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'https://x/', exclude: ['kube let'] })).to.throw(/exclude must be a list of package names/);
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'https://x/', gpgkeyFingerprint: DOCKER_RPM_KEY_FINGERPRINT })).to.throw('gpgkeyFingerprint needs gpgkey (where the key is published)');
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'https://x/', gpgkey: 'https://x/key', gpgkeyFingerprint: '621E9F35' })).to.throw(/full key fingerprint/);
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'https://x/', gpgkey: 'https://x/key', gpgkeyPath: '/etc/pki/rpm-gpg/x' })).to.throw(/give gpgkeyFingerprint with it/);
    expect(() => renderYumRepo({ id: 'x', name: 'x', baseurl: 'https://x/', gpgkey: 'https://x/key', gpgkeyFingerprint: DOCKER_RPM_KEY_FINGERPRINT, gpgkeyPath: 'keys/x' })).to.throw(/gpgkeyPath must be an absolute path/);
  });

  it('refuses a plain http gpgkey without a fingerprint: dnf would import whatever key answers (issue 19)', () => {
    const http = { id: 'mirror', name: 'Mirror', baseurl: 'http://mirror.lan/el9/', gpgkey: 'http://mirror.lan/RPM-GPG-KEY' };
    expect(() => renderYumRepo(http)).to.throw(
      'the key http://mirror.lan/RPM-GPG-KEY is fetched over plain http: give gpgkeyFingerprint (its full fingerprint, as the vendor publishes it), or an https:// URL',
    );
    expect(() => ensureYumRepo(http)).to.throw(/fetched over plain http: give gpgkeyFingerprint/);
    // Pinned, it is fetched over http all the same, checked, and the .repo names the checked copy.
    expect(renderYumRepo({ ...http, gpgkeyFingerprint: DOCKER_RPM_KEY_FINGERPRINT })).to.include('\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-mirror\n');
  });

  it('installs with --disableexcludes for the named repository (dnf, else yum), and reads rpm -q', () => {
    expect(rpmInstallCommand(['kubelet', 'kubeadm', 'kubectl'], 'kubernetes').text).to.equal(
      'if command -v dnf >/dev/null 2>&1; then dnf install -y kubelet kubeadm kubectl --disableexcludes=kubernetes; else yum install -y kubelet kubeadm kubectl --disableexcludes=kubernetes; fi',
    );
    expect([...installedRpms('kubelet\npackage kubeadm is not installed\nkubectl\n')]).to.deep.equal(['kubelet', 'kubectl']);
  });

  it('has canonical ids', () => {
    expect(ensureSelinuxPermissive().static!.id).to.equal('selinux');
    expect(ensureYumRepo(kubernetesYumRepo('1.34')).static!.id).to.equal('yum-repo:kubernetes');
    expect(ensureYumRepo(kubernetesYumRepo('1.34')).static!.title).to.equal('yum repository kubernetes (exclude kubelet kubeadm kubectl cri-tools kubernetes-cni)');
    expect(ensureRpmPackages(['kubectl', 'kubelet'], { disableExcludes: 'kubernetes' }).static!.id).to.equal('rpm-packages:kubectl,kubelet');
  });
});

describe('ensureYumRepo with a pinned key, checked on this machine (the test repository\'s key over http)', function () {
  this.timeout(60_000);
  const fx = useLocalAptRepo();

  const params = (fingerprint: string, key = 'key.asc') => ({
    id: 'capstan-test-pinned',
    name: 'Capstan test',
    baseurl: `${fx.repo.url}/rpm/`,
    gpgkey: `${fx.repo.url}/${key}`,
    gpgkeyFingerprint: fingerprint,
    gpgkeyPath: join(fx.local.dir, 'rpm-gpg/RPM-GPG-KEY-capstan-test'),
  });

  it('--check downloads the key on the host, checks its fingerprint and reports it absent; writes nothing', async () => {
    const p = params(fx.repo.fingerprint);
    const outcome = await run(fx.local, ensureYumRepo(p), true);
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift[0]!.subject).to.equal('gpg key');
    expect(describeDrift(outcome.drift[0]!)).to.match(new RegExp(`^gpg key: absent → ${fx.repo.fingerprint} \\(sha256 [0-9a-f]{16}\\) in ${p.gpgkeyPath.replaceAll('/', '\\/')}$`));
    expect(outcome.drift.map((d) => d.subject)).to.deep.equal(['gpg key', 'content']);
    expect(existsSync(p.gpgkeyPath)).to.equal(false);
  });

  it('a key with another fingerprint fails, in --check and in apply, and nothing is written', async () => {
    const p = params(DOCKER_RPM_KEY_FINGERPRINT);
    for (const checkMode of [true, false]) {
      const outcome = await run(fx.local, ensureYumRepo(p), checkMode);
      expect(outcome.status).to.equal('failed');
      expect(outcome.message).to.equal(
        `check failed: key fingerprint mismatch for ${fx.repo.url}/key.asc: expected ${DOCKER_RPM_KEY_FINGERPRINT}, the key is ${fx.repo.fingerprint}; nothing written`,
      );
    }
    expect(existsSync(p.gpgkeyPath)).to.equal(false);
    expect(existsSync('/etc/yum.repos.d/capstan-test-pinned.repo')).to.equal(false);
  });

  it('a binary (dearmored) key is refused: rpm imports armored keys only', async () => {
    const outcome = await run(fx.local, ensureYumRepo(params(fx.repo.fingerprint, 'key.gpg')), true);
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`check failed: could not fetch the key ${fx.repo.url}/key.gpg on the host: the key at the URL is not ASCII-armored (rpm imports armored keys only)`);
  });
});
