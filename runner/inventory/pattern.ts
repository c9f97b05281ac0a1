/**
 * Ansible's two kinds of "host pattern": the ones that define hosts in an inventory
 * (`node[01:10]:2222`, expanded by expandHostPattern) and the ones that select hosts from it
 * (`k8s_cluster:&etcd:!node3`, matched by selectHosts).
 */
import { InputError } from '../errors.js';
import type { Inventory, InventoryHost } from './types.js';

/** Host names an inventory entry stands for, and the port it carries (`host:port`), if any. */
export interface ExpandedHosts {
  names: string[];
  port?: number;
}

/** `name:port`, where the name has no colon outside brackets, so IPv6 addresses keep theirs. */
const HOST_WITH_PORT = /^((?:[^:[\]]|\[[^\]]*\])+):(\d+)$/;

/**
 * Expands an inventory host entry like Ansible's _expand_hostpattern: an optional `:port`, then
 * every `[begin:end]` or `[begin:end:step]` range, numeric (zero-padded when begin is, e.g.
 * `[01:10]`) or alphabetic (`[a:f]`), left to right. `location` is where the entry was written.
 */
export function expandHostPattern(entry: string, location: string): ExpandedHosts {
  const withPort = HOST_WITH_PORT.exec(entry);
  const names = expandRanges(withPort?.[1] ?? entry, entry, location);
  return withPort ? { names, port: Number(withPort[2]) } : { names };
}

function expandRanges(name: string, entry: string, location: string): string[] {
  const open = name.indexOf('[');
  if (open < 0) return [name];
  const close = name.indexOf(']', open);
  if (close < 0) throw rangeError(entry, 'has a "[" without a closing "]"', location);
  const head = name.slice(0, open);
  const tail = name.slice(close + 1);
  return rangeValues(name.slice(open + 1, close), entry, location).flatMap((value) =>
    expandRanges(head + value + tail, entry, location),
  );
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

function rangeValues(spec: string, entry: string, location: string): string[] {
  const bounds = spec.split(':');
  if (bounds.length !== 2 && bounds.length !== 3) throw rangeError(entry, 'must be [begin:end] or [begin:end:step]', location);
  const [begin = '', end = '', stepText = '1'] = bounds;
  const start = begin === '' ? '0' : begin;
  if (end === '') throw rangeError(entry, 'must give an end value', location);
  if (!/^\d+$/.test(stepText) || Number(stepText) === 0) throw rangeError(entry, 'step must be a positive integer', location);
  const step = Number(stepText);
  if (/^[a-zA-Z]$/.test(start) && /^[a-zA-Z]$/.test(end)) return letterRange(start, end, step, entry, location);
  if (/^\d+$/.test(start) && /^\d+$/.test(end)) return numberRange(start, end, step, entry, location);
  throw rangeError(entry, 'bounds must both be numbers or both single letters', location);
}

function letterRange(start: string, end: string, step: number, entry: string, location: string): string[] {
  const from = LETTERS.indexOf(start);
  const to = LETTERS.indexOf(end);
  if (from > to) throw rangeError(entry, 'must have begin <= end', location);
  return [...LETTERS.slice(from, to + 1)].filter((_, index) => index % step === 0);
}

function numberRange(start: string, end: string, step: number, entry: string, location: string): string[] {
  // A leading zero asks for fixed-width names, so both bounds must be written at that width.
  const width = start.length > 1 && start.startsWith('0') ? start.length : 0;
  if (width > 0 && end.length !== width) throw rangeError(entry, 'must write begin and end with the same number of digits', location);
  const from = Number(start);
  const to = Number(end);
  // Ansible silently yields no host here; an entry that defines nothing is always a typo.
  if (from > to) throw rangeError(entry, 'must have begin <= end', location);
  const values: string[] = [];
  for (let value = from; value <= to; value += step) values.push(String(value).padStart(width, '0'));
  return values;
}

function rangeError(entry: string, problem: string, location: string): InputError {
  return new InputError(`host range in '${entry}' ${problem}`, { location });
}

/**
 * Ansible's host pattern selection (InventoryManager.get_hosts): the pattern is split on commas,
 * or else on colons outside brackets; `&x` parts intersect and `!x` parts exclude, applied after
 * all plain parts whatever their position (only modifiers means 'all' first). Each part is a host
 * name, or a group or host name matched exactly, by shell glob, or by `~regex` (anchored at the
 * start only, like Python's re.match), with an optional subscript `[i]`, `[-i]`, `[i:j]`
 * (inclusive) or `[i:]`.
 *
 * Unlike Ansible, which warns and skips a part that matches nothing (and invents an implicit
 * localhost), this throws: a mistyped group in a production run should stop it, not shrink it.
 */
export function selectHosts(inventory: Inventory, pattern: string): InventoryHost[] {
  const parts = splitPattern(inventory, pattern);
  if (parts.length === 0) throw new InputError(`empty host pattern '${pattern}'`);
  const plain = parts.filter((part) => !part.startsWith('&') && !part.startsWith('!'));
  const intersect = parts.filter((part) => part.startsWith('&'));
  const exclude = parts.filter((part) => part.startsWith('!'));
  const selected = new Set<string>();
  for (const part of plain.length > 0 ? plain : ['all']) for (const host of matchPart(inventory, part, pattern)) selected.add(host);
  for (const part of intersect) {
    const keep = new Set(matchPart(inventory, part.slice(1), pattern));
    for (const host of selected) if (!keep.has(host)) selected.delete(host);
  }
  for (const part of exclude) for (const host of matchPart(inventory, part.slice(1), pattern)) selected.delete(host);
  return [...inventory.hosts.values()].filter((host) => selected.has(host.name));
}

/** Parts between colons (or blanks), where a complete `[...]` counts as one unit so `web[0:2]` stays whole. */
const COLON_SEPARATED = /(?:\[[^\]]*\]|[^\s:])+/g;

