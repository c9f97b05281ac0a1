import { expect } from 'chai';
import { InputError } from '../../runner/errors.js';
import { parseInventory, type Inventory } from '../../runner/inventory/index.js';

const INVENTORY = `
bastion
[kube_control_plane]
cp1
cp2
cp3
[etcd:children]
kube_control_plane
[kube_node]
worker1
worker2
10.0.0.9
[calico_rr]
[k8s_cluster:children]
kube_control_plane
kube_node
calico_rr
`;

describe('inventory: host patterns', () => {
  let inventory: Inventory;
  const select = (pattern: string): string[] => inventory.select(pattern).map((host) => host.name);
  before(() => {
    inventory = parseInventory(INVENTORY, 'inventory.ini');
  });

  const cases: [string, string[]][] = [
    ['all', ['bastion', 'cp1', 'cp2', 'cp3', 'worker1', 'worker2', '10.0.0.9']],
    ['*', ['bastion', 'cp1', 'cp2', 'cp3', 'worker1', 'worker2', '10.0.0.9']],
    ['kube_node', ['worker1', 'worker2', '10.0.0.9']],
    ['etcd', ['cp1', 'cp2', 'cp3']],
    ['ungrouped', ['bastion']],
    ['calico_rr', []],
    ['worker2', ['worker2']],
    ['10.0.0.9', ['10.0.0.9']],
    ['kube_node[0]', ['worker1']],
    ['kube_node[-1]', ['10.0.0.9']],
    ['kube_node[0:1]', ['worker1', 'worker2']],
    ['k8s_cluster[2:3]', ['cp3', 'worker1']],
    ['kube_node[1:]', ['worker2', '10.0.0.9']],
    ['calico_rr[0]', []],
    ['kube_node:etcd', ['cp1', 'cp2', 'cp3', 'worker1', 'worker2', '10.0.0.9']],
    ['kube_node,etcd', ['cp1', 'cp2', 'cp3', 'worker1', 'worker2', '10.0.0.9']],
    [' kube_node , bastion ', ['bastion', 'worker1', 'worker2', '10.0.0.9']],
    ['k8s_cluster:&etcd', ['cp1', 'cp2', 'cp3']],
    ['k8s_cluster:!etcd', ['worker1', 'worker2', '10.0.0.9']],
    ['!etcd:k8s_cluster', ['worker1', 'worker2', '10.0.0.9']],
    ['!k8s_cluster', ['bastion']],
    ['&etcd', ['cp1', 'cp2', 'cp3']],
    ['all:!kube_node[0]:!cp2', ['bastion', 'cp1', 'cp3', 'worker2', '10.0.0.9']],
    ['worker*', ['worker1', 'worker2']],
    ['kube_*', ['cp1', 'cp2', 'cp3', 'worker1', 'worker2', '10.0.0.9']],
    ['cp?', ['cp1', 'cp2', 'cp3']],
    ['cp[!2]', ['cp1', 'cp3']],
    ['*[0]', ['bastion']],
    ['~worker\\d', ['worker1', 'worker2']],
    ['~^(bastion|cp3)$', ['bastion', 'cp3']],
    ['~w.rker1', ['worker1']],
    ['10.0.0.*', ['10.0.0.9']],
    ['cp3,cp1,cp3', ['cp1', 'cp3']],
  ];
  for (const [pattern, hosts] of cases) {
    it(`selects ${JSON.stringify(pattern)}`, () => {
      expect(select(pattern)).to.deep.equal(hosts);
    });
  }

  it('returns the inventory host objects', () => {
    expect(inventory.select('cp1')[0]).to.equal(inventory.hosts.get('cp1'));
  });

  const errors: [string, RegExp][] = [
    ['', /^empty host pattern ''$/],
    [' , ', /^empty host pattern ' , '$/],
    [
      'kube_nodes',
      /^host pattern 'kube_nodes': 'kube_nodes' matches no group or host in inventory\.ini \(groups: all, ungrouped, kube_control_plane, etcd, kube_node, calico_rr, k8s_cluster\)$/,
    ],
    ['etcd:!typo', /^host pattern 'etcd:!typo': 'typo' matches no group or host/],
    ['etcd:&typo', /^host pattern 'etcd:&typo': 'typo' matches no group or host/],
    ['192.168.1.1,192.168.1.2', /^host pattern '192\.168\.1\.1,192\.168\.1\.2': '192\.168\.1\.1' matches no group or host/],
    ['db*', /^host pattern 'db\*': 'db\*' matches no group or host/],
    ['etcd[3]', /^host pattern 'etcd\[3\]': 'etcd\[3\]' is out of range, it matches 3 host\(s\)$/],
    ['etcd[-4]', /is out of range/],
    // A regex is anchored at the start only, like Python's re.match.
    ['~orker', /^host pattern '~orker': '~orker' matches no group or host/],
    ['~(', /^host pattern '~\(': '~\(' is not a valid regular expression$/],
  ];
  for (const [pattern, message] of errors) {
    it(`refuses ${JSON.stringify(pattern)} with an InputError`, () => {
      expect(() => inventory.select(pattern))
        .to.throw(InputError)
        .with.property('message')
        .that.matches(message);
    });
  }

  it('prefers a host over a group of the same name, like Ansible', () => {
    const clash = parseInventory('[web]\nweb\nweb2\n', 'inventory.ini');
    expect(clash.select('web').map((host) => host.name)).to.deep.equal(['web']);
  });

  it('reads a lone IPv6 host name as one pattern despite its colons', () => {
    const ipv6 = parseInventory('fe80::1\n[g]\nh\n', 'inventory.ini');
    expect(ipv6.select('fe80::1').map((host) => host.name)).to.deep.equal(['fe80::1']);
  });
});
