import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { parsePythonLiteral } from '../../runner/inventory/ini.js';
import {
  inventoryFromHosts,
  loadInventory,
  parseInventory,
  toAnsibleList,
  toGraph,
  type Inventory,
} from '../../runner/inventory/index.js';

const KUBESPRAY = fileURLToPath(new URL('../fixtures/inventory/kubespray/', import.meta.url));

const kubesprayVars = {
  ansible_become: true,
  container_manager: 'containerd',
  containerd_registries_mirrors: [],
  etcd_deployment_type: 'host',
  upstream_dns_servers: ['8.8.8.8', '1.1.1.1'],
};
const clusterVars = {
  ...kubesprayVars,
  cluster_name: 'cluster.local',
  kube_network_plugin: 'calico',
  kube_pods_subnet: '10.233.64.0/18',
  kube_version: 'v1.30.4',
};

/** What `ansible-inventory -i test/fixtures/inventory/kubespray/inventory.ini --list` prints, as data. */
const KUBESPRAY_LIST = {
  _meta: {
    hostvars: {
      bastion: { ...kubesprayVars, ansible_host: '95.54.0.10', ansible_port: 2222, ansible_user: 'ubuntu' },
      node1: { ...clusterVars, ansible_host: '95.54.0.12', ansible_user: 'ubuntu', etcd_member_name: 'etcd1', ip: '10.3.0.100' },
      node2: { ...clusterVars, ansible_host: '95.54.0.13', ansible_user: 'ubuntu', etcd_member_name: 'etcd2', ip: '10.3.0.2' },
      node3: { ...clusterVars, ansible_host: '95.54.0.14', ansible_user: 'ubuntu', etcd_member_name: 'etcd3', ip: '10.3.0.3' },
      node4: { ...clusterVars, ansible_user: 'worker' },
      node5: { ...clusterVars, ansible_user: 'worker' },
    },
  },
  all: { children: ['ungrouped', 'etcd', 'k8s_cluster'] },
  etcd: { hosts: ['node1', 'node2', 'node3'] },
  k8s_cluster: { children: ['kube_control_plane', 'kube_node', 'calico_rr'] },
  kube_control_plane: { hosts: ['node1', 'node2', 'node3'] },
  kube_node: { hosts: ['node4', 'node5'] },
  ungrouped: { hosts: ['bastion'] },
};

const KUBESPRAY_GRAPH = `@all:
  |--@ungrouped:
  |  |--bastion
  |--@etcd:
  |  |--node1
  |  |--node2
  |  |--node3
  |--@k8s_cluster:
  |  |--@kube_control_plane:
  |  |  |--node1
  |  |  |--node2
  |  |  |--node3
  |  |--@kube_node:
  |  |  |--node4
  |  |  |--node5
  |  |--@calico_rr:`;

