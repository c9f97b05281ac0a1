import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { loadInventory, parseInventory, type Inventory } from '../../runner/inventory/index.js';
import type { Playbook } from '../../runner/playbook.js';
import { planPlaybook } from '../../runner/run.js';
import { exampleInventoryOf, labHostSpecs, sameShape } from '../../runner/lab-run.js';
import singleNode from '../../playbooks/single-node.js';
import piCluster from '../../playbooks/pi-cluster.js';
import stackedHa from '../../playbooks/stacked-ha.js';
import { LAB_VARS, VarReader, clusterSource, readClusterVars } from '../../playbooks/vars.js';
import { plays, type RecordedPlay } from '../helpers/plays.js';
import { capstan } from '../helpers/cli.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';


const inventory = (name: string) => loadInventory(fileURLToPath(new URL(`../../inventory/${name}.yaml`, import.meta.url)));
const summary = (recorded: RecordedPlay[]) => recorded.map((p) => `${p.title} @ ${p.pattern}${Object.keys(p.options).length ? ` ${JSON.stringify(p.options)}` : ''}: ${p.tasks.join(' ')}`);

const PREPARE = 'swap:off module:overlay module:br_netfilter sysctl:/etc/sysctl.d/99-kubernetes.conf';
const DOCKER_CONTAINERD = 'packages:ca-certificates,curl,gnupg apt-key* apt-repo* packages:containerd.io containerd-cgroup:/etc/containerd/config.toml service:containerd';
const PKGS_K8S_IO = 'packages:apt-transport-https,ca-certificates,curl,gnupg apt-key:/etc/apt/keyrings/kubernetes-apt-keyring.gpg apt-repo:kubernetes packages:kubeadm,kubectl,kubelet service:kubelet';

