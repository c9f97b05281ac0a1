import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { loadInventory, parseInventory, type Inventory } from '../../runner/inventory/index.js';

const PRECEDENCE = fileURLToPath(new URL('../fixtures/inventory/precedence/', import.meta.url));

describe('inventory: variable precedence (fixtures/inventory/precedence)', () => {
  let inventory: Inventory;
  const vars = (host: string): Record<string, unknown> => inventory.hosts.get(host)?.vars ?? {};
  before(async () => {
    inventory = await loadInventory(`${PRECEDENCE}inventory.yaml`);
  });

  it('applies all < parent group < child group < host', () => {
    expect(vars('loner').level).to.equal('all');
    expect(vars('h2').level).to.equal('child');
    expect(vars('h2').parent_only).to.equal('parent');
    expect(vars('h1').over_host).to.equal('inventory host');
  });

  it('orders groups by their longest path from all, even when also listed directly under all', () => {
    // child (depth 2) beats omega (depth 1) although omega sorts after it by name.
    expect(vars('h1').longest_path).to.equal('child');
  });

  it('orders groups of the same depth by name', () => {
    expect(vars('h2').same_depth).to.equal('beta');
  });

  it('lets ansible_group_priority reorder groups of the same depth, and keeps it out of vars', () => {
    expect(vars('h2').priority).to.equal('delta');
    expect(vars('h2')).to.not.have.property('ansible_group_priority');
    expect(inventory.groups.get('delta')?.vars).to.deep.equal({ priority: 'delta' });
  });

  it('does not let a priority lift a group above a deeper one', () => {
    expect(vars('h3').depth_vs_priority).to.equal('deep');
  });

  it('replaces dictionaries instead of merging them', () => {
    expect(vars('loner').labels).to.deep.equal({ a: 1, b: 2 });
    expect(vars('h2').labels).to.deep.equal({ c: 3 });
    expect(vars('h1').labels).to.deep.equal({ d: 4 });
  });

  it('ranks group_vars/all above group vars written in the inventory, as Ansible does', () => {
    expect(vars('h1').over_all_file).to.equal('group_vars all');
    expect(vars('loner').from_all_file).to.equal('group_vars all');
  });

  it('ranks group_vars/<group> above group_vars/all and below inventory host vars', () => {
    expect(vars('h1').over_child_file).to.equal('group_vars child');
    expect(vars('h2').over_child_file).to.equal('group_vars child');
  });

  it('ranks host_vars/<host> above the inventory host vars', () => {
    expect(vars('h1').over_host_file).to.equal('host_vars');
  });

  it('reads a group_vars directory recursively in sorted order, skipping hidden, backup and foreign files', () => {
    expect(vars('h1')).to.include({ dir_order: 'nested/40', base_only: 'base', nested_seen: true });
    expect(inventory.groups.get('parent')?.vars).to.deep.equal({
      level: 'parent',
      parent_only: 'parent',
      dir_order: 'nested/40',
      base_only: 'base',
      nested_seen: true,
    });
  });

  it('uses the first of <name>, .yml, .yaml, .json and ignores the others', () => {
    expect(vars('h2').host_file).to.equal('h2.yaml');
    expect(vars('h2')).to.not.have.property('json_seen');
  });

  it('ignores empty vars files and files for groups the inventory does not have', () => {
    expect(vars('h2')).to.not.have.property('ghost');
    expect(inventory.groups.has('ghost')).to.equal(false);
  });

  it('gives the full merged result for one host', () => {
    expect(vars('h1')).to.deep.equal({
      level: 'child',
      labels: { d: 4 },
      over_all_file: 'group_vars all',
      from_all_file: 'group_vars all',
      parent_only: 'parent',
      longest_path: 'child',
      over_child_file: 'group_vars child',
      over_host: 'inventory host',
      over_host_file: 'host_vars',
      truthy: true,
      dir_order: 'nested/40',
      base_only: 'base',
      nested_seen: true,
    });
  });
});

describe('inventory: precedence in INI', () => {
  it('follows the same rules', () => {
    const inventory = parseInventory(
      [
        'h1 x=host',
        '[parent:children]',
        'child',
        '[child]',
        'h1',
        'h2',
        '[zeta]',
        'h2',
        '[all:vars]',
        'x=all',
        'y=all',
        '[parent:vars]',
        'x=parent',
        'y=parent',
        '[child:vars]',
        'x=child',
        '[zeta:vars]',
        'y=zeta',
        'ansible_group_priority=0',
      ].join('\n'),
      'inventory.ini',
    );
    expect(inventory.hosts.get('h1')?.vars).to.deep.equal({ x: 'host', y: 'parent' });
    // zeta (depth 1) is applied before parent (depth 1) because of its lower priority.
    expect(inventory.hosts.get('h2')?.vars).to.deep.equal({ x: 'child', y: 'parent' });
  });
});