describe('inventory: Kubespray-style inventory in both formats', () => {
  let ini: Inventory;
  let yaml: Inventory;
  before(async () => {
    ini = await loadInventory(`${KUBESPRAY}inventory.ini`);
    yaml = await loadInventory(`${KUBESPRAY}inventory.yaml`);
  });

  it('gives the ansible-inventory --list structure for the INI file', () => {
    expect(toAnsibleList(ini)).to.deep.equal(KUBESPRAY_LIST);
  });

  it('gives byte-identical --list output for the YAML file', () => {
    expect(JSON.stringify(toAnsibleList(yaml), null, 4)).to.equal(JSON.stringify(toAnsibleList(ini), null, 4));
  });

  it('sorts keys at every level, as ansible-inventory dumps with sort_keys', () => {
    const list = toAnsibleList(ini) as Record<string, unknown>;
    expect(Object.keys(list)).to.deep.equal(['_meta', 'all', 'etcd', 'k8s_cluster', 'kube_control_plane', 'kube_node', 'ungrouped']);
    const hostvars = (list._meta as { hostvars: Record<string, Record<string, unknown>> }).hostvars;
    const keys = Object.keys(hostvars.node1 ?? {});
    expect(keys).to.deep.equal([...keys].sort());
  });

  it('gives the ansible-inventory --graph text for both files', () => {
    expect(toGraph(ini)).to.equal(KUBESPRAY_GRAPH);
    expect(toGraph(yaml)).to.equal(KUBESPRAY_GRAPH);
  });

  it('keeps hosts in file order, expanding node[4:5]', () => {
    expect([...ini.hosts.keys()]).to.deep.equal(['node1', 'node2', 'node3', 'node4', 'node5', 'bastion']);
    expect([...yaml.hosts.keys()]).to.deep.equal([...ini.hosts.keys()]);
  });

  it("lists each host's groups with ancestors and all, sorted", () => {
    expect(ini.hosts.get('node1')?.groups).to.deep.equal(['all', 'etcd', 'k8s_cluster', 'kube_control_plane']);
    expect(ini.hosts.get('bastion')?.groups).to.deep.equal(['all', 'ungrouped']);
    expect(yaml.hosts.get('node4')?.groups).to.deep.equal(['all', 'k8s_cluster', 'kube_node']);
  });

  it('exposes groups with direct members, children and their own vars (group_vars files included)', () => {
    expect(ini.groups.get('k8s_cluster')).to.deep.equal({
      name: 'k8s_cluster',
      hosts: [],
      children: ['kube_control_plane', 'kube_node', 'calico_rr'],
      vars: { kube_network_plugin: 'calico', cluster_name: 'cluster.local', kube_version: 'v1.30.4', kube_pods_subnet: '10.233.64.0/18' },
    });
    expect(ini.groups.get('all')?.hosts).to.deep.equal(['node1', 'node2', 'node3', 'node4', 'node5', 'bastion']);
    expect(ini.groups.get('calico_rr')).to.deep.include({ hosts: [], children: [] });
    expect(ini.source).to.equal(`${KUBESPRAY}inventory.ini`);
  });

  it('makes role groups children of all too when the YAML lists them under all (Kubespray generator layout)', () => {
    const inventory = parseInventory(
      [
        'all:',
        '  hosts: {node1: {ansible_host: 10.0.0.1}, node2: {ansible_host: 10.0.0.2}}',
        '  children:',
        '    kube_control_plane: {hosts: {node1: }}',
        '    kube_node: {hosts: {node2: }}',
        '    etcd: {hosts: {node1: }}',
        '    k8s_cluster: {children: {kube_control_plane: , kube_node: , calico_rr: }}',
        '    calico_rr: {hosts: {}}',
      ].join('\n'),
      'hosts.yaml',
    );
    const list = toAnsibleList(inventory) as Record<string, { children?: string[] }>;
    expect(list.all?.children).to.deep.equal(['ungrouped', 'kube_control_plane', 'kube_node', 'etcd', 'k8s_cluster', 'calico_rr']);
    expect(list.k8s_cluster?.children).to.deep.equal(['kube_control_plane', 'kube_node', 'calico_rr']);
    expect(list).to.not.have.property('ungrouped');
    expect(list).to.not.have.property('calico_rr');
  });
});