describe('playbooks: plans, variables, lab shapes (no host contacted)', () => {
  it('single-node with the seeds\' defaults: containerd.io from Docker\'s repository, pkgs.k8s.io held, Weave Net', async () => {
    expect(summary(await plays(singleNode, await inventory('single')))).to.deep.equal([
      'preflight @ control_plane:workers: preflight* certificates:expiry-warning',
      `prepare nodes @ control_plane:workers: ${PREPARE}`,
      'firewall @ control_plane:workers: firewall*',
      `container runtime @ control_plane:workers: ${DOCKER_CONTAINERD}`,
      `kubernetes packages @ control_plane:workers: ${PKGS_K8S_IO}`,
      'control plane @ control_plane[0] {"runOnce":true}: kubeadm:init service:kubelet kubeconfig:ubuntu cni local-kubeconfig:~/.kube/config:single-node',
      'join workers @ workers: kubeadm:join service:kubelet',
      'cluster ready @ control_plane[0] {"runOnce":true}: nodes-ready smoke-test',
    ]);
  });

  it('single-node with the lab\'s values: Debian\'s containerd, Kubernetes already installed (the stand-ins)', async () => {
    const recorded = await plays(singleNode, await inventory('single'), { ...LAB_VARS });
    expect(summary(recorded).slice(3, 5)).to.deep.equal([
      'container runtime @ control_plane:workers: packages:containerd containerd-cgroup:/etc/containerd/config.toml service:containerd',
      'kubernetes packages @ control_plane:workers: service:kubelet',
    ]);
  });

  it('single-node without workers untaints the control plane so the smoke test can schedule', async () => {
    const alone = parseInventory('all:\n  children:\n    control_plane:\n      hosts:\n        cp1:\n          ansible_host: 10.0.0.11\n', 'alone.yaml');
    expect(summary(await plays(singleNode, alone)).slice(-1)).to.deep.equal(['cluster ready @ control_plane[0] {"runOnce":true}: untaint-control-planes nodes-ready smoke-test']);
  });

  it('pi-cluster adds the memory cgroup (cmdline.txt + reboot where missing), and the watchdog when asked', async () => {
    const recorded = await plays(piCluster, await inventory('home'));
    expect(summary(recorded)[1]).to.equal('prepare nodes @ control_plane:workers: swap:off cgroup:memory module:overlay module:br_netfilter sysctl:/etc/sysctl.d/99-kubernetes.conf');
    expect(recorded.find((p) => p.title === 'watchdog')).to.equal(undefined);
    const withWatchdog = await plays(piCluster, await inventory('home'), { watchdog: 'true' });
    expect(summary(withWatchdog).find((p) => p.startsWith('watchdog'))).to.equal(
      'watchdog @ control_plane:workers: packages:watchdog line:/etc/watchdog.conf:^#?\\s*watchdog-device\\s*= line:/etc/watchdog.conf:^#?\\s*watchdog-timeout\\s*= line:/etc/watchdog.conf:^#?\\s*max-load-1\\s*= service:watchdog',
    );
    const docker = await plays(piCluster, await inventory('home'), { docker_engine: 'yes' });
    expect(summary(docker)[3]).to.equal(
      'container runtime @ control_plane:workers: packages:ca-certificates,curl,gnupg apt-key* apt-repo* packages:containerd.io,docker-ce,docker-ce-cli containerd-cgroup:/etc/containerd/config.toml service:containerd docker-cgroup:/etc/docker/daemon.json service:docker',
    );
  });

  it('stacked-ha with a balancer group is seed 002: haproxy on the balancer, iptables-legacy, node-ip, control planes joined one at a time', async () => {
    expect(summary(await plays(stackedHa, await inventory('ha')))).to.deep.equal([
      'preflight @ control_plane:workers: preflight* certificates:expiry-warning',
      'preflight (balancer) @ balancer: preflight certificates:expiry-warning',
      'firewall @ control_plane:workers: firewall*',
      'firewall (balancer) @ balancer: firewall:ports',
      `prepare nodes @ control_plane:workers: ${PREPARE} packages:arptables,ebtables,iptables alternatives:iptables alternatives:ip6tables alternatives:arptables alternatives:ebtables`,
      'RHEL-family hosts @ control_plane:workers: selinux yum-repo* rpm-packages* yum-repo:kubernetes rpm-packages:kubeadm,kubectl,kubelet',
      `container runtime @ control_plane:workers: ${DOCKER_CONTAINERD}`,
      `kubernetes packages @ control_plane:workers: ${PKGS_K8S_IO} kubelet-extra-args*`,
      'load balancer @ balancer: packages:haproxy rpm-packages:haproxy file:/etc/haproxy/haproxy.cfg service:haproxy',
      'first control plane @ control_plane[0] {"runOnce":true}: kubeadm:init service:kubelet kubeconfig:vagrant cni local-kubeconfig:~/.kube/config:stacked-ha',
      'join control planes @ control_plane[1:] {"serial":1}: kubeadm:join service:kubelet kubeconfig:vagrant',
      'join workers @ workers: kubeadm:join service:kubelet',
      'cluster ready @ control_plane[0] {"runOnce":true}: untaint-control-planes nodes-ready smoke-test',
    ]);
  });

  it('stacked-ha with vip_address is seed 004: names, /etc/hosts, haproxy and keepalived on every control plane', async () => {
    const recorded = summary(await plays(stackedHa, await inventory('ha-vip'), { ...LAB_VARS }));
    expect(recorded[2]).to.equal('names and addresses @ control_plane:workers: hosts:node1.internal,node2.internal,node3.internal,node4.internal,node5.internal,k8s-cp.internal hostname*');
    expect(recorded[7]).to.equal(
      'VIP: haproxy and keepalived @ control_plane: packages:curl,haproxy,keepalived rpm-packages:curl,haproxy,keepalived file:/etc/haproxy/haproxy.cfg service:haproxy file:/etc/keepalived/check_apiserver.sh keepalived-config* service:keepalived',
    );
    expect(recorded.slice(-3)).to.deep.equal([
      'join control planes @ control_plane[1:] {"serial":1}: kubeadm:join service:kubelet kubeconfig:root',
      'join workers @ workers: kubeadm:join service:kubelet',
      'cluster ready @ control_plane[0] {"runOnce":true}: nodes-ready smoke-test',
    ]);
  });

  it('every playbook plans against its example inventories, with the defaults and with the lab\'s values', async () => {
    for (const [book, names] of [[singleNode, ['single']], [piCluster, ['home']], [stackedHa, ['ha', 'ha-vip']]] as const) {
      for (const name of names) {
        for (const extraVars of [{}, { ...LAB_VARS }]) {
          await planPlaybook(book, { inventory: await inventory(name), checkMode: true, extraVars });
        }
      }
    }
  });

  it('rejects bad variables before any host is contacted, naming the variable and where it came from', async () => {
    const single = await inventory('single');
    const plan = (book: Playbook, inv: Inventory, extraVars: Record<string, unknown>) => planPlaybook(book, { inventory: inv, checkMode: false, extraVars });
    await expectRejected(plan(singleNode, single, { cni: 'wave' }), 'variable cni (vars of k8s-01 with -e) must be one of weave, calico, flannel, cilium, got "wave"');
    await expectRejected(plan(singleNode, single, { pod_network_cidr: '10.10.0.0' }), 'variable pod_network_cidr (vars of k8s-01 with -e) must be an IPv4 CIDR like 10.10.0.0/16, got "10.10.0.0"');
    await expectRejected(plan(singleNode, single, { containerd_source: 'dockr' }), 'variable containerd_source (vars of k8s-01 with -e) must be one of docker, distro, got "dockr"');
    await expectRejected(plan(singleNode, single, { kubernetes_version: 'latest' }), 'variable kubernetes_version (vars of k8s-01 with -e) must be a Kubernetes version like 1.34, got "latest"');
    await expectRejected(plan(singleNode, single, { smoke_test: 'maybe' }), 'variable smoke_test (vars of k8s-01 with -e) must be true or false, got "maybe"');
    await expectRejected(plan(singleNode, single, { cni: 'cilium' }), 'cni cilium has no plain upstream manifest: set cni_manifest_url (vars of k8s-01 with -e)');
    await expectRejected(plan(stackedHa, await inventory('ha'), { vip_address: '10.0.0.100' }), 'stacked-ha.ts: the inventory has both a balancer group and vip_address: pick one (seed 002 or seed 004)');
    await expectRejected(plan(stackedHa, await inventory('single'), {}), 'stacked-ha.ts needs a load balancer in front of the API servers: a balancer group (seed 002, inventory/ha.yaml) or vip_address (seed 004, inventory/ha-vip.yaml)');
    await expectRejected(plan(stackedHa, await inventory('ha-vip'), { vip_address: 'k8s-cp' }), 'variable vip_address (vars of node1 with -e) must be an IP address, got "k8s-cp"');
    await expectRejected(plan(singleNode, await inventory('single'), { cni_manifest_url: 'http://mirror/{cni}.yaml' }), 'variable cni_manifest_url (vars of k8s-01 with -e) must be an https:// URL (or file:/// on this machine; plain http is refused), got "http://mirror/{cni}.yaml"');
    await expectRejected(plan(singleNode, await inventory('single'), { cni_manifest_sha256: 'abc' }), 'variable cni_manifest_sha256 (vars of k8s-01 with -e) must be 64 hex digits (the manifest\'s sha256), got "abc"');
    await expectRejected(plan(singleNode, await inventory('ha-vip'), {}), 'single-node.ts sets up one control plane, but control_plane lists node1, node2, node3: use playbooks/stacked-ha.ts for several');
  });

  it('reads -e strings as the types the variables have, and {cni} in the manifest URL', async () => {
    const vars = readClusterVars(new VarReader({ fetch_kubeconfig: 'no', nodes_ready_timeout: '120', preflight_port_owners: 'a,b', cni: 'calico', cni_manifest_url: 'https://mirror/{cni}.yaml', cni_manifest_sha256: 'AB'.repeat(32) }, 'test'), {
      podNetworkCidr: '10.10.0.0/16',
      cni: 'weave',
      kubeconfigContext: 'x',
      untaintControlPlanes: false,
    });
    expect([vars.fetchKubeconfig, vars.nodesReadyTimeout, vars.preflightPortOwners, vars.cniManifestUrl, vars.cniManifestSha256]).to.deep.equal([false, 120, ['a', 'b'], 'https://mirror/calico.yaml', 'AB'.repeat(32)]);
    expect(vars.kubeconfigUser).to.equal('root');
    const single = await inventory('single');
    expect(readClusterVars(clusterSource({ inventory: single, extraVars: {} }), { podNetworkCidr: '10.10.0.0/16', cni: 'weave', kubeconfigContext: 'x', untaintControlPlanes: false }).kubeconfigUser).to.equal('ubuntu');
  });
});

