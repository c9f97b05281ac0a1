import { playbook } from '../../runner/index.js';
import { command, ensureBlock, ensureDirectory, ensureFile, ensureLine } from '../../tasks/index.js';

/**
 * Node preparation for kubeadm, the Capstan side of the benchmark. Its twin is
 * bench/ansible/node-prep.yml: same tasks, same order, same results on the hosts (the bench
 * compares a fingerprint of node1 after each tool's first apply). Each task names its twin.
 *
 * Written with the core file tasks only, line for line like the Ansible playbook; bench/README.md
 * says which dedicated tasks (ensureSysctl, ensureModule, ensureSwapOff) replace [2]–[4] later.
 * The hosts are namespace hosts (no systemd): the unit file is written, not started, and only
 * net.* sysctls are set.
 */

const SYSCTL_FILE = '/etc/sysctl.d/99-kubernetes.conf';
/** An fstab line that enables swap (not a comment). */
const SWAP_LINE = '^[^#].*\\sswap\\s';
const CONTROL_PLANE = '10.77.0.101 cp1.lab\n10.77.0.102 cp2.lab\n10.77.0.103 cp3.lab\n';

// [h] handler "reload sysctl": command: argv [sysctl, -p, /etc/sysctl.d/99-kubernetes.conf]
const reloadSysctl = command({ run: ['sysctl', '-p', SYSCTL_FILE], name: 'reload sysctl' });

export default playbook('node-prep', async ({ play }) => {
  await play('node prep', 'all', [
    // [1] "directory /etc/node-prep": file state=directory mode=0755
    ensureDirectory({ path: '/etc/node-prep', mode: '0755' }),

    // [2] "modules loaded at boot": copy dest=/etc/modules-load.d/k8s.conf
    ensureFile({ path: '/etc/modules-load.d/k8s.conf', content: 'overlay\nbr_netfilter\n', mode: '0644' }),

    // [3] "sysctl drop-in (net.* only)": copy dest=/etc/sysctl.d/99-kubernetes.conf, notify reload sysctl
    ensureFile(
      {
        path: SYSCTL_FILE,
        content: 'net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n',
        mode: '0644',
      },
      { notify: [reloadSysctl] },
    ),

    // [4] "no active swap line in fstab": lineinfile path=/etc/fstab regexp=… state=absent
    ensureLine({ path: '/etc/fstab', regexp: SWAP_LINE, line: '', state: 'absent' }),

    // [5] "API endpoint in /etc/hosts": lineinfile regexp='\sk8s-api\.lab$'
    ensureLine({ path: '/etc/hosts', regexp: '\\sk8s-api\\.lab$', line: '10.77.0.100 k8s-api.lab' }),

    // [6] "control plane block in /etc/hosts": blockinfile marker="# {mark} node-prep control plane"
    ensureBlock({ path: '/etc/hosts', marker: '# {mark} node-prep control plane', block: CONTROL_PLANE }),

    // [7] "kubelet node IP": lineinfile path=/etc/default/kubelet create=true line=…{{ ansible_host }}
    ensureLine({
      path: '/etc/default/kubelet',
      regexp: '^KUBELET_EXTRA_ARGS=',
      line: (host) => `KUBELET_EXTRA_ARGS=--node-ip=${String(host.vars.ansible_host)}`,
      mode: '0644',
    }),

    // [8] "directory /etc/containerd": file state=directory mode=0755
    ensureDirectory({ path: '/etc/containerd', mode: '0755' }),

    // [9] "containerd configuration": copy dest=/etc/containerd/config.toml
    ensureFile({
      path: '/etc/containerd/config.toml',
      content: 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n',
      mode: '0644',
    }),

    // [10] "crictl endpoint": copy dest=/etc/crictl.yaml
    ensureFile({
      path: '/etc/crictl.yaml',
      content: 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n',
      mode: '0644',
    }),

    // [11] "systemd unit file": copy dest=/etc/systemd/system/node-prep-demo.service (written, not started: no systemd)
    ensureFile({
      path: '/etc/systemd/system/node-prep-demo.service',
      content:
        '[Unit]\nDescription=node-prep demo unit\n\n[Service]\nType=oneshot\nExecStart=/bin/true\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n',
      mode: '0644',
    }),

    // [12] "record the first preparation": command argv=[sh, -c, …] creates=/etc/node-prep/prepared-at
    command({
      run: ['sh', '-c', 'date -u +%s > /etc/node-prep/prepared-at'],
      creates: '/etc/node-prep/prepared-at',
      name: 'record the first preparation',
    }),
  ]);
});