describe('inventory: format detection', () => {
  const yamlText = 'all:\n  hosts:\n    web1:\n';
  const iniText = '[web]\nweb1\n';

  it('reads YAML without an extension when the text is a YAML mapping', () => {
    const inventory = parseInventory(yamlText, 'hosts');
    expect(inventory.groups.get('ungrouped')?.hosts).to.deep.equal(['web1']);
    expect(inventory.groups.has('web1:')).to.equal(false);
  });

  it('reads INI without an extension otherwise', () => {
    expect(parseInventory(iniText, 'hosts').groups.get('web')?.hosts).to.deep.equal(['web1']);
  });

  it('reads a plain host list as INI (ungrouped hosts)', () => {
    expect(parseInventory('web1\nweb2\n', 'hosts').groups.get('ungrouped')?.hosts).to.deep.equal(['web1', 'web2']);
  });

  it('treats an empty file as an empty inventory', () => {
    const inventory = parseInventory('# nothing yet\n', 'hosts');
    expect(inventory.hosts.size).to.equal(0);
    expect([...inventory.groups.keys()]).to.deep.equal(['all', 'ungrouped']);
    expect(toAnsibleList(inventory)).to.deep.equal({ _meta: { hostvars: {} }, all: { children: ['ungrouped'] } });
    expect(toGraph(inventory)).to.equal('@all:\n  |--@ungrouped:');
  });

  it('reports a YAML error, not an INI one, for a broken YAML file without extension', () => {
    expect(() => parseInventory('all:\n  hosts: [\n', 'hosts')).to.throw(/YAML syntax error/);
  });

  it('accepts top-level groups other than all, as Ansible does', () => {
    const inventory = parseInventory('web:\n  hosts:\n    web1:\ndb:\n  hosts:\n    db1:\n', 'inventory.yml');
    expect(inventory.groups.get('all')?.children).to.deep.equal(['ungrouped', 'web', 'db']);
    expect(inventory.hosts.get('db1')?.groups).to.deep.equal(['all', 'db']);
  });

  it('reads JSON inventories through the YAML parser', () => {
    const inventory = parseInventory('{"all": {"hosts": {"web1": {"ansible_port": 22}}}}', 'inventory.json');
    expect(inventory.hosts.get('web1')?.vars).to.deep.equal({ ansible_port: 22 });
  });
});

describe('inventory: host ranges', () => {
  const names = (inventory: Inventory): string[] => [...inventory.hosts.keys()];

  for (const [format, source, text] of [
    ['YAML', 'inventory.yaml', 'all:\n  hosts:\n    node[1:3]:\n    db[01:10]:\n'],
    ['INI', 'inventory.ini', 'node[1:3]\ndb[01:10]\n'],
  ] as const) {
    it(`expands plain and zero-padded ranges in ${format}`, () => {
      expect(names(parseInventory(text, source))).to.deep.equal([
        'node1', 'node2', 'node3',
        'db01', 'db02', 'db03', 'db04', 'db05', 'db06', 'db07', 'db08', 'db09', 'db10',
      ]);
    });
  }

  it('expands letter ranges, steps, open starts and several ranges in one name', () => {
    expect(names(parseInventory('web-[a:c].example.com\n', 'i.ini'))).to.deep.equal(['web-a.example.com', 'web-b.example.com', 'web-c.example.com']);
    expect(names(parseInventory('n[1:10:4]\n', 'i.ini'))).to.deep.equal(['n1', 'n5', 'n9']);
    expect(names(parseInventory('n[:2]\n', 'i.ini'))).to.deep.equal(['n0', 'n1', 'n2']);
    expect(names(parseInventory('r[1:2]-u[a:b]\n', 'i.ini'))).to.deep.equal(['r1-ua', 'r1-ub', 'r2-ua', 'r2-ub']);
  });

  it('gives every host of a range its port and vars', () => {
    const inventory = parseInventory('all:\n  hosts:\n    node[1:2]:2222:\n      role: worker\n', 'inventory.yaml');
    expect(inventory.hosts.get('node2')?.vars).to.deep.equal({ ansible_port: 2222, role: 'worker' });
    const ini = parseInventory('node[1:2]:2222 role=worker\n', 'inventory.ini');
    expect(toAnsibleList(ini)).to.deep.equal(toAnsibleList(inventory));
  });

  it('leaves IPv6 addresses alone instead of reading a port', () => {
    const inventory = parseInventory('fe80::1\n', 'inventory.ini');
    expect(inventory.hosts.get('fe80::1')?.vars).to.deep.equal({});
  });
});

