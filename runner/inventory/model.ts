/**
 * The inventory data model, built the way Ansible's InventoryData is: parsers call addGroup /
 * addHost / addChild / set*Var while they read, then buildInventory() reconciles the result
 * (implicit 'all' and 'ungrouped' membership), computes group depths and flattens variables with
 * Ansible's precedence. Everything the public API exposes is produced here.
 */
import { isDeepStrictEqual } from 'node:util';
import { InputError } from '../errors.js';
import { selectHosts } from './pattern.js';
import type { Inventory, InventoryGroup, InventoryHost, Vars } from './types.js';

/** Vars read from group_vars/ and host_vars/ files, per group and host name. */
export interface FileVars {
  groups: Map<string, Vars>;
  hosts: Map<string, Vars>;
}

const NO_FILE_VARS: FileVars = { groups: new Map(), hosts: new Map() };

/**
 * Variables of one group or host, each remembering where it was set: Ansible silently lets the
 * last definition win, but two different values for one key in one inventory is nearly always a
 * copy-paste mistake, so it is reported with both places.
 */
class VarTable {
  readonly values = new Map<string, unknown>();
  private readonly origins = new Map<string, string>();

  constructor(private readonly owner: string) {}

  set(key: string, value: unknown, origin: string): void {
    const previous = this.origins.get(key);
    if (previous !== undefined && !isDeepStrictEqual(this.values.get(key), value)) {
      throw new InputError(`${this.owner} sets '${key}' to conflicting values at ${previous} and ${origin}`, {
        location: origin,
      });
    }
    this.values.set(key, value);
    this.origins.set(key, origin);
  }
}

interface GroupData {
  name: string;
  hosts: string[];
  children: string[];
  parents: string[];
  vars: VarTable;
  /** ansible_group_priority: orders groups of equal depth before their names do. */
  priority: number;
}

interface HostData {
  name: string;
  vars: VarTable;
}

/** What a parser fills in; mirrors Ansible's InventoryData so the same edge cases fall out the same way. */
export class InventoryData {
  readonly groups = new Map<string, GroupData>();
  readonly hosts = new Map<string, HostData>();

  constructor(readonly source: string) {
    this.addGroup('all');
    this.addGroup('ungrouped');
    // Ansible makes 'ungrouped' the first child of 'all' before reading any source.
    this.addChild('all', 'ungrouped', source);
  }

  addGroup(name: string): void {
    if (this.groups.has(name)) return;
    this.groups.set(name, { name, hosts: [], children: [], parents: [], vars: new VarTable(`group '${name}'`), priority: 1 });
  }

  /** Adds the host if new, and makes it a direct member of `group` when one is given. */
  addHost(name: string, group?: string): void {
    if (!this.hosts.has(name)) this.hosts.set(name, { name, vars: new VarTable(`host '${name}'`) });
    if (group === undefined) return;
    const members = this.group(group).hosts;
    if (!members.includes(name)) members.push(name);
  }

  /** Links child under parent; refuses an edge that would make a group its own ancestor. */
  addChild(parent: string, child: string, origin: string): void {
    const parentGroup = this.group(parent);
    const childGroup = this.group(child);
    if (parentGroup.children.includes(child)) return;
    if (child === parent || this.ancestors(parent).has(child)) {
      throw new InputError(`group '${child}' cannot be a child of '${parent}': '${child}' is already an ancestor of '${parent}' (cycle)`, {
        location: origin,
      });
    }
    parentGroup.children.push(child);
    childGroup.parents.push(parent);
  }

  setGroupVar(group: string, key: string, value: unknown, origin: string): void {
    if (key === 'ansible_group_priority') {
      // Like Ansible, the priority is a property of the group, not a variable hosts inherit.
      this.group(group).priority = groupPriority(value, origin);
      return;
    }
    this.group(group).vars.set(key, value, origin);
  }

  setHostVar(host: string, key: string, value: unknown, origin: string): void {
    const data = this.hosts.get(host);
    if (!data) throw new Error(`internal: host '${host}' set before it was added`);
    data.vars.set(key, value, origin);
  }

  ancestors(name: string): Set<string> {
    const seen = new Set<string>();
    const pending = [...this.group(name).parents];
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      if (seen.has(next)) continue;
      seen.add(next);
      pending.push(...this.group(next).parents);
    }
    return seen;
  }

  group(name: string): GroupData {
    const group = this.groups.get(name);
    if (!group) throw new Error(`internal: group '${name}' used before it was added`);
    return group;
  }
}