describe('capstan run --lab: lab hosts shaped like an example inventory', () => {
  const shape = { hostAddress: (i: number) => `10.77.9.${11 + i}`, vip: '10.77.9.10', vars: { ...LAB_VARS, kubeconfig_path: '/lab/kubeconfig' } };

  it('names each playbook\'s example inventory', async () => {
    expect(await exampleInventoryOf('playbooks/single-node.ts')).to.match(/\/inventory\/single\.yaml$/);
    expect(await exampleInventoryOf('playbooks/pi-cluster.ts')).to.match(/\/inventory\/home\.yaml$/);
    expect(await exampleInventoryOf('playbooks/stacked-ha.ts')).to.match(/\/inventory\/ha\.yaml$/);
    await expectRejected(exampleInventoryOf('test/fixtures/playbooks/files.ts'), /names no example inventory .* pass -i/);
  });

  it('keeps names, groups and variables; puts the lab\'s addresses (and VIP) where the example\'s were; drops connection vars', async () => {
    const specs = labHostSpecs(await inventory('ha-vip'), shape);
    expect(specs.map((s) => [s.name, s.groups, s.vars!.ip, s.vars!.hostname])).to.deep.equal([
      ['node1', ['control_plane'], '10.77.9.11', 'node1.internal'],
      ['node2', ['control_plane'], '10.77.9.12', 'node2.internal'],
      ['node3', ['control_plane'], '10.77.9.13', 'node3.internal'],
      ['node4', ['workers'], '10.77.9.14', 'node4.internal'],
      ['node5', ['workers'], '10.77.9.15', 'node5.internal'],
    ]);
    expect(specs[0]!.vars).to.deep.equal({
      kubernetes_version: '1.34',
      pod_network_cidr: '10.244.0.0/16',
      cni: 'flannel',
      vip_address: '10.77.9.10',
      vip_port: 8888,
      vip_hostname: 'k8s-cp.internal',
      vip_router_id: 5,
      vip_auth_pass: 'ZqSj#f1G',
      iptables_legacy: false,
      hostname: 'node1.internal',
      ip: '10.77.9.11',
      ...LAB_VARS,
      kubeconfig_path: '/lab/kubeconfig',
    });
  });

  it('replaces example addresses wherever a var holds one (an endpoint host:port), and flattens nested groups', () => {
    const example = parseInventory(
      [
        'all:',
        '  vars:',
        '    ansible_user: pi',
        '    control_plane_endpoint: 192.168.1.10:6443',
        '  children:',
        '    k8s:',
        '      children:',
        '        control_plane:',
        '          hosts:',
        '            a: { ansible_host: 192.168.1.11, ansible_port: 2222 }',
        '        workers:',
        '          hosts:',
        '            b: { ansible_host: 192.168.1.12, ip: 192.168.1.22 }',
        '    balancer:',
        '      hosts:',
        '        lb: { ansible_host: 192.168.1.10 }',
      ].join('\n'),
      'nested.yaml',
    );
    const specs = labHostSpecs(example, { ...shape, vars: {} });
    expect(specs).to.deep.equal([
      { name: 'a', groups: ['control_plane', 'k8s'], vars: { control_plane_endpoint: '10.77.9.13:6443', ip: '10.77.9.11' } },
      { name: 'b', groups: ['k8s', 'workers'], vars: { control_plane_endpoint: '10.77.9.13:6443', ip: '10.77.9.12' } },
      { name: 'lb', groups: ['balancer'], vars: { control_plane_endpoint: '10.77.9.13:6443', ip: '10.77.9.13' } },
    ]);
  });

  it('reuses a lab only when its hosts, groups and vars are the ones wanted', async () => {
    const specs = labHostSpecs(await inventory('single'), shape);
    const up = specs.map((s) => ({ name: s.name, groups: [...s.groups!], vars: { ...s.vars! } }));
    expect(sameShape(up, specs)).to.equal(true);
    expect(sameShape(up.slice(1), specs)).to.equal(false);
    expect(sameShape([{ ...up[0]!, vars: { ...up[0]!.vars, cni: 'calico' } }, ...up.slice(1)], specs)).to.equal(false);
  });
});

