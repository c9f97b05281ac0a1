import { expect } from 'chai';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { labDown, type LabState } from '../../runner/lab/index.js';
import { skipUnlessLabSupported, sshToLab, withLab, type SshResult } from '../helpers/lab.js';
import { installKubernetesStandIns } from '../lab/install.js';

/**
 * The Kubernetes stand-ins (test/lab) driven by hand over OpenSSH through the seeds' flow on a
 * 3-host lab: init, worker join with a fresh token, NotReady until a CNI config exists, refused
 * joins (expired token, wrong CA hash, expired certificate key), control-plane join after
 * re-uploading the certificates, untaint, a 3-replica smoke test, and preflight failures.
 */
describe('Kubernetes stand-ins on lab hosts (kubeadm, kubelet, kubectl)', function () {
  this.timeout(600_000);
  let lab: LabState;
  const admin = 'KUBECONFIG=/etc/kubernetes/admin.conf';
  let ip: (host: string) => string;

  async function run(host: string, command: string): Promise<SshResult> {
    return sshToLab(lab, host, command);
  }

  async function ok(host: string, command: string): Promise<string> {
    const result = await run(host, command);
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }

  before(async function () {
    skipUnlessLabSupported(this);
    lab = await withLab(3);
    ip = (host) => lab.hosts.find((candidate) => candidate.name === host)!.address;
    await installKubernetesStandIns(lab);
    await Promise.all(
      ['node1', 'node2', 'node3'].map((host) =>
        // The seeds' containerd setup: the default config with SystemdCgroup = true (kubeadm's kubelet uses systemd; the stand-in refuses a mismatch).
        ok(host, 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null && containerd config default | sed "s/SystemdCgroup = false/SystemdCgroup = true/" > /etc/containerd/config.toml && systemctl restart containerd && sysctl -qw net.ipv4.ip_forward=1'),
      ),
    );
  });

  after(async function () {
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('answers kubeadm/kubectl/kubelet version like v1.34.1', async function () {
    expect(await ok('node1', 'kubeadm version -o short')).to.equal('v1.34.1\n');
    expect(await ok('node1', 'kubectl version --client')).to.equal('Client Version: v1.34.1\nKustomize Version: v5.7.1\n');
    expect(await ok('node1', 'kubelet --version')).to.equal('Kubernetes v1.34.1\n');
  });

  it('runs kubelet.service as the package does, crashlooping before kubeadm init', async function () {
    expect(await ok('node1', 'systemctl show kubelet -p Restart -p RestartUSec -p UnitFileState')).to.equal(
      'Restart=always\nRestartUSec=10s\nUnitFileState=enabled\n',
    );
    expect(await ok('node1', 'systemctl cat kubelet')).to.include('EnvironmentFile=-/etc/default/kubelet');
    expect(await ok('node1', 'cat /etc/default/kubelet')).to.equal('KUBELET_EXTRA_ARGS=\n');
    const journal = await ok('node1', 'journalctl -u kubelet --no-pager');
    expect(journal).to.include('open /var/lib/kubelet/config.yaml: no such file or directory');
  });

  it('fails preflight when containerd is stopped, as kubeadm 1.34 does (CRI check skipped, image pull fails)', async function () {
    await ok('node3', 'systemctl stop containerd');
    try {
      const result = await run('node3', `kubeadm init --pod-network-cidr=10.10.0.0/16 --apiserver-advertise-address=${ip('node3')}`);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(/^W\d{4} [\d:.]+ +\d+ checks\.go:\d+\] \[preflight\] WARNING: Couldn't create the interface used for talking to the container runtime: failed to create new CRI runtime service: validate service connection: validate CRI v1 runtime API for endpoint "unix:\/\/\/var\/run\/containerd\/containerd\.sock": rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix \/var\/run\/containerd\/containerd\.sock: connect: (no such file or directory|connection refused)"$/m);
      expect(result.stderr).to.include('[preflight] Some fatal errors occurred:\nfailed to create new CRI runtime service: validate service connection:');
      expect(result.stderr).to.include('"[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\nerror: error execution phase preflight: preflight checks failed\nTo see the stack trace of this error execute with --v=5 or higher\n');
      expect(result.stdout).to.include("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'\n");
    } finally {
      await ok('node3', 'systemctl start containerd');
    }
  });

  it('fails preflight with the FileContent error when ip_forward is 0', async function () {
    await ok('node3', 'sysctl -qw net.ipv4.ip_forward=0');
    try {
      const result = await run('node3', `kubeadm init --pod-network-cidr=10.10.0.0/16 --apiserver-advertise-address=${ip('node3')}`);
      expect(result.code).to.equal(1);
      expect(result.stdout).to.equal('[init] Using Kubernetes version: v1.34.1\n[preflight] Running pre-flight checks\n');
      expect(result.stderr).to.include(
        '[preflight] Some fatal errors occurred:\n\t[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1\n' +
          "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n" +
          'error: error execution phase preflight: preflight checks failed\nTo see the stack trace of this error execute with --v=5 or higher\n',
      );
      expect(await ok('node3', 'ls -A /etc/kubernetes /etc/kubernetes/manifests')).to.equal('/etc/kubernetes:\nmanifests\n\n/etc/kubernetes/manifests:\n');
    } finally {
      await ok('node3', 'sysctl -qw net.ipv4.ip_forward=1');
    }
  });

  it('fails join preflight with seed 001 text when the memory cgroup is missing (test-only override)', async function () {
    await ok('node3', 'mkdir -p /etc/standin && printf "cpuset cpu io pids devices freezer\\n" > /tmp/controllers && echo /tmp/controllers > /etc/standin/cgroup-controllers');
    try {
      const result = await run('node3', `kubeadm join ${ip('node1')}:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:${'0'.repeat(64)}`);
      expect(result.code).to.equal(1);
      expect(result.stdout).to.include('[preflight] The system verification failed. Printing the output from the verification:\nKERNEL_VERSION: ');
      expect(result.stdout).to.include('CGROUPS_MEMORY: missing\n');
      expect(result.stderr).to.include('\t[WARNING SystemVerification]: missing optional cgroups: hugetlb\n');
      expect(result.stderr).to.include('[preflight] Some fatal errors occurred:\n\t[ERROR SystemVerification]: missing required cgroups: memory\n');
      expect(result.stderr).to.include('error: error execution phase preflight: preflight checks failed\n');
    } finally {
      await ok('node3', 'rm -f /etc/standin/cgroup-controllers');
    }
  });

  let certificateKey = '';
  let caHash = '';

  it('initialises node1 from a v1beta4 config with --upload-certs (unknown fields warned about, not rejected)', async function () {
    const config = [
      'apiVersion: kubeadm.k8s.io/v1beta4',
      'kind: InitConfiguration',
      'localAPIEndpoint:',
      `  advertiseAddress: ${ip('node1')}`,
      '  bindPort: 6443',
      '---',
      'apiVersion: kubeadm.k8s.io/v1beta4',
      'kind: ClusterConfiguration',
      `controlPlaneEndpoint: "${ip('node1')}:6443"`,
      'networking:',
      '  podSubnet: 10.10.0.0/16',
      'apiServer:',
      '  timeoutForControlPlane: 4m0s',
      '',
    ].join('\n');
    await ok('node1', `cat > /root/kubeadm-config.yaml <<'EOF'\n${config}EOF`);
    const result = await run('node1', 'kubeadm init --config /root/kubeadm-config.yaml --upload-certs');
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.match(
      /initconfiguration\.go:\d+\] error unmarshaling configuration schema\.GroupVersionKind\{Group:"kubeadm\.k8s\.io", Version:"v1beta4", Kind:"ClusterConfiguration"\}: strict decoding error: unknown field "apiServer\.timeoutForControlPlane"/,
    );
    const ca = new X509Certificate(await ok('node1', 'cat /etc/kubernetes/pki/ca.crt'));
    caHash = `sha256:${createHash('sha256').update(ca.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}`;
    expect(ca.subject).to.equal('CN=kubernetes');
    const match = /\[upload-certs\] Using certificate key:\n([0-9a-f]{64})\n/.exec(result.stdout);
    expect(match, result.stdout).to.not.equal(null);
    certificateKey = match![1]!;
    const token = /\[bootstrap-token\] Using token: ([a-z0-9]{6}\.[a-z0-9]{16})\n/.exec(result.stdout)![1];
    expect(result.stdout).to.include(
      'You can now join any number of control-plane nodes running the following command on each as root:\n\n' +
        `  kubeadm join ${ip('node1')}:6443 --token ${token} \\\n\t--discovery-token-ca-cert-hash ${caHash} \\\n\t--control-plane --certificate-key ${certificateKey}\n\n` +
        'Please note that the certificate-key gives access to cluster sensitive data, keep it secret!\n',
    );
    expect(result.stdout).to.match(new RegExp(`kubeadm join ${ip('node1')}:6443 --token ${token} \\\\\n\t--discovery-token-ca-cert-hash ${caHash} \n$`));
    const apiserver = new X509Certificate(await ok('node1', 'cat /etc/kubernetes/pki/apiserver.crt'));
    expect(apiserver.checkIssued(ca)).to.equal(true);
    expect(apiserver.subjectAltName).to.include(`IP Address:${ip('node1')}`);
    expect(await ok('node1', 'ls /etc/kubernetes')).to.equal(
      'admin.conf\ncontroller-manager.conf\nkubelet.conf\nmanifests\npki\nscheduler.conf\nsuper-admin.conf\n',
    );
    expect(await ok('node1', 'curl -sk https://127.0.0.1:6443/readyz')).to.equal('ok');
  });

  it('refuses a second init with Port-6443 and FileAvailable errors', async function () {
    const result = await run('node1', 'kubeadm init --ignore-preflight-errors=NumCPU');
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include('\t[ERROR Port-6443]: Port 6443 is in use\n');
    expect(result.stderr).to.include(
      '\t[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists\n',
    );
    expect(result.stderr).to.include('\t[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty\n');
  });

  it('joins node2 as a worker with a fresh token; nodes are NotReady until a CNI config exists', async function () {
    const join = (await ok('node1', 'kubeadm token create --ttl 15m --print-join-command')).trimEnd();
    expect(join).to.match(new RegExp(`^kubeadm join ${ip('node1')}:6443 --token [a-z0-9]{6}\\.[a-z0-9]{16} --discovery-token-ca-cert-hash ${caHash}$`));
    const result = await run('node2', join);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.include('This node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response was received.\n');
    expect(await ok('node2', 'test -e /etc/kubernetes/bootstrap-kubelet.conf || echo gone; readlink /var/lib/kubelet/pki/kubelet-client-current.pem')).to.match(/^gone\n\/var\/lib\/kubelet\/pki\/kubelet-client-[\d-]+\.pem\n$/);
    await ok('node1', `for i in $(seq 30); do ${admin} kubectl get nodes node2 >/dev/null 2>&1 && break; sleep 1; done`);
    const nodes = await ok('node1', `${admin} kubectl get nodes`);
    expect(nodes).to.match(/^NAME    STATUS     ROLES           AGE   VERSION\nnode1   NotReady   control-plane   \S+ +v1\.34\.1\nnode2   NotReady   <none>          \S+ +v1\.34\.1\n$/);
    const list = await ok('node1', 'kubeadm token list');
    expect(list.split('\n')[0]).to.equal('TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION                                                EXTRA GROUPS');
  });

  it('applies weave\'s `kind: List` manifest item by item; nodes are Ready once its init container has written the CNI config', async function () {
    // The lab's Weave Net manifest, in the shape of the real one: one List (RBAC objects, then the
    // DaemonSet, whose init container weave-init mounts the host's /etc).
    const cni = readFileSync(new URL('../fixtures/cni/weave-lab.yaml', import.meta.url), 'utf8');
    const objects = ['serviceaccount/weave-net', 'clusterrole.rbac.authorization.k8s.io/weave-net', 'clusterrolebinding.rbac.authorization.k8s.io/weave-net',
      'role.rbac.authorization.k8s.io/weave-net', 'rolebinding.rbac.authorization.k8s.io/weave-net', 'daemonset.apps/weave-net'];
    const applied = await ok('node1', `${admin} kubectl apply -f - <<'EOF'\n${cni}EOF`);
    expect(applied).to.equal(objects.map((o) => `${o} created\n`).join(''));
    expect(await ok('node1', `${admin} kubectl get clusterrolebinding weave-net --no-headers`)).to.match(/^weave-net +ClusterRole\/weave-net +\S+\n$/);
    expect(await ok('node1', `${admin} kubectl wait --for=condition=Ready nodes --all --timeout=60s`)).to.equal(
      'node/node1 condition met\nnode/node2 condition met\n',
    );
    expect(await ok('node2', 'ls /etc/cni/net.d')).to.equal('10-weave-net.conflist\n');
    expect(await ok('node1', `${admin} kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'`)).to.equal('node1=True\nnode2=True\n');
    expect(await ok('node1', `${admin} kubectl apply -f - <<'EOF'\n${cni}EOF`)).to.equal(objects.map((o) => `${o} unchanged\n`).join(''));
  });

  it('keeps a node NotReady while a plugin its CNI config names is missing from /opt/cni/bin', async function () {
    const readyMessage = `${admin} kubectl get node node2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message}'`;
    expect(await ok('node2', 'ls /opt/cni/bin | tr "\\n" " "')).to.equal(
      'bandwidth bridge dhcp dummy firewall host-device host-local ipvlan loopback macvlan portmap ptp sbr static tap tuning vlan vrf weave-net ',
    );
    await ok('node2', 'mv /opt/cni/bin/weave-net /root/weave-net');
    try {
      await ok('node1', `for i in $(seq 30); do ${readyMessage} | grep -q ^False && break; sleep 1; done`);
      expect(await ok('node1', readyMessage)).to.equal(
        'False container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized',
      );
    } finally {
      await ok('node2', 'mv /root/weave-net /opt/cni/bin/weave-net');
    }
    expect(await ok('node1', `${admin} kubectl wait --for=condition=Ready node/node2 --timeout=60s`)).to.equal('node/node2 condition met\n');
  });

  it('rejects unknown flags as kubectl and kubelet do, and takes --flag value as well as --flag=value', async function () {
    const kubectl = await run('node1', `${admin} kubectl get nodes --foo`);
    expect([kubectl.code, kubectl.stdout, kubectl.stderr]).to.deep.equal([1, '', "error: unknown flag: --foo\nSee 'kubectl get --help' for usage.\n"]);
    const short = await run('node1', `${admin} kubectl get nodes -x`);
    expect([short.code, short.stderr]).to.deep.equal([1, "error: unknown shorthand flag: 'x' in -x\nSee 'kubectl get --help' for usage.\n"]);
    const afterValue = await run('node1', 'kubectl --kubeconfig /etc/kubernetes/admin.conf wait --bogus nodes');
    expect([afterValue.code, afterValue.stderr]).to.deep.equal([1, "error: unknown flag: --bogus\nSee 'kubectl wait --help' for usage.\n"]);
    expect(await ok('node1', `kubectl --kubeconfig /etc/kubernetes/admin.conf get node node2 --output jsonpath={.metadata.name}`)).to.equal('node2');
    expect(await ok('node1', `kubectl --kubeconfig=/etc/kubernetes/admin.conf get node node2 -ojsonpath={.metadata.name}`)).to.equal('node2');
    const kubelet = await run('node1', 'kubelet --foo=1');
    expect(kubelet.code).to.equal(1);
    expect(kubelet.stderr).to.match(/^E\d{4} [\d:.]+ +\d+ run\.go:72\] "command failed" err="failed to parse kubelet flag: unknown flag: --foo"\n$/);
    const needs = await run('node1', 'kubelet --config');
    expect(needs.stderr).to.match(/"command failed" err="failed to parse kubelet flag: flag needs an argument: --config"\n$/);
  });

  it('kubelet refuses active swap with failSwapOn (the default) and crash-loops until swap is off', async function () {
    // The lab shares the machine's kernel: /proc/swaps is replaced by a bind mount, as the pi-cluster test does with /proc/cgroups.
    const swaps = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n';
    await ok('node2', `printf '${swaps}' > /run/standin-swaps && mount --bind /run/standin-swaps /proc/swaps && systemctl restart kubelet`);
    try {
      const journal = await ok('node2', 'for i in $(seq 30); do journalctl -u kubelet -o cat --no-pager --since=-30s | grep -q "swap on" && break; sleep 1; done; journalctl -u kubelet -o cat --no-pager --since=-30s');
      expect(journal).to.match(
        /E\d{4} [\d:.]+ +\d+ run\.go:72\] "command failed" err="failed to run Kubelet: running with swap on is not supported, please disable swap! or set --fail-swap-on flag to false\. \/proc\/swaps contained: \[Filename\\t\\t\\t\\tType\\t\\tSize\\t\\tUsed\\t\\tPriority \/swapfile +file\\t\\t1048572\\t\\t0\\t\\t-2\]"\n/,
      );
      expect(await ok('node2', 'curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:10248/healthz || true')).to.equal('000');
    } finally {
      await ok('node2', 'umount /proc/swaps && systemctl restart kubelet');
    }
    expect(await ok('node1', `${admin} kubectl wait --for=condition=Ready node/node2 --timeout=60s`)).to.equal('node/node2 condition met\n');
  });

  it('refuses an expired token with the real discovery error', async function () {
    const token = (await ok('node1', 'kubeadm token create --ttl 1s')).trim();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const result = await run('node3', `STANDIN_DISCOVERY_TIMEOUT=3s kubeadm join ${ip('node1')}:6443 --token ${token} --discovery-token-ca-cert-hash ${caHash}`);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(
      `error: error execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID "${token.split('.')[0]}"\nTo see the stack trace of this error execute with --v=5 or higher\n`,
    );
  });

  it('refuses a wrong CA hash', async function () {
    const token = (await ok('node1', 'kubeadm token create')).trim();
    const result = await run('node3', `kubeadm join ${ip('node1')}:6443 --token ${token} --discovery-token-ca-cert-hash sha256:${'ab'.repeat(32)}`);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(
      `error: error execution phase preflight: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "${caHash}" are pinned\n`,
    );
  });

  it('refuses a control-plane join once the certificate key expired, and accepts it after upload-certs', async function () {
    await ok('node1', 'mkdir -p /etc/standin && echo 2h1m > /etc/standin/clock-offset');
    try {
      const join = (await ok('node1', 'kubeadm token create --print-join-command')).trim();
      const refused = await run('node3', `${join} --control-plane --certificate-key ${certificateKey} --apiserver-advertise-address=${ip('node3')}`);
      expect(refused.code).to.equal(1);
      expect(refused.stdout).to.include('[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n');
      expect(refused.stderr).to.include(
        'error: error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one\n',
      );
      const uploaded = await ok('node1', 'kubeadm init phase upload-certs --upload-certs');
      const key = /^\[upload-certs\] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n\[upload-certs\] Using certificate key:\n([0-9a-f]{64})\n$/.exec(uploaded);
      expect(key, uploaded).to.not.equal(null);
      const wrong = await run('node3', `${join} --control-plane --certificate-key ${'0'.repeat(64)} --apiserver-advertise-address=${ip('node3')}`);
      expect(wrong.stderr).to.include('error downloading certs: error decoding secret data with provided key: cipher: message authentication failed\n');
      const joined = await run('node3', `${join} --control-plane --certificate-key ${key![1]} --apiserver-advertise-address=${ip('node3')}`);
      expect(joined.code, joined.stdout + joined.stderr).to.equal(0);
      expect(joined.stdout).to.include('This node has joined the cluster and a new control plane instance was created:\n');
    } finally {
      await ok('node1', 'rm -f /etc/standin/clock-offset');
    }
    expect(await ok('node3', `${admin} kubectl get nodes -o jsonpath='{.items[*].metadata.name}'`)).to.equal('node1 node2 node3');
    const ca3 = await ok('node3', 'sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/sa.key');
    const ca1 = await ok('node1', 'sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/sa.key');
    expect(ca3).to.equal(ca1);
  });

  it('untaints control planes and spreads a 3-replica deployment over the Ready nodes', async function () {
    await ok('node1', `${admin} kubectl wait --for=condition=Ready nodes --all --timeout=60s`);
    const untaint = await run('node1', `${admin} kubectl taint nodes --all node-role.kubernetes.io/control-plane-`);
    expect(untaint.stdout).to.equal('node/node1 untainted\nnode/node3 untainted\n');
    expect(untaint.stderr).to.equal('error: taint "node-role.kubernetes.io/control-plane" not found\n');
    expect(untaint.code).to.equal(1);
    expect(await ok('node1', `${admin} kubectl create deployment nginx --image=nginx --replicas 3`)).to.equal('deployment.apps/nginx created\n');
    const pods = await ok('node1', `${admin} kubectl get pods -o wide`);
    const lines = pods.trimEnd().split('\n');
    expect(lines[0]).to.match(/^NAME +READY +STATUS +RESTARTS +AGE +IP +NODE +NOMINATED NODE +READINESS GATES$/);
    expect(lines.slice(1)).to.have.length(3);
    const nodes = lines.slice(1).map((line) => line.split(/ +/));
    expect(nodes.map((cells) => cells[2])).to.deep.equal(['Running', 'Running', 'Running']);
    expect(new Set(nodes.map((cells) => cells[6]))).to.deep.equal(new Set(['node1', 'node2', 'node3']));
    // The kubelets ran their pods' data plane without dying: a crash would be a Python traceback in the journal.
    for (const host of ['node1', 'node2', 'node3']) expect(await ok(host, 'journalctl -u kubelet -o cat --no-pager | grep -c Traceback || true'), host).to.equal('0\n');
    expect(await ok('node1', `${admin} kubectl cluster-info`)).to.equal(
      `Kubernetes control plane is running at https://${ip('node1')}:6443\nCoreDNS is running at https://${ip('node1')}:6443/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy\n\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n`,
    );
  });

  it('resets a worker with kubeadm reset -f', async function () {
    const result = await run('node2', 'kubeadm reset -f');
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.include('[reset] Stopping the kubelet service\n');
    expect(await ok('node2', 'ls -A /etc/kubernetes/manifests /var/lib/kubelet; test -e /etc/kubernetes/kubelet.conf || echo no-kubelet-conf')).to.equal(
      '/etc/kubernetes/manifests:\n\n/var/lib/kubelet:\nno-kubelet-conf\n',
    );
  });
});