function groupPriority(value: unknown, origin: string): number {
  const priority = typeof value === 'string' && /^[+-]?\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof priority !== 'number' || !Number.isInteger(priority)) {
    throw new InputError(`ansible_group_priority must be an integer, got ${JSON.stringify(value)}`, { location: origin });
  }
  return priority;
}

/**
 * Finishes parsed data into an Inventory: Ansible's reconcile step, then merged vars per host.
 * `files` holds group_vars/ and host_vars/ contents; without it only the inventory text counts.
 */
export function buildInventory(data: InventoryData, files: FileVars = NO_FILE_VARS): Inventory {
  reconcile(data);
  const depths = groupDepths(data);
  const memberships = directGroups(data);
  const hosts = new Map<string, InventoryHost>();
  for (const host of data.hosts.values()) {
    const groups = groupsWithAncestors(data, memberships.get(host.name) ?? []);
    hosts.set(host.name, { name: host.name, groups: [...groups].sort(byCodePoint), vars: hostVars(data, host, groups, depths, files) });
  }
  const groups = new Map<string, InventoryGroup>();
  for (const group of data.groups.values()) {
    const vars = { ...Object.fromEntries(group.vars.values), ...files.groups.get(group.name) };
    groups.set(group.name, { name: group.name, hosts: [...group.hosts], children: [...group.children], vars });
  }
  return makeInventory(data.source, hosts, groups);
}

function makeInventory(source: string, hosts: Map<string, InventoryHost>, groups: Map<string, InventoryGroup>): Inventory {
  const inventory: Inventory = { source, hosts, groups, select: (pattern) => selectHosts(inventory, pattern) };
  return inventory;
}

/**
 * Ansible's InventoryData.reconcile_inventory: every top-level group becomes a child of 'all';
 * a host in no group but 'all' goes to 'ungrouped', and leaves it once it is in a real group
 * (INI puts hosts above the first section into 'ungrouped' before knowing their other groups).
 */
function reconcile(data: InventoryData): void {
  for (const group of data.groups.values()) {
    if (group.name !== 'all' && group.parents.length === 0) data.addChild('all', group.name, data.source);
  }
  const memberships = directGroups(data);
  const ungrouped = data.group('ungrouped');
  for (const host of data.hosts.keys()) {
    const groups = groupsWithAncestors(data, memberships.get(host) ?? []);
    const grouped = [...groups].some((name) => name !== 'all' && name !== 'ungrouped');
    if (grouped) ungrouped.hosts = ungrouped.hosts.filter((name) => name !== host);
    else if (!groups.has('ungrouped')) ungrouped.hosts.push(host);
  }
}

function directGroups(data: InventoryData): Map<string, string[]> {
  const memberships = new Map<string, string[]>();
  for (const group of data.groups.values()) {
    for (const host of group.hosts) memberships.set(host, [...(memberships.get(host) ?? []), group.name]);
  }
  return memberships;
}

function groupsWithAncestors(data: InventoryData, direct: string[]): Set<string> {
  const groups = new Set<string>(['all']);
  for (const name of direct) {
    groups.add(name);
    for (const ancestor of data.ancestors(name)) groups.add(ancestor);
  }
  return groups;
}

/** Ansible's group depth: the longest path from 'all', so a group nested anywhere deeper counts as deeper. */
function groupDepths(data: InventoryData): Map<string, number> {
  const depths = new Map<string, number>();
  const depthOf = (name: string): number => {
    const known = depths.get(name);
    if (known !== undefined) return known;
    const depth = Math.max(0, ...data.group(name).parents.map((parent) => depthOf(parent) + 1));
    depths.set(name, depth);
    return depth;
  };
  for (const name of data.groups.keys()) depthOf(name);
  return depths;
}

/**
 * Flattens one host's vars in the order of Ansible's VariableManager with the default
 * VARIABLE_PRECEDENCE: inventory 'all' vars, inventory group vars (sorted by depth, then
 * ansible_group_priority, then name), group_vars/all, group_vars/<group> (same order), inventory
 * host vars, host_vars/<host>. So group_vars/all.yml beats a child group's vars written in the
 * inventory file, as in Ansible. Each layer replaces whole keys (hash_behaviour=replace).
 */
