import { expect } from 'chai';
import { etcdctlCommand, etcdSnapshot, sha256Line, snapshotFileName } from '../../tasks/etcd-snapshot.js';
import { parseEtcdManifest, restoreCommand, REMOTE_SNAPSHOT } from '../../tasks/etcd-restore.js';

/** A kubeadm 1.34 etcd manifest's command, as `kubeadm init` writes it (the flags the restore reads). */
const MANIFEST = `apiVersion: v1
kind: Pod
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.2.11:2379
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.2.11:2380
    - --initial-cluster=cp1=https://10.0.2.11:2380
    - --initial-cluster-state=new
    - --name=cp1
`;

describe('etcd backup and restore commands (tasks/etcd-snapshot.ts, tasks/etcd-restore.ts)', function () {
  it('snapshot files are named by host and UTC second, and recorded as sha256sum lines', function () {
    expect(snapshotFileName('cp1', new Date('2026-12-03T08:04:05.678Z'))).to.equal('etcd-cp1-20261203T080405Z.db');
    expect(sha256Line(Buffer.from('abc'), '/backups/etcd-cp1-20261203T080405Z.db')).to.equal(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  etcd-cp1-20261203T080405Z.db\n');
  });

  it('refuses a snapshot directory that is a file, or an unknown layout, when the playbook loads', function () {
    expect(() => etcdSnapshot({ dir: '/etc/hostname' })).to.throw('invalid parameters for etcd-snapshot task: /etc/hostname exists and is not a directory');
    expect(() => etcdSnapshot({ dir: 'backups', layout: 'k3s' as 'kubeadm' })).to.throw('layout must be kubeadm or hard-way, got "k3s"');
  });

  it('etcdctl talks to the local member with the layout\'s certificates (API v3 said, for etcd 3.4)', function () {
    expect(etcdctlCommand('kubeadm', ['snapshot', 'save', '/tmp/x y']).text).to.equal(
      "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key snapshot save '/tmp/x y'");
    expect(etcdctlCommand('hard-way', ['endpoint', 'health']).text).to.equal(
      'ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem endpoint health');
  });

  it('reads the member from kubeadm\'s manifest and refuses a manifest without one', function () {
    expect(parseEtcdManifest(MANIFEST)).to.deep.equal({ name: 'cp1', peerUrl: 'https://10.0.2.11:2380', dataDir: '/var/lib/etcd' });
    expect(() => parseEtcdManifest('spec: {}\n')).to.throw("/etc/kubernetes/manifests/etcd.yaml has no --name or --initial-advertise-peer-urls: not kubeadm's stacked etcd");
  });

  it('restores each member with its own name and peer URL and the whole initial cluster (etcdutl, else etcd 3.4\'s etcdctl)', function () {
    const members = [parseEtcdManifest(MANIFEST), { name: 'cp2', peerUrl: 'https://10.0.2.12:2380', dataDir: '/var/lib/etcd' }];
    const args = `snapshot restore ${REMOTE_SNAPSHOT} --name=cp2 --initial-cluster=cp1=https://10.0.2.11:2380,cp2=https://10.0.2.12:2380 ` +
      '--initial-cluster-token=capstan-restore-1 --initial-advertise-peer-urls=https://10.0.2.12:2380 --data-dir=/var/lib/etcd.capstan-restored';
    expect(restoreCommand(members[1]!, members, 'capstan-restore-1', '/var/lib/etcd.capstan-restored').text).to.equal(
      `if command -v etcdutl >/dev/null; then etcdutl ${args}; else ETCDCTL_API=3 etcdctl ${args}; fi`);
  });
});
