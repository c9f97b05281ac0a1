/**
 * Installs the Kubernetes STAND-INS on lab hosts: test doubles for kubeadm, kubelet and kubectl
 * (the lab reaches Debian's mirror only, so the real binaries cannot be installed). The stand-ins
 * themselves live in test/lab/standins (see test/lab/README.md for what they reproduce and what
 * they do not); this is the installer, here so that `capstan run --lab` can use it as well as the
 * tests (test/lab/install.ts re-exports it).
 *
 * Layout on each host, as the pkgs.k8s.io packages lay it out:
 *   /usr/bin/kubeadm, /usr/bin/kubelet, /usr/bin/kubectl
 *   /usr/lib/systemd/system/kubelet.service (Restart=always, RestartSec=10) and its drop-in
 *   /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf (EnvironmentFile=-/etc/default/kubelet)
 *   /etc/default/kubelet (KUBELET_EXTRA_ARGS=, only when absent); kubelet.service enabled and started
 *   /opt/cni/bin/{bridge,portmap,...}: kubernetes-cni's plugins (the kubelet package's dependency), stand-ins
 * plus the stand-ins' own parts: /usr/lib/capstan-standin/*.py and the etcd-pod /
 * kube-apiserver-standin units that the kubelet stand-in starts for the static Pod manifests.
 * Debian packages the stand-ins need (python3-yaml, python3-cryptography), the ones the real
 * kubelet/kubeadm packages pull in (iptables, ethtool, socat, ebtables, conntrack) and the real etcd
 * that plays the etcd image (etcd-server, etcd-client) are installed with apt through the lab's proxy.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostFactory } from '../connect.js';
import { loadInventory } from '../inventory/index.js';
import { sh } from '../quote.js';
import type { LabState } from './types.js';

/** Where the stand-ins' sources are (test doubles: they stay with the tests). */
export const STANDIN_SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'lab', 'standins');

/** Debian packages installed on every host (the stand-ins' own needs, then the real packages' dependencies). */
export const STANDIN_APT_PACKAGES = ['python3-yaml', 'python3-cryptography', 'iptables', 'ethtool', 'socat', 'ebtables', 'conntrack'];

/**
 * The etcd static Pod's "image": Debian's real etcd (etcd-server) and etcdctl (etcd-client, what an
 * operator runs in the etcd container). Their package's own etcd.service (a default member on
 * 127.0.0.1:2379) must never run on a kubeadm node: it is masked while they install and left disabled.
 */
export const ETCD_IMAGE_PACKAGES = ['etcd-server', 'etcd-client'];

/**
 * The plugins of kubernetes-cni (containernetworking/plugins v1.x), which the pkgs.k8s.io kubelet
 * package depends on: installed in /opt/cni/bin as copies of the stand-in plugin (cni-plugin.sh), so
 * a CNI config naming `portmap` or `bridge` finds them as on a real node.
 */
export const KUBERNETES_CNI_PLUGINS = ['bandwidth', 'bridge', 'dhcp', 'dummy', 'firewall', 'host-device', 'host-local', 'ipvlan', 'loopback',
  'macvlan', 'portmap', 'ptp', 'sbr', 'static', 'tap', 'tuning', 'vlan', 'vrf'];

/** A file the stand-ins' installer puts on every host. */
export const STANDIN_MARKER = '/usr/lib/capstan-standin/standin_servers.py';

/** A file the stand-ins' installer (and the lab's Kubernetes packages) put on a host. */
export interface InstalledFile {
  source: string;
  target: string;
  mode: string;
}

/** Every stand-in file and where it goes; runner/lab/kubernetes-repo.ts splits them into packages. */
export const STANDIN_FILES: readonly InstalledFile[] = [
  { source: 'standin_common.py', target: '/usr/lib/capstan-standin/standin_common.py', mode: '644' },
  { source: 'kubeadm_config.py', target: '/usr/lib/capstan-standin/kubeadm_config.py', mode: '644' },
  { source: 'kubeadm_preflight.py', target: '/usr/lib/capstan-standin/kubeadm_preflight.py', mode: '644' },
  { source: 'kubeadm_versions.py', target: '/usr/lib/capstan-standin/kubeadm_versions.py', mode: '644' },
  { source: 'kubeadm_upgrade.py', target: '/usr/lib/capstan-standin/kubeadm_upgrade.py', mode: '644' },
  { source: 'kubeadm_etcd.py', target: '/usr/lib/capstan-standin/kubeadm_etcd.py', mode: '644' },
  { source: 'kubeadm_certs.py', target: '/usr/lib/capstan-standin/kubeadm_certs.py', mode: '644' },
  { source: 'pflag.py', target: '/usr/lib/capstan-standin/pflag.py', mode: '644' },
  { source: 'kubelet_node.py', target: '/usr/lib/capstan-standin/kubelet_node.py', mode: '644' },
  { source: 'cni-plugin.sh', target: '/usr/lib/capstan-standin/cni-plugin', mode: '755' },
  { source: 'standin_servers.py', target: STANDIN_MARKER, mode: '755' },
  { source: 'kubeadm.py', target: '/usr/bin/kubeadm', mode: '755' },
  { source: 'kubelet.py', target: '/usr/bin/kubelet', mode: '755' },
  { source: 'kubectl.py', target: '/usr/bin/kubectl', mode: '755' },
  { source: 'systemd/kubelet.service', target: '/usr/lib/systemd/system/kubelet.service', mode: '644' },
  { source: 'systemd/10-kubeadm.conf', target: '/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf', mode: '644' },
  { source: 'etcd_pod.py', target: '/usr/lib/capstan-standin/etcd-pod', mode: '755' },
  { source: 'systemd/etcd-pod.service', target: '/usr/lib/systemd/system/etcd-pod.service', mode: '644' },
  { source: 'systemd/kube-apiserver-standin.service', target: '/usr/lib/systemd/system/kube-apiserver-standin.service', mode: '644' },
];