function hostVars(data: InventoryData, host: HostData, groups: Set<string>, depths: Map<string, number>, files: FileVars): Vars {
  const ordered = [...groups]
    .filter((name) => name !== 'all')
    .map((name) => data.group(name))
    .sort((a, b) => (depths.get(a.name) ?? 0) - (depths.get(b.name) ?? 0) || a.priority - b.priority || byCodePoint(a.name, b.name));
  const layers: Iterable<[string, unknown]>[] = [
    data.group('all').vars.values,
    ...ordered.map((group) => group.vars.values),
    Object.entries(files.groups.get('all') ?? {}),
    ...ordered.map((group) => Object.entries(files.groups.get(group.name) ?? {})),
    host.vars.values,
    Object.entries(files.hosts.get(host.name) ?? {}),
  ];
  const merged = new Map<string, unknown>();
  for (const layer of layers) for (const [key, value] of layer) merged.set(key, value);
  // A copy per host: values come from shared group definitions, and one host's task must not
  // change what another host sees.
  return structuredClone(Object.fromEntries(merged));
}

/** Python's default string order (code points), which Ansible's sorts use; localeCompare would differ. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The inventory as a run sees it with `-e` vars: on every host, over every inventory var, as
 * Ansible's extra vars are (the highest precedence) — connection vars included, so that
 * `-e ansible_user=admin` or `-e ansible_ssh_private_key_file=…` reach the SSH connection too.
 */
export function withExtraVars(inventory: Inventory, extraVars: Vars): Inventory {
  if (Object.keys(extraVars).length === 0) return inventory;
  const hosts = new Map([...inventory.hosts].map(([name, host]) => [name, { ...host, vars: { ...host.vars, ...structuredClone(extraVars) } }]));
  return {
    source: inventory.source,
    hosts,
    groups: inventory.groups,
    select: (pattern) => inventory.select(pattern).map((host) => hosts.get(host.name)!),
  };
}

/**
 * Builds an inventory in code (used by the lab): each host's `groups` become flat groups under
 * 'all', hosts without groups land in 'ungrouped', `vars` are host vars.
 */
export function inventoryFromHosts(
  hosts: { name: string; vars?: Record<string, unknown>; groups?: string[] }[],
  source = '<inline>',
): Inventory {
  const data = new InventoryData(source);
  hosts.forEach((host, index) => {
    const origin = `${source}[${index}]`;
    data.addHost(host.name);
    for (const group of host.groups ?? []) {
      data.addGroup(group);
      data.addHost(host.name, group);
    }
    for (const [key, value] of Object.entries(host.vars ?? {})) data.setHostVar(host.name, key, value, origin);
  });
  return buildInventory(data);
}

/**
 * The exact structure `ansible-inventory --list` prints (ansible-core's json_inventory): one
 * entry per group reachable from 'all' with direct `hosts` and `children` in definition order,
 * empty keys and empty groups left out (they stay listed as children), 'all' without hosts, and
 * `_meta.hostvars` for hosts that have vars. Keys are sorted at every level because
 * ansible-inventory dumps with sort_keys=True, so JSON.stringify(result, null, 4) matches it.
 */
export function toAnsibleList(inventory: Inventory): unknown {
  const result: Record<string, unknown> = {};
  const seen = new Set<string>();
  const visit = (name: string): void => {
    const group = inventory.groups.get(name);
    if (!group || seen.has(name)) return;
    seen.add(name);
    const entry: Record<string, string[]> = {};
    if (name !== 'all' && group.hosts.length > 0) entry.hosts = [...group.hosts];
    if (group.children.length > 0) entry.children = [...group.children];
    if (Object.keys(entry).length > 0) result[name] = entry;
    group.children.forEach(visit);
  };
  visit('all');
  const hostvars: Record<string, unknown> = {};
  for (const host of inventory.hosts.values()) if (Object.keys(host.vars).length > 0) hostvars[host.name] = host.vars;
  result._meta = { hostvars };
  return sortKeysDeep(result);
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return value;
  const entries = Object.entries(value).sort(([a], [b]) => byCodePoint(a, b));
  return Object.fromEntries(entries.map(([key, item]) => [key, sortKeysDeep(item)]));
}

/**
 * The exact text of `ansible-inventory --graph` (no trailing newline): groups as `@name:`, children
 * in definition order before the group's direct hosts, each level indented by `  |` and marked
 * `--`; 'all' lists no hosts of its own.
 */
export function toGraph(inventory: Inventory): string {
  const lines: string[] = [];
  const line = (text: string, depth: number): void => {
    lines.push(depth === 0 ? text : `${'  |'.repeat(depth)}--${text}`);
  };
  const visit = (name: string, depth: number): void => {
    const group = inventory.groups.get(name);
    if (!group) return;
    line(`@${name}:`, depth);
    for (const child of group.children) visit(child, depth + 1);
    if (name !== 'all') for (const host of group.hosts) line(host, depth + 1);
  };
  visit('all', 0);
  return lines.join('\n');
}
