import { expect } from 'chai';
import {
  COMMON_PACKAGE,
  commonPackageSpec,
  controlFile,
  debFileName,
  debianVersion,
  kubernetesPackageSpecs,
  kubernetesCniPackageSpec,
  minorOf,
  repositoryPath,
} from '../../runner/lab/kubernetes-repo.js';

describe('lab Kubernetes package repository layout (runner/lab/kubernetes-repo.ts)', function () {
  it('names versions, repositories and files as pkgs.k8s.io does', function () {
    expect(debianVersion('1.35.0')).to.equal('1.35.0-1.1');
    expect(debianVersion('v1.34.2')).to.equal('1.34.2-1.1');
    expect(() => debianVersion('1.35')).to.throw('not a released Kubernetes version (like 1.35.0): "1.35"');
    expect(minorOf('1.35.1')).to.equal('v1.35');
    expect(repositoryPath('v1.34')).to.equal('/core:/stable:/v1.34/deb/');
    expect(() => repositoryPath('1.34')).to.throw();
    expect(debFileName({ name: 'kubeadm', version: '1.34.1-1.1', architecture: 'amd64' })).to.equal('kubeadm_1.34.1-1.1_amd64.deb');
  });

  it('puts each tool in its own package with its version, and the shared modules in the common package', function () {
    const [kubeadm, kubelet, kubectl] = kubernetesPackageSpecs('1.35.0');
    expect(kubeadm!.files.map((f) => f.target)).to.deep.equal(['/usr/bin/kubeadm', '/usr/lib/capstan-standin/versions/kubeadm']);
    expect(kubeadm!.files[1]!.content).to.equal('v1.35.0\n');
    expect(kubelet!.files.map((f) => f.target)).to.deep.equal([
      '/usr/bin/kubelet',
      '/usr/lib/systemd/system/kubelet.service',
      '/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf',
      '/usr/lib/capstan-standin/versions/kubelet',
    ]);
    expect(kubelet!.postinst).to.include('if [ "$1" = configure ] && [ -z "$2" ]');
    expect(kubelet!.depends).to.include('kubernetes-cni (>= 1.2.0)');
    const cni = kubernetesCniPackageSpec();
    expect([cni.name, cni.version]).to.deep.equal(['kubernetes-cni', '1.7.1-1.1']);
    expect(cni.files.map((f) => f.target)).to.include.members(['/opt/cni/bin/bridge', '/opt/cni/bin/portmap', '/opt/cni/bin/loopback', '/opt/cni/bin/host-local']);
    expect(kubectl!.files.map((f) => f.target)).to.deep.equal(['/usr/bin/kubectl', '/usr/lib/capstan-standin/versions/kubectl']);
    const common = commonPackageSpec();
    expect(common.files.map((f) => f.target)).to.include.members([
      '/usr/lib/capstan-standin/kubeadm_upgrade.py',
      '/usr/lib/capstan-standin/kubeadm_versions.py',
      '/usr/lib/capstan-standin/standin_servers.py',
      '/usr/lib/systemd/system/kube-apiserver-standin.service',
      '/usr/lib/capstan-standin/etcd-pod',
      '/usr/lib/systemd/system/etcd-pod.service',
    ]);
    // The etcd image is Debian's real etcd; its package's own default member is stopped, and its data removed.
    expect(common.depends).to.deep.equal(['python3', 'python3-yaml', 'python3-cryptography', 'etcd-server', 'etcd-client']);
    expect(common.postinst).to.include('systemctl disable --now etcd.service >/dev/null 2>&1 || true; fi\nrm -rf /var/lib/etcd/default\n');
    expect(common.version).to.match(/^1\.0\+[0-9a-f]{12}$/);
    expect(controlFile(kubectl!)).to.equal(
      'Package: kubectl\nVersion: 1.35.0-1.1\nArchitecture: amd64\nMaintainer: Capstan lab <lab@capstan.invalid>\n' +
        `Depends: ${COMMON_PACKAGE}\nSection: admin\nPriority: optional\nDescription: Capstan lab STAND-IN for kubectl (a test double, not Kubernetes)\n`,
    );
  });
});
