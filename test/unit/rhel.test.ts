import { expect } from 'chai';
import {
  dockerYumRepo,
  isRhelFamilyOs,
  rpmContainerRuntimePackages,
  ensureRpmPackages,
  ensureSelinuxPermissive,
  ensureYumRepo,
  installedRpms,
  kubernetesYumRepo,
  parseGetenforce,
  renderYumRepo,
  rpmInstallCommand,
  selinuxPermissiveConfig,
} from '../../tasks/rhel.js';

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

  it('renders the seed\'s kubernetes.repo exactly (v1.32 there), with exclude=', () => {
    expect(renderYumRepo(kubernetesYumRepo('1.32'))).to.equal(`[kubernetes]
name=Kubernetes
baseurl=https://pkgs.k8s.io/core:/stable:/v1.32/rpm/
enabled=1
gpgcheck=1
gpgkey=https://pkgs.k8s.io/core:/stable:/v1.32/rpm/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
`);
    expect(renderYumRepo(kubernetesYumRepo('v1.34.2'))).to.include('baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/\n');
  });

  it('renders Docker\'s CentOS repository (for containerd.io) exactly', () => {
    expect(renderYumRepo(dockerYumRepo())).to.equal(`[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=https://download.docker.com/linux/centos/gpg
`);
  });

  it('picks Docker\'s rpm tree per distribution: Fedora and RHEL their own, CentOS\'s for its rebuilds', () => {
    expect(renderYumRepo(dockerYumRepo('fedora'))).to.equal(`[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/fedora/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=https://download.docker.com/linux/fedora/gpg
`);
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