/** The shell script (run as root on a host, fed on stdin) that installs everything. Exported for its unit test. */
export function installScript(): string {
  const packages = [...STANDIN_APT_PACKAGES, ...ETCD_IMAGE_PACKAGES].join(' ');
  const lines = [
    'set -eu',
    'export DEBIAN_FRONTEND=noninteractive',
    'systemctl mask --runtime etcd.service >/dev/null 2>&1 || true',
    // apt's lists may be missing on a fresh host. Hosts update at the same moment through one
    // apt-cacher-ng, which can lose that race ("Failure to move file … out of the way", seen here)
    // and leave an apt-get update waiting on a half-closed connection for good: a hung update is
    // cut off after 90 s (a normal one takes seconds) and retried, up to three times, each host
    // waiting a different while first.
    ': > /tmp/standin-apt.log',
    `for attempt in 1 2 3; do timeout 90 apt-get update -qq >>/tmp/standin-apt.log 2>&1 && break; ` +
      `[ "$attempt" = 3 ] && { cat /tmp/standin-apt.log >&2; exit 1; }; sleep $(( $(od -An -N1 -tu1 /dev/urandom) % 5 + attempt )); done`,
    `timeout 600 apt-get install -y -qq --no-install-recommends ${packages} >>/tmp/standin-apt.log 2>&1 || { sleep 2; timeout 600 apt-get install -y -qq --no-install-recommends ${packages} >>/tmp/standin-apt.log 2>&1; } || { cat /tmp/standin-apt.log >&2; exit 1; }`,
    'systemctl unmask --runtime etcd.service >/dev/null 2>&1; systemctl disable etcd.service >/dev/null 2>&1 || true',
    'mkdir -p /usr/lib/capstan-standin /usr/lib/systemd/system/kubelet.service.d /etc/kubernetes/manifests /var/lib/kubelet /etc/cni/net.d',
  ];
  for (const file of STANDIN_FILES) {
    const data = readFileSync(join(STANDIN_SOURCE, file.source)).toString('base64');
    lines.push(`base64 -d > ${file.target}.standin-new <<'STANDIN_EOF'`, ...(data.match(/.{1,76}/g) ?? []), 'STANDIN_EOF');
    lines.push(`chmod ${file.mode} ${file.target}.standin-new && mv ${file.target}.standin-new ${file.target}`);
  }
  const defaults = readFileSync(join(STANDIN_SOURCE, 'systemd/kubelet.default')).toString('base64');
  lines.push(`[ -e /etc/default/kubelet ] || printf '%s' '${defaults}' | base64 -d > /etc/default/kubelet`);
  lines.push(`mkdir -p /opt/cni/bin && for plugin in ${KUBERNETES_CNI_PLUGINS.join(' ')}; do cp /usr/lib/capstan-standin/cni-plugin /opt/cni/bin/$plugin; done`);
  lines.push('ln -sf /usr/lib/capstan-standin/standin_servers.py /usr/lib/capstan-standin/kube-apiserver-standin');
  lines.push('systemctl daemon-reload', 'systemctl enable kubelet.service >/dev/null 2>&1', 'systemctl start kubelet.service || true');
  return `${lines.join('\n')}\n`;
}

/**
 * Runs `script` (sh, as root, fed on stdin) on each of `hosts` in parallel, over Capstan's own SSH
 * transport and the lab's inventory; fails naming the host and its stderr.
 */
export async function runOnLabHosts(lab: LabState, hosts: readonly string[], script: string): Promise<void> {
  const inventory = await loadInventory(lab.inventoryPath);
  const connect = hostFactory({ acceptNewHostKeys: false, commandTimeoutMs: 900_000 });
  await Promise.all(
    hosts.map(async (name) => {
      const inventoryHost = inventory.hosts.get(name);
      if (!inventoryHost) throw new Error(`no lab host named ${name}`);
      const host = connect(inventoryHost);
      try {
        await host.connect();
        const result = await host.exec(sh`sh -s`, { stdin: script });
        if (result.code !== 0) throw new Error(`preparing lab host ${name} failed (${result.code}): ${result.stderr}`);
      } finally {
        await host.close().catch(() => undefined);
      }
    }),
  );
}

/**
 * Installs the stand-ins on `hosts` (default: every lab host) that do not have them yet, in
 * parallel, over Capstan's own SSH transport and the lab's inventory (root, the lab key, the
 * lab's known_hosts). With `force`, hosts that have them are refreshed too. Returns the hosts it
 * installed on.
 */
export async function installStandIns(lab: LabState, options: { hosts?: string[]; force?: boolean } = {}): Promise<string[]> {
  const inventory = await loadInventory(lab.inventoryPath);
  const connect = hostFactory({ acceptNewHostKeys: false, commandTimeoutMs: 600_000 });
  const names = options.hosts ?? lab.hosts.map((host) => host.name);
  const script = installScript();
  const installed: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      const inventoryHost = inventory.hosts.get(name);
      if (!inventoryHost) throw new Error(`no lab host named ${name}`);
      const host = connect(inventoryHost);
      try {
        await host.connect();
        if (!options.force && (await host.exec(sh`test -x ${STANDIN_MARKER} && test -x /usr/bin/kubeadm`)).code === 0) return;
        const result = await host.exec(sh`sh -s`, { stdin: script });
        if (result.code !== 0) throw new Error(`installing the Kubernetes stand-ins on ${name} failed (${result.code}): ${result.stderr}`);
        installed.push(name);
      } finally {
        await host.close().catch(() => undefined);
      }
    }),
  );
  return installed;
}