async function expectRejected(promise: Promise<unknown>, message: string | RegExp): Promise<void> {
  let error: unknown;
  try {
    await promise;
  } catch (caught) {
    error = caught;
  }
  expect(error, 'expected a rejection').to.be.instanceOf(Error);
  if (typeof message === 'string') expect((error as Error).message).to.equal(message);
  else expect((error as Error).message).to.match(message);
}

describe('addresses: every node address the playbooks need is an IP, checked before any host is contacted (CLI)', () => {
  // Hosts are 127.0.0.1:1 (connections refused) or unresolvable names: a run that tried to connect would exit 4, not 1.
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-addresses-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('single-node: a control plane whose ansible_host is a name (pi-01.local): exit 1 naming the inventory, host and variable', async function () {
    this.timeout(30_000);
    const path = write('pi.yaml', 'all:\n  children:\n    control_plane:\n      hosts:\n        pi-01:\n          ansible_host: pi-01.local\n');
    const result = await capstan(['run', 'playbooks/single-node.ts', '-i', path]);
    expect(result.code, result.stderr + result.stdout).to.equal(1);
    expect(result.stderr).to.include(`inventory ${path}: host pi-01: ansible_host is "pi-01.local", not an IP address; set ip to the host's IP address (ansible_host may stay a name for SSH)`);
    expect(result.stdout).to.equal('');
  });

  it('stacked-ha: a worker whose ip is a name, though SSH would reach it: exit 1 naming the host and ip', async function () {
    this.timeout(30_000);
    const hosts = ['cp1', 'cp2'].map((h, i) => `        ${h}:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n          ip: 10.0.0.${11 + i}\n`).join('');
    const path = write('ha.yaml', `all:\n  vars:\n    vip_address: 10.0.0.100\n  children:\n    control_plane:\n      hosts:\n${hosts}    workers:\n      hosts:\n        w1:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n          ip: w1.example\n`);
    const result = await capstan(['run', 'playbooks/stacked-ha.ts', '-i', path]);
    expect(result.code, result.stderr + result.stdout).to.equal(1);
    expect(result.stderr).to.include(`inventory ${path}: host w1: ip is "w1.example", not an IP address; set ip to the host's IP address`);
    expect(result.stdout).to.equal('');
  });

  it('a name in ansible_host is fine where ip gives the address (pure planning)', async () => {
    const inv = parseInventory('all:\n  children:\n    control_plane:\n      hosts:\n        pi-01:\n          ansible_host: pi-01.local\n          ip: 192.168.0.150\n', 'named.yaml');
    await planPlaybook(singleNode, { inventory: inv, checkMode: true, extraVars: {} });
  });
});