function splitPattern(inventory: Inventory, pattern: string): string[] {
  const trimmed = pattern.trim();
  // A lone host name may itself contain colons (an IPv6 address); Ansible checks for an address first.
  if (inventory.hosts.has(trimmed)) return [trimmed];
  const parts = trimmed.includes(',') ? trimmed.split(',') : (trimmed.match(COLON_SEPARATED) ?? []);
  return parts.map((part) => part.trim()).filter((part) => part !== '');
}

/** `expr[0]`, `expr[-1]`, `expr[1:3]`, `expr[2:]`; never on a regex, where brackets are regex syntax. */
const SUBSCRIPT = /^(.+)\[(?:(-?\d+)|(\d+):(\d*))\]$/;

function matchPart(inventory: Inventory, part: string, pattern: string): string[] {
  if (inventory.hosts.has(part)) return [part];
  const subscript = part.startsWith('~') ? null : SUBSCRIPT.exec(part);
  const expr = subscript?.[1] ?? part;
  const hosts = enumerate(inventory, expr, pattern);
  if (!subscript || hosts.length === 0) return hosts;
  const [, , index, start, end] = subscript;
  if (index !== undefined) return [pickIndex(hosts, Number(index), part, pattern)];
  return hosts.slice(Number(start), end ? Number(end) + 1 : undefined);
}

function pickIndex(hosts: string[], index: number, part: string, pattern: string): string {
  const host = hosts[index < 0 ? hosts.length + index : index];
  if (host === undefined) {
    throw new InputError(`host pattern '${pattern}': '${part}' is out of range, it matches ${hosts.length} host(s)`);
  }
  return host;
}

/**
 * Ansible's _enumerate_matches: all hosts of every matching group; host names are also tried when
 * no group matched or the expression is a glob or regex (or contains a dot, as addresses do).
 */
function enumerate(inventory: Inventory, expr: string, pattern: string): string[] {
  const matches = matcher(expr, pattern);
  const groups = [...inventory.groups.keys()].filter(matches);
  const hosts = groups.flatMap((group) => groupHosts(inventory, group));
  if (groups.length === 0 || /^~|[.?*[]/.test(expr)) hosts.push(...[...inventory.hosts.keys()].filter(matches));
  if (groups.length === 0 && hosts.length === 0) {
    const known = [...inventory.groups.keys()].join(', ');
    throw new InputError(`host pattern '${pattern}': '${expr}' matches no group or host in ${inventory.source} (groups: ${known})`);
  }
  return [...new Set(hosts)];
}

/**
 * A group's hosts in the order Ansible's Group.get_hosts gives them, which subscripts index:
 * its own hosts, then its descendants' level by level. (Ansible walks levels below the first
 * through a set, so its order there is not even stable; definition order is.)
 */
function groupHosts(inventory: Inventory, name: string): string[] {
  const hosts: string[] = [];
  const seen = new Set<string>();
  for (let level = [name]; level.length > 0; ) {
    const next: string[] = [];
    for (const groupName of level) {
      const group = inventory.groups.get(groupName);
      if (!group || seen.has(groupName)) continue;
      seen.add(groupName);
      hosts.push(...group.hosts);
      next.push(...group.children);
    }
    level = next;
  }
  return hosts;
}

function matcher(expr: string, pattern: string): (name: string) => boolean {
  try {
    const regex = expr.startsWith('~') ? new RegExp(`^(?:${expr.slice(1)})`) : globToRegExp(expr);
    return (name) => regex.test(name);
  } catch {
    throw new InputError(`host pattern '${pattern}': '${expr}' is not a valid regular expression`);
  }
}

/** Python's fnmatch.translate: `*`, `?`, `[seq]`, `[!seq]`; case-sensitive, whole-name match. */
function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob.charAt(i);
    const classEnd = char === '[' ? charClassEnd(glob, i) : -1;
    if (char === '*') source += '.*';
    else if (char === '?') source += '.';
    else if (classEnd > 0) {
      source += charClass(glob.slice(i + 1, classEnd));
      i = classEnd;
    } else source += char.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  }
  return new RegExp(`^(?:${source})$`, 's');
}

/** Index of the `]` closing a class opened at `open` (a `]` right after `[` or `[!` is literal), or -1. */
function charClassEnd(glob: string, open: number): number {
  let i = open + 1;
  if (glob.charAt(i) === '!') i++;
  if (glob.charAt(i) === ']') i++;
  return glob.indexOf(']', i);
}

function charClass(body: string): string {
  const escaped = body.replace(/\\/g, '\\\\');
  if (escaped.startsWith('!')) return `[^${escaped.slice(1)}]`;
  return escaped.startsWith('^') ? `[\\${escaped}]` : `[${escaped}]`;
}
