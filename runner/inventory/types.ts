/** What an inventory is, to everything that reads one (types only: the model builds it, patterns select from it). */

export type Vars = Record<string, unknown>;

export interface InventoryHost {
  name: string;
  /** Merged vars: all < parent groups < child groups < host vars (Ansible precedence). */
  vars: Record<string, unknown>;
  /** Every group the host belongs to, including ancestors and 'all', sorted. */
  groups: string[];
}

export interface InventoryGroup {
  name: string;
  /** Direct members, in file order. */
  hosts: string[];
  children: string[];
  /** The group's own vars: inventory file, then group_vars/ files (which win). */
  vars: Record<string, unknown>;
}

export interface Inventory {
  /** Path it was loaded from. */
  source: string;
  /** Insertion order = file order. */
  hosts: Map<string, InventoryHost>;
  /** Always has 'all' and 'ungrouped', like Ansible. */
  groups: Map<string, InventoryGroup>;
  /** Hosts matching an Ansible host pattern, in inventory order, de-duplicated. Throws InputError on unknown names or an empty pattern. */
  select(pattern: string): InventoryHost[];
}
