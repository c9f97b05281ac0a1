import { InputError } from '../errors.js';
import { MAX_HOSTS } from './paths.js';
import type { LabHostSpec } from './types.js';

/** A host spec with every field filled in. */
export type NormalizedHostSpec = Required<LabHostSpec>;

/** A valid hostname label (also a valid systemd machine name). */
const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A group name Ansible accepts without warnings (plus `-`, which it tolerates). */
const GROUP_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const RESERVED_GROUPS = new Set(['all', 'ungrouped']);

/**
 * Turns `labUp`'s `hosts` option into full specs: a count becomes node1..nodeN; names, groups and
 * the number of hosts are validated before anything is created.
 */
export function normalizeHostSpecs(hosts: number | readonly LabHostSpec[]): NormalizedHostSpec[] {
  const specs = typeof hosts === 'number' ? defaultSpecs(hosts) : hosts.map(fill);
  if (specs.length < 1 || specs.length > MAX_HOSTS) {
    throw new InputError(`a lab has 1 to ${MAX_HOSTS} hosts, not ${specs.length}`);
  }
  const seen = new Set<string>();
  for (const spec of specs) {
    validateSpec(spec);
    if (seen.has(spec.name)) throw new InputError(`lab host name ${spec.name} is given twice`);
    seen.add(spec.name);
  }
  return specs;
}

function defaultSpecs(count: number): NormalizedHostSpec[] {
  if (!Number.isInteger(count)) throw new InputError(`the number of lab hosts must be a whole number, not ${count}`);
  return Array.from({ length: Math.max(count, 0) }, (_, index) => fill({ name: `node${index + 1}` }));
}

function fill(spec: LabHostSpec): NormalizedHostSpec {
  return { name: spec.name, groups: [...(spec.groups ?? [])], vars: { ...(spec.vars ?? {}) } };
}

function validateSpec(spec: NormalizedHostSpec): void {
  if (!HOST_NAME.test(spec.name)) {
    throw new InputError(`lab host name ${JSON.stringify(spec.name)} is not a hostname (lowercase letters, digits, inner hyphens)`);
  }
  for (const group of spec.groups) {
    if (!GROUP_NAME.test(group) || RESERVED_GROUPS.has(group)) {
      throw new InputError(`lab host ${spec.name}: ${JSON.stringify(group)} is not a usable group name`);
    }
  }
}