describe('inventory: INI values (typed like ansible-core: ast.literal_eval)', () => {
  const table: [string, unknown][] = [
    ['2222', 2222],
    ['-5', -5],
    ['0x1F', 31],
    ['0o17', 15],
    ['0b101', 5],
    ['1_000', 1000],
    ['1.5', 1.5],
    ['1e3', 1000],
    ['True', true],
    ['False', false],
    ['None', null],
    ["'22'", '22'],
    ['"22"', '22'],
    ["'a\\tb'", 'a\tb'],
    ["r'a\\tb'", 'a\\tb'],
    ["[1, 'two', None]", [1, 'two', null]],
    ['(1, 2)', [1, 2]],
    ['(1,)', [1]],
    ['(5)', 5],
    ["{'k': [1, (2, 3)], 2: None, True: 1}", { k: [1, [2, 3]], 2: null, true: 1 }],
    ['8080 # a Python comment ends a literal', 8080],
    // Not Python literals: kept as written.
    ['true', 'true'],
    ['yes', 'yes'],
    ['10.0.0.1', '10.0.0.1'],
    ['0755', '0755'],
    ['10-5', '10-5'],
    ['56L', '56L'],
    ['abc # not a literal', 'abc # not a literal'],
    ['"unterminated', '"unterminated'],
    ['', ''],
    ['9007199254740993', '9007199254740993'],
  ];
  for (const [text, value] of table) {
    it(`reads ${JSON.stringify(text)} as ${JSON.stringify(value)}`, () => {
      expect(parsePythonLiteral(text)).to.deep.equal(value);
    });
  }

  it('shell-splits host lines before typing, so quotes group words and # starts a comment', () => {
    const inventory = parseInventory(
      `web1 ansible_port=2222 title="quoted value" port_text='"22"' flag=True dict="{'a': 1}" a=b#c ignored=1\n`,
      'inventory.ini',
    );
    expect(inventory.hosts.get('web1')?.vars).to.deep.equal({
      ansible_port: 2222,
      title: 'quoted value',
      port_text: '22',
      flag: true,
      dict: { a: 1 },
      a: 'b',
    });
  });

  it('types [group:vars] values the same way, the whole rest of the line being the value', () => {
    const inventory = parseInventory(
      '[web]\nweb1\n[web:vars]\nhttp_port = 8080 # comment\nbanner=hello world # kept\nenabled=False\nquoted="x y"\n',
      'inventory.ini',
    );
    expect(inventory.hosts.get('web1')?.vars).to.deep.equal({
      http_port: 8080,
      banner: 'hello world # kept',
      enabled: false,
      quoted: 'x y',
    });
  });

  it('reads sections, ; and # comment lines, [all] hosts and :children declared later', () => {
    const inventory = parseInventory(
      [
        '; semicolon comment',
        'lonely',
        '[cluster:children]   # comment after a header',
        'workers',
        '  # indented comment',
        '[workers]',
        'w1',
        '[all]',
        'lonely',
        'extra',
        '[all:vars]',
        'x=1',
      ].join('\n'),
      'inventory.ini',
    );
    expect(inventory.groups.get('cluster')?.children).to.deep.equal(['workers']);
    expect(inventory.groups.get('ungrouped')?.hosts).to.deep.equal(['lonely', 'extra']);
    expect(inventory.groups.get('all')?.children).to.deep.equal(['ungrouped', 'cluster']);
    expect(inventory.hosts.get('w1')?.vars).to.deep.equal({ x: 1 });
  });

  it('takes a host out of ungrouped once a later section puts it in a group', () => {
    const inventory = parseInventory('web1\n[web]\nweb1\n', 'inventory.ini');
    expect(inventory.groups.get('ungrouped')?.hosts).to.deep.equal([]);
    expect(inventory.hosts.get('web1')?.groups).to.deep.equal(['all', 'web']);
  });
});

