import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, type LabState } from '../../runner/lab/index.js';
import { buildKubernetesRepo, serveKubernetesRepo, type KubernetesRepo, type ServedRepo } from '../../runner/lab/kubernetes-repo.js';
import { GATEWAY } from '../../runner/lab/paths.js';
import { skipUnlessLabSupported, sshToLab, withLab, type SshResult } from '../helpers/lab.js';

/**
 * Cluster upgrades on lab hosts, by hand over OpenSSH, the way the kubeadm documentation does them:
 * kubeadm, kubelet and kubectl installed as packages from the lab's pkgs.k8s.io-shaped repository
 * (v1.34), a 3-node cluster (node1 and node2 control planes, node3 a worker), then the repository
 * switched to v1.35 and every node upgraded: `kubeadm upgrade plan`, `upgrade apply` on node1 (and
 * its refusals: a kubeadm older than the target, a skipped minor, a downgrade), `upgrade node` on
 * node2 and node3, and per node cordon, drain, kubelet package, restart, uncordon.
 */
describe('Kubernetes upgrades with the stand-ins installed from the lab package repository', function () {
  this.timeout(900_000);
  let lab: LabState;
  let scratch: string;
  let built: KubernetesRepo;
  let repo: ServedRepo;
  const admin = 'KUBECONFIG=/etc/kubernetes/admin.conf';
  const hosts = ['node1', 'node2', 'node3'];
  const keyring = '/etc/apt/keyrings/kubernetes-apt-keyring.gpg';
  let ip: (host: string) => string;

  async function run(host: string, command: string): Promise<SshResult> {
    return sshToLab(lab, host, command);
  }

  async function ok(host: string, command: string): Promise<string> {
    const result = await run(host, command);
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }

  const minorUrl = (minor: string) => `${repo.url}/core:/stable:/${minor}/deb/`;
  const install = (packages: string[], version: string) =>
    `apt-mark unhold ${packages.join(' ')} >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${packages.map((p) => `${p}=${version}`).join(' ')} >/dev/null && apt-mark hold ${packages.join(' ')} >/dev/null`;
  const kubeletVersion = (node: string) => ok('node1', `${admin} kubectl get node ${node} -o jsonpath='{.status.nodeInfo.kubeletVersion}'`);
  const unschedulable = (node: string) => ok('node1', `${admin} kubectl get node ${node} -o jsonpath='{.spec.unschedulable}'`);
  const images = (host: string) =>
    ok(host, "for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do printf '%s ' $c; sed -n 's/^ *image: //p' /etc/kubernetes/manifests/$c.yaml; done");

  before(async function () {
    skipUnlessLabSupported(this);
    scratch = mkdtempSync(join(tmpdir(), 'capstan-k8s-repo-'));
    [lab, built] = await Promise.all([withLab(3), buildKubernetesRepo(scratch)]);
    repo = await serveKubernetesRepo(built.dir, GATEWAY);
    ip = (host) => lab.hosts.find((candidate) => candidate.name === host)!.address;
    await Promise.all(
      hosts.map((host) =>
        ok(
          host,
          // The lab's repository is fetched directly, not through apt-cacher-ng (which only knows Debian's mirror).
          `printf '%s\\n' 'Acquire::http::Proxy::${GATEWAY} "DIRECT";' > /etc/apt/apt.conf.d/99capstan-lab-repo && ` +
            // The seeds' containerd setup: SystemdCgroup = true, as kubeadm's kubelet uses systemd (the stand-in refuses a mismatch).
            'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null && ' +
            'containerd config default | sed "s/SystemdCgroup = false/SystemdCgroup = true/" > /etc/containerd/config.toml && systemctl restart containerd && sysctl -qw net.ipv4.ip_forward=1',
        ),
      ),
    );
  });

  after(async function () {
    await repo?.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('installs kubeadm, kubelet and kubectl 1.34.1 from the signed v1.34 repository, held, each reporting its package version', async function () {
    await Promise.all(
      hosts.map((host) =>
        ok(
          host,
          `mkdir -p -m 755 /etc/apt/keyrings && curl -fsSL '${minorUrl('v1.34')}Release.key' | gpg --dearmor -o ${keyring} && ` +
            `echo 'deb [signed-by=${keyring}] ${minorUrl('v1.34')} /' > /etc/apt/sources.list.d/kubernetes.list && apt-get update -qq && ` +
            `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubelet=1.34.1-1.1 kubeadm=1.34.1-1.1 kubectl=1.34.1-1.1 >/dev/null && apt-mark hold kubelet kubeadm kubectl`,
        ),
      ),
    );
    expect(await ok('node1', 'apt-cache madison kubeadm')).to.equal(
      `   kubeadm | 1.34.2-1.1 | ${repo.url}/core:/stable:/v1.34/deb  Packages\n   kubeadm | 1.34.1-1.1 | ${repo.url}/core:/stable:/v1.34/deb  Packages\n`,
    );
    for (const host of hosts) {
      expect(await ok(host, "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' kubeadm kubelet kubectl; apt-mark showhold")).to.equal(
        'kubeadm 1.34.1-1.1 hi \nkubectl 1.34.1-1.1 hi \nkubelet 1.34.1-1.1 hi \nkubeadm\nkubectl\nkubelet\n',
      );
      expect(await ok(host, 'kubeadm version -o short; kubelet --version; kubectl version --client; systemctl is-enabled kubelet')).to.equal(
        'v1.34.1\nKubernetes v1.34.1\nClient Version: v1.34.1\nKustomize Version: v5.7.1\nenabled\n',
      );
    }
    // apt fetched the signed index itself, from each host.
    const fetched = repo.requests.filter((r) => r.path === '/core:/stable:/v1.34/deb/InRelease').map((r) => r.from);
    expect([...new Set(fetched)].sort()).to.deep.equal(hosts.map(ip).sort());
  });

  it('builds a v1.34.1 cluster: node1 init, node2 control-plane join, node3 worker join, a CNI and two nginx replicas', async function () {
    const config = [
      'apiVersion: kubeadm.k8s.io/v1beta4', 'kind: InitConfiguration', 'localAPIEndpoint:', `  advertiseAddress: ${ip('node1')}`, '---',
      'apiVersion: kubeadm.k8s.io/v1beta4', 'kind: ClusterConfiguration', `controlPlaneEndpoint: "${ip('node1')}:6443"`,
      'networking:', '  podSubnet: 10.10.0.0/16', '',
    ].join('\n');
    await ok('node1', `cat > /root/kubeadm-config.yaml <<'EOF'\n${config}EOF`);
    const init = await ok('node1', 'kubeadm init --config /root/kubeadm-config.yaml --upload-certs');
    const certificateKey = /\[upload-certs\] Using certificate key:\n([0-9a-f]{64})\n/.exec(init)![1];
    const join = (await ok('node1', 'kubeadm token create --ttl 15m --print-join-command')).trim();
    await ok('node2', `${join} --control-plane --certificate-key ${certificateKey} --apiserver-advertise-address=${ip('node2')}`);
    await ok('node3', join);
    const cni = [
      'apiVersion: apps/v1', 'kind: DaemonSet', 'metadata:', '  name: weave-net', '  namespace: kube-system', 'spec:',
      '  selector:', '    matchLabels:', '      name: weave-net', '  template:', '    metadata:', '      labels:', '        name: weave-net',
      '    spec:', '      hostNetwork: true', '      tolerations:', '      - operator: Exists', '      containers:', '      - name: weave',
      '        image: weaveworks/weave-kube:2.8.1', '        volumeMounts:', '        - name: cni-conf', '          mountPath: /host/etc/cni/net.d',
      '      volumes:', '      - name: cni-conf', '        hostPath:', '          path: /etc/cni/net.d', '',
    ].join('\n');
    await ok('node1', `${admin} kubectl apply -f - <<'EOF'\n${cni}EOF`);
    await ok('node1', `${admin} kubectl wait --for=condition=Ready nodes --all --timeout=120s`);
    await ok('node1', `${admin} kubectl taint nodes node1 node-role.kubernetes.io/control-plane- && ${admin} kubectl taint nodes node2 node-role.kubernetes.io/control-plane-`);
    await ok('node1', `${admin} kubectl create deployment nginx --image=nginx --replicas 2`);
    expect(await ok('node1', `${admin} kubectl get nodes`)).to.match(
      /^NAME +STATUS +ROLES +AGE +VERSION\nnode1 +Ready +control-plane +\S+ +v1\.34\.1\nnode2 +Ready +control-plane +\S+ +v1\.34\.1\nnode3 +Ready +<none> +\S+ +v1\.34\.1\n$/,
    );
    expect(await ok('node1', `${admin} kubectl version`)).to.equal('Client Version: v1.34.1\nKustomize Version: v5.7.1\nServer Version: v1.34.1\n');
  });

  let manifestsBefore = '';

  it('kubeadm 1.34.1 says the v1.34.1 cluster is up to date and refuses to apply v1.35.0, changing nothing', async function () {
    const plan = await run('node1', 'kubeadm upgrade plan');
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.stdout).to.equal(
      '[preflight] Running pre-flight checks.\n' +
        '[upgrade] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...\n' +
        "[upgrade] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n" +
        '[upgrade] Running cluster health checks\n[upgrade] Fetching available versions to upgrade to\n' +
        '[upgrade/versions] Cluster version: v1.34.1\n[upgrade/versions] kubeadm version: v1.34.1\n[upgrade/versions] Target version: v1.34.1\n' +
        '[upgrade/versions] Latest version in the v1.34 series: v1.34.1\n\n' +
        "Awesome, you're up-to-date! Enjoy!\n",
    );
    manifestsBefore = await ok('node1', 'sha256sum /etc/kubernetes/manifests/*.yaml');
    const refused = await run('node1', 'kubeadm upgrade apply v1.35.0 -y');
    expect(refused.code).to.equal(1);
    expect(refused.stdout).to.equal(
      '[upgrade] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...\n' +
        "[upgrade] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n" +
        '[upgrade/preflight] Running preflight checks\n[upgrade] Running cluster health checks\n' +
        '[upgrade/preflight] You have chosen to upgrade the cluster version to "v1.35.0"\n' +
        '[upgrade/versions] Cluster version: v1.34.1\n[upgrade/versions] kubeadm version: v1.34.1\n',
    );
    expect(refused.stderr).to.equal(
      'error: error execution phase preflight: the version argument is invalid due to these fatal errors:\n\n' +
        '\t- Specified version to upgrade to "v1.35.0" is at least one minor release higher than the kubeadm minor release (35 > 34). Such an upgrade is not supported\n\n' +
        'Please fix the misalignments highlighted above and try upgrading again\nTo see the stack trace of this error execute with --v=5 or higher\n',
    );
    expect(await ok('node1', 'sha256sum /etc/kubernetes/manifests/*.yaml')).to.equal(manifestsBefore);
  });

  it('switches every node to the v1.35 repository; node1 gets kubeadm 1.35.0 beside kubelet 1.34.1', async function () {
    await Promise.all(
      hosts.map((host) => ok(host, `echo 'deb [signed-by=${keyring}] ${minorUrl('v1.35')} /' > /etc/apt/sources.list.d/kubernetes.list && apt-get update -qq`)),
    );
    expect(await ok('node1', 'apt-cache madison kubeadm')).to.equal(
      `   kubeadm | 1.35.1-1.1 | ${repo.url}/core:/stable:/v1.35/deb  Packages\n   kubeadm | 1.35.0-1.1 | ${repo.url}/core:/stable:/v1.35/deb  Packages\n`,
    );
    await ok('node1', install(['kubeadm'], '1.35.0-1.1'));
    expect(await ok('node1', 'kubeadm version -o short; kubelet --version; kubectl version --client')).to.equal(
      'v1.35.0\nKubernetes v1.34.1\nClient Version: v1.34.1\nKustomize Version: v5.7.1\n',
    );
  });

  it('kubeadm upgrade plan shows the v1.35.0 upgrade, node by node', async function () {
    const plan = await run('node1', 'kubeadm upgrade plan');
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.stdout).to.include('[upgrade/versions] Cluster version: v1.34.1\n[upgrade/versions] kubeadm version: v1.35.0\n[upgrade/versions] Target version: v1.35.0\n');
    expect(plan.stdout).to.include(
      "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':\n" +
        'COMPONENT   NODE    CURRENT   TARGET\n' +
        'kubelet     node1   v1.34.1   v1.35.0\n' +
        'kubelet     node2   v1.34.1   v1.35.0\n' +
        'kubelet     node3   v1.34.1   v1.35.0\n\n' +
        'Upgrade to the latest stable version:\n\n' +
        'COMPONENT                 NODE    CURRENT   TARGET\n' +
        'kube-apiserver            node1   v1.34.1   v1.35.0\n' +
        'kube-apiserver            node2   v1.34.1   v1.35.0\n' +
        'kube-controller-manager   node1   v1.34.1   v1.35.0\n' +
        'kube-controller-manager   node2   v1.34.1   v1.35.0\n' +
        'kube-scheduler            node1   v1.34.1   v1.35.0\n' +
        'kube-scheduler            node2   v1.34.1   v1.35.0\n' +
        'kube-proxy                        v1.34.1   v1.35.0\n' +
        'CoreDNS                           v1.12.1   v1.12.1\n' +
        'etcd                      node1   v1.34.1   v1.34.1\n' +
        'etcd                      node2   v1.34.1   v1.34.1\n\n' +
        'You can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply v1.35.0\n\n',
    );
    const skipped = await run('node1', 'kubeadm upgrade plan v1.36.0');
    expect(skipped.code).to.equal(1);
    expect(skipped.stderr).to.equal(
      'error: the version argument is invalid due to these fatal errors:\n\n' +
        '\t- Specified version to upgrade to "v1.36.0" is too high; kubeadm can upgrade only 1 minor version at a time\n' +
        '\t- Specified version to upgrade to "v1.36.0" is at least one minor release higher than the kubeadm minor release (36 > 35). Such an upgrade is not supported\n\n' +
        'Please fix the misalignments highlighted above and try upgrading again\nTo see the stack trace of this error execute with --v=5 or higher\n',
    );
  });

  it('refuses a target above kubeadm 1.35.0, a skipped minor, a NotReady control plane and no answer, before any change', async function () {
    const newer = await run('node1', 'kubeadm upgrade apply v1.35.1 -y');
    expect(newer.code).to.equal(1);
    expect(newer.stderr).to.equal(
      'error: error execution phase preflight: the version argument is invalid due to these errors:\n\n' +
        '\t- Specified version to upgrade to "v1.35.1" is higher than the kubeadm version "v1.35.0". Upgrade kubeadm first using the tool you used to install kubeadm\n\n' +
        'Can be bypassed if you pass the --force flag\nTo see the stack trace of this error execute with --v=5 or higher\n',
    );
    const skipped = await run('node1', 'kubeadm upgrade apply v1.36.0 -y');
    expect(skipped.code).to.equal(1);
    expect(skipped.stderr).to.include('\t- Specified version to upgrade to "v1.36.0" is too high; kubeadm can upgrade only 1 minor version at a time\n');
    // A NotReady control plane (its container runtime stopped) fails the health check.
    await ok('node2', 'systemctl stop containerd');
    try {
      await ok('node1', `${admin} kubectl wait --for=condition=Ready=false node/node2 --timeout=60s`);
      const unhealthy = await run('node1', 'kubeadm upgrade apply v1.35.0 -y');
      expect(unhealthy.code).to.equal(1);
      expect(unhealthy.stderr).to.equal(
        '[preflight] Some fatal errors occurred:\n\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: [node2]\n' +
          '[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n' +
          'error: error execution phase preflight: preflight checks failed\nTo see the stack trace of this error execute with --v=5 or higher\n',
      );
    } finally {
      await ok('node2', 'systemctl start containerd');
    }
    await ok('node1', `${admin} kubectl wait --for=condition=Ready node/node2 --timeout=60s`);
    const unanswered = await run('node1', 'kubeadm upgrade apply v1.35.0 </dev/null');
    expect(unanswered.code).to.equal(1);
    expect(unanswered.stdout.endsWith('[upgrade] Are you sure you want to proceed? [y/N]: ')).to.equal(true);
    expect(unanswered.stderr).to.equal(
      "error: error execution phase preflight: won't proceed; the user didn't answer (Y|y) in order to continue\nTo see the stack trace of this error execute with --v=5 or higher\n",
    );
    expect(await ok('node1', 'sha256sum /etc/kubernetes/manifests/*.yaml')).to.equal(manifestsBefore);
    expect(await ok('node1', `${admin} kubectl get cm -n kube-system kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'`)).to.include('kubernetesVersion: v1.34.1\n');
  });

  it('kubeadm upgrade apply v1.35.0 -y upgrades node1\'s control plane, the cluster configuration and kube-proxy', async function () {
    const apply = await run('node1', 'kubeadm upgrade apply v1.35.0 -y');
    expect(apply.code, apply.stdout + apply.stderr).to.equal(0);
    expect(apply.stdout).to.include('[upgrade/control-plane] Upgrading your static Pod-hosted control plane to version "v1.35.0" (timeout: 5m0s)...\n');
    for (const component of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
      expect(apply.stdout).to.match(
        new RegExp(
          `\\[upgrade/staticpods\\] Preparing for "${component}" upgrade\n` +
            `\\[upgrade/staticpods\\] Moving new manifest to "/etc/kubernetes/manifests/${component}.yaml" and backing up old manifest to "/etc/kubernetes/tmp/kubeadm-backup-manifests-[\\d-]+/${component}.yaml"\n` +
            '\\[upgrade/staticpods\\] Waiting for the kubelet to restart the component\n\\[upgrade/staticpods\\] This can take up to 5m0s\n' +
            `\\[apiclient\\] Found 1 Pods for label selector component=${component}\n\\[upgrade/staticpods\\] Component "${component}" upgraded successfully!\n`,
        ),
      );
    }
    expect(apply.stdout.endsWith(
      '[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy\n\n' +
        '[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "v1.35.0".\n\n' +
        '[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.\n',
    )).to.equal(true);
    expect(await images('node1')).to.equal(
      'etcd registry.k8s.io/etcd:v1.34.1\nkube-apiserver registry.k8s.io/kube-apiserver:v1.35.0\n' +
        'kube-controller-manager registry.k8s.io/kube-controller-manager:v1.35.0\nkube-scheduler registry.k8s.io/kube-scheduler:v1.35.0\n',
    );
    expect(await ok('node1', 'cat /etc/kubernetes/tmp/kubeadm-backup-manifests-*/kube-apiserver.yaml | sed -n "s/^ *image: //p"')).to.equal('registry.k8s.io/kube-apiserver:v1.34.1\n');
    expect(await images('node2')).to.include('kube-apiserver registry.k8s.io/kube-apiserver:v1.34.1\n');
    expect(await ok('node1', `${admin} kubectl version`)).to.equal('Client Version: v1.34.1\nKustomize Version: v5.7.1\nServer Version: v1.35.0\n');
    expect(await ok('node1', `${admin} kubectl get cm -n kube-system kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'`)).to.include('kubernetesVersion: v1.35.0\n');
    expect(await ok('node1', `${admin} kubectl get cm -n kube-system kubelet-config -o jsonpath='{.data.kubelet}'`)).to.equal(await ok('node1', 'cat /var/lib/kubelet/config.yaml'));
    expect(await ok('node1', `${admin} kubectl get ds -n kube-system kube-proxy -o jsonpath='{.spec.template.spec.containers[0].image}'`)).to.equal('registry.k8s.io/kube-proxy:v1.35.0');
    expect(await ok('node1', `${admin} kubectl get pod -n kube-system kube-apiserver-node1 -o jsonpath='{.spec.containers[0].image}'`)).to.equal('registry.k8s.io/kube-apiserver:v1.35.0');
    // The kubelets are still 1.34.1: only the packages and a restart change them.
    expect(await kubeletVersion('node1')).to.equal('v1.34.1');
  });

  it('refuses a minor downgrade once the cluster is at v1.35.0, unless forced', async function () {
    const downgrade = await run('node1', 'kubeadm upgrade apply v1.34.2 -y');
    expect(downgrade.code).to.equal(1);
    expect(downgrade.stdout).to.include('[upgrade/versions] Cluster version: v1.35.0\n[upgrade/versions] kubeadm version: v1.35.0\n');
    expect(downgrade.stderr).to.equal(
      'error: error execution phase preflight: the version argument is invalid due to these errors:\n\n' +
        '\t- Kubeadm version v1.35.0 can only be used to upgrade to Kubernetes version 1.35\n\n' +
        'Can be bypassed if you pass the --force flag\nTo see the stack trace of this error execute with --v=5 or higher\n',
    );
    expect(await images('node1')).to.include('kube-apiserver registry.k8s.io/kube-apiserver:v1.35.0\n');
  });

  it('kubeadm upgrade node upgrades node2, the other control plane', async function () {
    await ok('node2', install(['kubeadm'], '1.35.0-1.1'));
    const upgrade = await run('node2', 'kubeadm upgrade node');
    expect(upgrade.code, upgrade.stdout + upgrade.stderr).to.equal(0);
    expect(upgrade.stdout).to.include('[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version "v1.35.0"...\n');
    expect(upgrade.stdout).to.include('[upgrade/staticpods] Component "kube-apiserver" upgraded successfully!\n');
    expect(upgrade.stdout.endsWith(
      '[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n' +
        '[upgrade/addon] Skipping the addon/coredns phase. The addon will be upgraded once all control plane nodes are upgraded.\n' +
        '[upgrade] The configuration for this node was successfully upgraded!\n' +
        '[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.\n',
    )).to.equal(true);
    expect(await images('node2')).to.equal(
      'etcd registry.k8s.io/etcd:v1.34.1\nkube-apiserver registry.k8s.io/kube-apiserver:v1.35.0\n' +
        'kube-controller-manager registry.k8s.io/kube-controller-manager:v1.35.0\nkube-scheduler registry.k8s.io/kube-scheduler:v1.35.0\n',
    );
    expect(await ok('node2', `curl -sk https://${ip('node2')}:6443/version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])'`)).to.equal('v1.35.0\n');
  });

  it('drain refuses a node with DaemonSet pods without --ignore-daemonsets, leaving it cordoned', async function () {
    const refused = await run('node1', `${admin} kubectl drain node3`);
    expect(refused.code).to.equal(1);
    expect(refused.stdout).to.equal('node/node3 cordoned\n');
    const daemonPods = (await ok('node1', `${admin} kubectl get pods -n kube-system -o jsonpath='{range .items[*]}{.spec.nodeName} {.metadata.ownerReferences[0].kind} {.metadata.namespace}/{.metadata.name}{"\\n"}{end}'`))
      .split('\n')
      .filter((line) => line.startsWith('node3 DaemonSet '))
      .map((line) => line.split(' ')[2]!)
      .sort();
    expect(daemonPods).to.have.length(2);
    const text = `cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ${daemonPods.join(', ')}`;
    expect(refused.stderr).to.equal(`error: unable to drain node "node3" due to error: ${text}, continuing command...\nThere are pending nodes to be drained:\n node3\n${text}\n`);
    expect(await unschedulable('node3')).to.equal('true');
  });

  it('drains node3, upgrades it with kubeadm upgrade node and the kubelet package, and uncordons it', async function () {
    // Every pod on node3 that a Deployment owns, in the order drain evicts them (namespace, name).
    const before = await ok('node1', `${admin} kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.ownerReferences[0].kind}{"\\n"}{end}'`);
    const onNode3 = before.split('\n').filter((line) => line.endsWith(' node3 Deployment')).map((line) => line.split(' ')[0]!);
    expect(onNode3.filter((pod) => pod.startsWith('nginx-')), before).to.not.deep.equal([]);
    const drain = await run('node1', `${admin} kubectl drain node3 --ignore-daemonsets --delete-emptydir-data --timeout=60s`);
    expect(drain.code, drain.stderr).to.equal(0);
    expect(drain.stdout).to.equal(['node/node3 already cordoned', ...onNode3.map((pod) => `pod/${pod} evicted`), 'node/node3 drained', ''].join('\n'));
    expect(drain.stderr).to.match(/^Warning: ignoring DaemonSet-managed Pods: kube-system\/\S+, kube-system\/\S+\n/);
    const after = await ok('node1', `${admin} kubectl get pods -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\\n"}{end}'`);
    expect(after.split('\n').filter((line) => line.endsWith(' node3'))).to.deep.equal([]);
    expect(after.trim().split('\n')).to.have.length(2);
    expect(await ok('node1', `${admin} kubectl get nodes node3`)).to.match(/\nnode3 +Ready,SchedulingDisabled +<none> +\S+ +v1\.34\.1\n$/);

    await ok('node3', install(['kubeadm'], '1.35.0-1.1'));
    const upgrade = await run('node3', 'kubeadm upgrade node');
    expect(upgrade.code, upgrade.stdout + upgrade.stderr).to.equal(0);
    expect(upgrade.stdout).to.include(
      '[upgrade/preflight] Skipping prepull. Not a control plane node.\n[upgrade/control-plane] Skipping phase. Not a control plane node.\n' +
        '[upgrade/kubeconfig] Skipping phase. Not a control plane node.\n',
    );
    const kubeletPid = await ok('node3', 'systemctl show -p MainPID --value kubelet');
    await ok('node3', install(['kubelet', 'kubectl'], '1.35.0-1.1'));
    // The package does not restart a running kubelet: the same process, and the node still reports the old version.
    expect(await ok('node3', 'systemctl show -p MainPID --value kubelet')).to.equal(kubeletPid);
    expect(await kubeletVersion('node3')).to.equal('v1.34.1');
    await ok('node3', 'systemctl daemon-reload && systemctl restart kubelet');
    await ok('node1', `for i in $(seq 60); do [ "$(${admin} kubectl get node node3 -o jsonpath='{.status.nodeInfo.kubeletVersion}')" = v1.35.0 ] && exit 0; sleep 1; done; exit 1`);
    expect(await ok('node1', `${admin} kubectl uncordon node3`)).to.equal('node/node3 uncordoned\n');
    expect(await unschedulable('node3')).to.equal('');
    expect(await ok('node1', `${admin} kubectl uncordon node3`)).to.equal('node/node3 already uncordoned\n');
    expect(await ok('node3', "dpkg-query -W -f='${Package} ${Version}\\n' kubeadm kubelet kubectl; apt-mark showhold")).to.equal(
      'kubeadm 1.35.0-1.1\nkubectl 1.35.0-1.1\nkubelet 1.35.0-1.1\nkubeadm\nkubectl\nkubelet\n',
    );
  });

  it('upgrades the control planes\' kubelets one at a time; every node ends Ready at v1.35.0 and schedulable', async function () {
    for (const node of ['node1', 'node2']) {
      expect(await ok('node1', `${admin} kubectl cordon ${node}`)).to.equal(`node/${node} cordoned\n`);
      expect(await unschedulable(node)).to.equal('true');
      await ok('node1', `${admin} kubectl drain ${node} --ignore-daemonsets --delete-emptydir-data`);
      await ok(node, `${install(['kubelet', 'kubectl'], '1.35.0-1.1')} && systemctl daemon-reload && systemctl restart kubelet`);
      await ok('node1', `for i in $(seq 60); do [ "$(${admin} kubectl get node ${node} -o jsonpath='{.status.nodeInfo.kubeletVersion}')" = v1.35.0 ] && exit 0; sleep 1; done; exit 1`);
      await ok('node1', `${admin} kubectl wait --for=condition=Ready node/${node} --timeout=60s`);
      expect(await ok('node1', `${admin} kubectl uncordon ${node}`)).to.equal(`node/${node} uncordoned\n`);
    }
    expect(await ok('node1', `${admin} kubectl get nodes`)).to.match(
      /^NAME +STATUS +ROLES +AGE +VERSION\nnode1 +Ready +control-plane +\S+ +v1\.35\.0\nnode2 +Ready +control-plane +\S+ +v1\.35\.0\nnode3 +Ready +<none> +\S+ +v1\.35\.0\n$/,
    );
    expect(await ok('node1', 'kubeadm upgrade plan')).to.include("[upgrade/versions] Cluster version: v1.35.0\n[upgrade/versions] kubeadm version: v1.35.0\n[upgrade/versions] Target version: v1.35.0\n[upgrade/versions] Latest version in the v1.35 series: v1.35.0\n\nAwesome, you're up-to-date! Enjoy!\n");
  });
});
