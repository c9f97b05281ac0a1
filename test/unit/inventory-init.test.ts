import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../runner/errors.js';
import { parseInventory } from '../../runner/inventory/index.js';
import { initInventory, type InventoryInitRequest } from '../../runner/inventory/init.js';
import { capstan } from '../helpers/cli.js';

const request = (fields: Omit<InventoryInitRequest, 'commandLine' | 'workers'> & { workers?: string[] }): InventoryInitRequest => ({
  workers: [],
  commandLine: 'capstan inventory init (test)',
  ...fields,
});

/** host → [groups, ansible_host, ip] of an inventory text. */
function hostsOf(text: string): Record<string, [string[], unknown, unknown]> {
  const inventory = parseInventory(text, 'test');
  return Object.fromEntries(
    [...inventory.hosts.values()].map((host) => [host.name, [[...host.groups].filter((g) => g !== 'all' && g !== 'ungrouped').sort(), host.vars.ansible_host, host.vars.ip]]),
  );
}

describe('inventory init: a first inventory for each topology, from its documented example', () => {
  it('single-node: one control plane, named workers, the example vars kept, sudo for a non-root user', () => {
    const text = initInventory(request({ topology: 'single-node', controlPlanes: ['10.0.0.11'], workers: ['10.0.0.21', 'gpu=10.0.0.22'], user: 'ubuntu' }));
    expect(hostsOf(text)).to.deep.equal({
      'cp-1': [['control_plane'], '10.0.0.11', undefined],
      'worker-1': [['workers'], '10.0.0.21', undefined],
      gpu: [['workers'], '10.0.0.22', undefined],
    });
    const vars = parseInventory(text, 'test').hosts.get('cp-1')!.vars;
    expect(vars).to.include({ ansible_user: 'ubuntu', ansible_become: true, kubernetes_version: '1.34', cni: 'weave', pod_network_cidr: '10.10.0.0/16' });
    // The example's comments stay (what each variable does), and the header says how the file was made.
    expect(text).to.match(/^# Inventory for playbooks\/single-node\.ts, written by:\n#   capstan inventory init \(test\)\n/);
    expect(text).to.include('kubernetes_version: "1.34" # pkgs.k8s.io/core:/stable:/v1.34, kubelet kubeadm kubectl held');
    expect(text).not.to.include('172.31.57.89'); // none of the example's hosts
  });

  it('pi-cluster without workers: an empty workers group, as the examples write one', () => {
    const text = initInventory(request({ topology: 'pi-cluster', controlPlanes: ['pi-01=192.168.1.50'] }));
    expect(hostsOf(text)).to.deep.equal({ 'pi-01': [['control_plane'], '192.168.1.50', undefined] });
    expect(text).to.include('    workers:\n      hosts: {}\n');
  });

  it('stacked-ha with --vip: the keepalived variant, with a fresh VRRP password instead of the example\'s', () => {
    const text = initInventory(request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.11', '10.0.0.12', '10.0.0.13'], vip: '10.0.0.10', user: 'root' }));
    expect(Object.keys(hostsOf(text))).to.deep.equal(['cp-1', 'cp-2', 'cp-3']);
    const vars = parseInventory(text, 'test').hosts.get('cp-1')!.vars;
    expect(vars.vip_address).to.equal('10.0.0.10');
    expect(vars.ansible_user).to.equal('root');
    expect(vars).not.to.have.property('ansible_become');
    expect(String(vars.vip_auth_pass)).to.match(/^[A-Za-z0-9]{8}$/).and.not.equal('ZqSj#f1G');
    const again = parseInventory(initInventory(request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.11'], vip: '10.0.0.10' })), 'test');
    expect(again.hosts.get('cp-1')!.vars.vip_auth_pass).not.to.equal(vars.vip_auth_pass);
  });

  it('stacked-ha with --balancer and the hard way: the balancer group, and the hard way\'s ip: per host', () => {
    expect(hostsOf(initInventory(request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.11', '10.0.0.12', '10.0.0.13'], workers: ['10.0.0.21'], balancer: '10.0.0.5' })))).to.deep.equal({
      balancer: [['balancer'], '10.0.0.5', undefined],
      'cp-1': [['control_plane'], '10.0.0.11', undefined],
      'cp-2': [['control_plane'], '10.0.0.12', undefined],
      'cp-3': [['control_plane'], '10.0.0.13', undefined],
      'worker-1': [['workers'], '10.0.0.21', undefined],
    });
    expect(hostsOf(initInventory(request({ topology: 'hard-way', controlPlanes: ['10.240.0.10', '10.240.0.11', '10.240.0.12'], balancer: 'lb=10.240.0.40' })))).to.deep.equal({
      'controller-0': [['controllers'], '10.240.0.10', '10.240.0.10'],
      'controller-1': [['controllers'], '10.240.0.11', '10.240.0.11'],
      'controller-2': [['controllers'], '10.240.0.12', '10.240.0.12'],
      lb: [['loadbalancer'], '10.240.0.40', '10.240.0.40'],
    });
  });

  const refusals: [string, InventoryInitRequest, string][] = [
    ['an unknown topology', request({ topology: 'k3s', controlPlanes: ['10.0.0.1'] }), '--topology must be one of single-node, pi-cluster, stacked-ha, hard-way, not "k3s"'],
    ['no control plane', request({ topology: 'single-node', controlPlanes: [] }), '--control-plane is required: the address of at least one control plane'],
    ['two control planes on single-node', request({ topology: 'single-node', controlPlanes: ['10.0.0.1', '10.0.0.2'] }), 'single-node has exactly one control plane; got 2 (stacked-ha has several)'],
    ['stacked-ha with neither balancer nor VIP', request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.1'] }), 'stacked-ha needs exactly one of --balancer ADDRESS (an external HAProxy machine) or --vip ADDRESS (keepalived on the control planes)'],
    ['stacked-ha with both', request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.1'], balancer: '10.0.0.5', vip: '10.0.0.6' }), 'stacked-ha needs exactly one of'],
    ['a hard way without balancer', request({ topology: 'hard-way', controlPlanes: ['10.0.0.1'] }), 'hard-way needs --balancer ADDRESS'],
    ['a bad address', request({ topology: 'single-node', controlPlanes: ['10.0.0.300 '] }), '--control-plane 10.0.0.300 : "10.0.0.300 " is neither an IP address nor a DNS name'],
    ['a bad host name', request({ topology: 'single-node', controlPlanes: ['cp 1=10.0.0.1'] }), '--control-plane cp 1=10.0.0.1: "cp 1" is not a valid host name'],
    ['a name given twice', request({ topology: 'single-node', controlPlanes: ['a=10.0.0.1'], workers: ['a=10.0.0.2'] }), 'host name a is given twice'],
    ['a VIP that is not an address', request({ topology: 'stacked-ha', controlPlanes: ['10.0.0.1'], vip: 'vip.example' }), '--vip must be an IP address, not "vip.example"'],
  ];
  for (const [what, input, message] of refusals) {
    it(`refuses ${what}`, () => {
      expect(() => initInventory(input)).to.throw(InputError, message);
    });
  }
});

describe('capstan inventory init: the CLI writes a file that `capstan run` plans with as is', function () {
  this.timeout(120_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-inventory-init-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  // The flags, and the hosts of the playbook's first play.
  const topologies: [string, string[], string[]][] = [
    ['single-node', ['--control-plane', '10.0.0.11', '--workers', '10.0.0.21,10.0.0.22'], ['cp-1', 'worker-1', 'worker-2']],
    ['pi-cluster', ['--control-plane', '10.0.0.11', '--workers', '10.0.0.21', '--user', 'pi'], ['cp-1', 'worker-1']],
    ['stacked-ha', ['--control-plane', '10.0.0.11,10.0.0.12,10.0.0.13', '--vip', '10.0.0.10'], ['cp-1', 'cp-2', 'cp-3']],
    ['hard-way', ['--control-plane', '10.0.0.11,10.0.0.12,10.0.0.13', '--balancer', '10.0.0.5'], ['controller-0', 'controller-1', 'controller-2']],
  ];
  for (const [topology, flags, hosts] of topologies) {
    it(`${topology}: written 0600, then run --list-hosts plans it`, async () => {
      const file = join(dir, `${topology}.yaml`);
      const init = await capstan(['inventory', 'init', '--topology', topology, ...flags, '-o', file]);
      expect(init.code, init.stderr).to.equal(0);
      expect(init.stderr).to.equal(`wrote ${file}; next: capstan run playbooks/${topology}.ts -i ${file} --check\n`);
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      expect(readFileSync(file, 'utf8')).to.include(`#   capstan run playbooks/${topology}.ts -i ${file} --check`);
      const listed = await capstan(['run', `playbooks/${topology}.ts`, '-i', file, '--list-hosts']);
      expect(listed.code, listed.stderr).to.equal(0);
      const firstPlay = listed.stdout.split('\n\n')[1]!;
      expect(firstPlay.split('\n').slice(1).join('\n')).to.equal(`    hosts (${hosts.length}):\n${hosts.map((host) => `      ${host}`).join('\n')}`);
    });
  }

  it('never overwrites a file without --force, and loses nothing', async () => {
    const file = join(dir, 'mine.yaml');
    writeFileSync(file, 'all: {}\n');
    const refused = await capstan(['inventory', 'init', '--topology', 'single-node', '--control-plane', '10.0.0.11', '-o', file]);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.equal(`capstan: ${file} exists: inventory init does not overwrite a file without --force\n`);
    expect(readFileSync(file, 'utf8')).to.equal('all: {}\n');
    const forced = await capstan(['inventory', 'init', '--topology', 'single-node', '--control-plane', '10.0.0.11', '-o', file, '--force']);
    expect(forced.code, forced.stderr).to.equal(0);
    expect(readFileSync(file, 'utf8')).to.include('cp-1:');
  });
});