describe('inventory: YAML specifics', () => {
  it('reads YAML 1.1 scalars as Ansible (PyYAML) does', () => {
    const inventory = parseInventory('all:\n  hosts:\n    web1:\n      a: yes\n      b: off\n      c: 0x10\n      d: "yes"\n', 'inventory.yaml');
    expect(inventory.hosts.get('web1')?.vars).to.deep.equal({ a: true, b: false, c: 16, d: 'yes' });
  });

  it('accepts a single name written as a string for hosts and children', () => {
    const inventory = parseInventory('all:\n  children:\n    web:\n      hosts: web1\n    prod:\n      children: web\n', 'inventory.yaml');
    expect(inventory.groups.get('web')?.hosts).to.deep.equal(['web1']);
    expect(inventory.groups.get('prod')?.children).to.deep.equal(['web']);
  });

  it('follows anchors, aliases and merge keys', () => {
    const inventory = parseInventory(
      'all:\n  vars:\n    base: &base {user: ops, port: 22}\n  hosts:\n    web1:\n      <<: *base\n      port: 2222\n    web2: *base\n',
      'inventory.yaml',
    );
    expect(inventory.hosts.get('web1')?.vars).to.deep.equal({ base: { user: 'ops', port: 22 }, user: 'ops', port: 2222 });
    expect(inventory.hosts.get('web2')?.vars).to.deep.equal({ base: { user: 'ops', port: 22 }, user: 'ops', port: 22 });
  });

  it('lets a host appear in several groups when its vars agree', () => {
    const inventory = parseInventory(
      'all:\n  children:\n    a:\n      hosts:\n        h: {x: 1}\n    b:\n      hosts:\n        h: {x: 1, y: 2}\n    c:\n      hosts:\n        h:\n',
      'inventory.yaml',
    );
    expect(inventory.hosts.get('h')?.vars).to.deep.equal({ x: 1, y: 2 });
    expect(inventory.hosts.get('h')?.groups).to.deep.equal(['a', 'all', 'b', 'c']);
  });

  it('shows a group nested under two parents in both, in --graph and --list', () => {
    const inventory = parseInventory('all:\n  children:\n    a:\n      children:\n        shared:\n          hosts: {h1: }\n    b:\n      children:\n        shared:\n', 'inventory.yaml');
    expect(toGraph(inventory)).to.equal(
      ['@all:', '  |--@ungrouped:', '  |--@a:', '  |  |--@shared:', '  |  |  |--h1', '  |--@b:', '  |  |--@shared:', '  |  |  |--h1'].join('\n'),
    );
    expect(toAnsibleList(inventory)).to.deep.equal({
      _meta: { hostvars: {} },
      all: { children: ['ungrouped', 'a', 'b'] },
      a: { children: ['shared'] },
      b: { children: ['shared'] },
      shared: { hosts: ['h1'] },
    });
  });
});

describe('inventory: inventoryFromHosts', () => {
  it('builds flat groups under all, ungrouped hosts, and host vars', () => {
    const inventory = inventoryFromHosts([
      { name: 'cp1', groups: ['kube_control_plane', 'etcd'], vars: { ansible_host: '10.0.0.1' } },
      { name: 'w1', groups: ['kube_node'] },
      { name: 'lab' },
    ]);
    expect(inventory.source).to.equal('<inline>');
    expect(toAnsibleList(inventory)).to.deep.equal({
      _meta: { hostvars: { cp1: { ansible_host: '10.0.0.1' } } },
      all: { children: ['ungrouped', 'kube_control_plane', 'etcd', 'kube_node'] },
      etcd: { hosts: ['cp1'] },
      kube_control_plane: { hosts: ['cp1'] },
      kube_node: { hosts: ['w1'] },
      ungrouped: { hosts: ['lab'] },
    });
    expect(inventory.select('kube_node:lab').map((host) => host.name)).to.deep.equal(['w1', 'lab']);
  });

  it('names its source in errors', () => {
    expect(() => inventoryFromHosts([{ name: 'a', vars: { x: 1 } }, { name: 'a', vars: { x: 2 } }], 'lab')).to.throw(
      "lab[1]: host 'a' sets 'x' to conflicting values at lab[0] and lab[1]",
    );
  });
});
