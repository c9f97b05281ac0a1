/**
 * Where the hard way (seed 003) puts its files on a controller — the seed's `mv` lines — shared by
 * hard-way.ts, which installs them, and status.ts / certs.ts, which read them.
 */
import { KUBERNETES_DIR } from '../../tasks/control-plane.js';
import type { CertificateFiles } from '../../tasks/certs.js';

/** The files /var/lib/kubernetes gets from the PKI (the seed's `sudo mv ca.pem ca-key.pem … /var/lib/kubernetes/`). */
export const CONTROLLER_FILES = [
  'ca.pem',
  'ca-key.pem',
  'kubernetes-key.pem',
  'kubernetes.pem',
  'service-account-key.pem',
  'service-account.pem',
  'encryption-config.yaml',
  'kube-controller-manager.kubeconfig',
  'kube-scheduler.kubeconfig',
  'admin.kubeconfig',
];
export const ETCD_DIR = '/etc/etcd';
/** The files /etc/etcd gets (the seed's `sudo cp ca.pem kubernetes-key.pem kubernetes.pem /etc/etcd/`). */
export const ETCD_FILES = ['ca.pem', 'kubernetes-key.pem', 'kubernetes.pem'];

/** The controllers' admin kubeconfig (the seed's `--kubeconfig admin.kubeconfig`). */
export const HARD_WAY_ADMIN_KUBECONFIG = `${KUBERNETES_DIR}/admin.kubeconfig`;
/** The units a controller runs (seed 003: etcd, the three control-plane components, nginx for /healthz). */
export const HARD_WAY_UNITS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'nginx'];

const isCertificate = (file: string) => file.endsWith('.pem') && !file.endsWith('-key.pem');

/** Every certificate a controller holds: the PEM files (never the keys) and the kubeconfigs' client certificates. */
export function hardWayCertificates(): CertificateFiles {
  return {
    files: [...CONTROLLER_FILES.filter(isCertificate).map((f) => `${KUBERNETES_DIR}/${f}`), ...ETCD_FILES.filter(isCertificate).map((f) => `${ETCD_DIR}/${f}`)],
    kubeconfigs: CONTROLLER_FILES.filter((f) => f.endsWith('.kubeconfig')).map((f) => `${KUBERNETES_DIR}/${f}`),
  };
}

/** Whether an inventory is the hard way's (controllers, no kubeadm control_plane group). */
export function isHardWayInventory(groups: { has(name: string): boolean }): boolean {
  return !groups.has('control_plane') && groups.has('controllers');
}
