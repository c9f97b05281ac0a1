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
 * plus the stand-ins' own parts: /usr/lib/capstan-standin/*.py and the etcd-standin /
 * kube-apiserver-standin units that the kubelet stand-in starts for the static Pod manifests.
 * Debian packages the stand-ins need (python3-yaml, python3-cryptography) and the ones the real
 * kubelet/kubeadm packages pull in (iptables, ethtool, socat, ebtables, conntrack) are installed
 * with apt through the lab's proxy.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabState } from '../../runner/lab/index.js';
import { sshToLab } from '../helpers/lab.js';

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), 'standins');

/** Debian packages installed on every host (the stand-ins' own needs, then the real packages' dependencies). */
export const STANDIN_APT_PACKAGES = ['python3-yaml', 'python3-cryptography', 'iptables', 'ethtool', 'socat', 'ebtables', 'conntrack'];

interface InstalledFile {
  source: string;
  target: string;
  mode: string;
}

const FILES: InstalledFile[] = [
  { source: 'standin_common.py', target: '/usr/lib/capstan-standin/standin_common.py', mode: '644' },
  { source: 'kubeadm_config.py', target: '/usr/lib/capstan-standin/kubeadm_config.py', mode: '644' },
  { source: 'kubeadm_preflight.py', target: '/usr/lib/capstan-standin/kubeadm_preflight.py', mode: '644' },
  { source: 'standin_servers.py', target: '/usr/lib/capstan-standin/standin_servers.py', mode: '755' },
  { source: 'kubeadm.py', target: '/usr/bin/kubeadm', mode: '755' },
  { source: 'kubelet.py', target: '/usr/bin/kubelet', mode: '755' },
  { source: 'kubectl.py', target: '/usr/bin/kubectl', mode: '755' },
  { source: 'systemd/kubelet.service', target: '/usr/lib/systemd/system/kubelet.service', mode: '644' },
  { source: 'systemd/10-kubeadm.conf', target: '/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf', mode: '644' },
  { source: 'systemd/etcd-standin.service', target: '/usr/lib/systemd/system/etcd-standin.service', mode: '644' },
  { source: 'systemd/kube-apiserver-standin.service', target: '/usr/lib/systemd/system/kube-apiserver-standin.service', mode: '644' },
];

/** The shell script (run as root on a host, fed on stdin) that installs everything. Exported for its unit test. */
export function installScript(): string {
  const lines = [
    'set -eu',
    'export DEBIAN_FRONTEND=noninteractive',
    // apt's lists may be missing on a fresh host; retry once for a proxy hiccup
    `(apt-get update -qq && apt-get install -y -qq --no-install-recommends ${STANDIN_APT_PACKAGES.join(' ')}) >/tmp/standin-apt.log 2>&1 || ` +
      `(sleep 2; apt-get update -qq && apt-get install -y -qq --no-install-recommends ${STANDIN_APT_PACKAGES.join(' ')}) >>/tmp/standin-apt.log 2>&1 || { cat /tmp/standin-apt.log >&2; exit 1; }`,
    'mkdir -p /usr/lib/capstan-standin /usr/lib/systemd/system/kubelet.service.d /etc/kubernetes/manifests /var/lib/kubelet /etc/cni/net.d',
  ];
  for (const file of FILES) {
    const data = readFileSync(join(SOURCE, file.source)).toString('base64');
    lines.push(`base64 -d > ${file.target}.standin-new <<'STANDIN_EOF'`, ...(data.match(/.{1,76}/g) ?? []), 'STANDIN_EOF');
    lines.push(`chmod ${file.mode} ${file.target}.standin-new && mv ${file.target}.standin-new ${file.target}`);
  }
  const defaults = readFileSync(join(SOURCE, 'systemd/kubelet.default')).toString('base64');
  lines.push(`[ -e /etc/default/kubelet ] || printf '%s' '${defaults}' | base64 -d > /etc/default/kubelet`);
  lines.push('ln -sf /usr/lib/capstan-standin/standin_servers.py /usr/lib/capstan-standin/etcd-standin');
  lines.push('ln -sf /usr/lib/capstan-standin/standin_servers.py /usr/lib/capstan-standin/kube-apiserver-standin');
  lines.push('systemctl daemon-reload', 'systemctl enable kubelet.service >/dev/null 2>&1', 'systemctl start kubelet.service || true');
  return `${lines.join('\n')}\n`;
}

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
