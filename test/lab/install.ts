/**
 * Installs Capstan's Kubernetes STAND-INS on lab hosts: test doubles for kubeadm, kubelet and
 * kubectl (the lab reaches Debian's mirror only, so the real binaries cannot be installed). See
 * test/lab/README.md for what they reproduce and what they do not.
 *
 * Layout on each host, as the pkgs.k8s.io packages lay it out:
 *   /usr/bin/kubeadm, /usr/bin/kubelet, /usr/bin/kubectl
 *   /usr/lib/systemd/system/kubelet.service (Restart=always, RestartSec=10) and its drop-in
 *   /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf (EnvironmentFile=-/etc/default/kubelet)
 *   /etc/default/kubelet (KUBELET_EXTRA_ARGS=, only when absent); kubelet.service enabled and started
 *   /opt/cni/bin/{bridge,portmap,...}: kubernetes-cni's plugins (the kubelet package's dependency), stand-ins
 * plus the stand-ins' own parts: /usr/lib/capstan-standin/*.py and the etcd-pod /
 * kube-apiserver-standin units that the kubelet stand-in starts for the static Pod manifests.
 * Debian packages the stand-ins need (python3-yaml, python3-cryptography) and the ones the real
 * kubelet/kubeadm packages pull in (iptables, ethtool, socat, ebtables, conntrack) are installed
 * with apt through the lab's proxy.
 */
import type { LabState } from '../../runner/lab/index.js';
import { installScript } from '../../runner/lab/standins.js';
import { sshToLab } from '../helpers/lab.js';

// The installer lives in runner/lab/standins.ts, so that `capstan run --lab` can use it too.
export { ETCD_IMAGE_PACKAGES, STANDIN_APT_PACKAGES, installScript } from '../../runner/lab/standins.js';

/**
 * Copies the stand-ins into `hosts` (default: every lab host) over OpenSSH, in parallel, and
 * installs the Debian packages they need. Idempotent: running it again refreshes the files.
 */
export async function installKubernetesStandIns(lab: LabState, hosts?: string[]): Promise<void> {
  const names = hosts ?? lab.hosts.map((host) => host.name);
  const script = installScript();
  await Promise.all(
    names.map(async (name) => {
      const result = await sshToLab(lab, name, 'sh -s', { input: script });
      if (result.code !== 0) throw new Error(`installing the Kubernetes stand-ins on ${name} failed (${result.code}): ${result.stderr}`);
    }),
  );
}
