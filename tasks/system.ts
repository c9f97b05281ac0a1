import { isIP } from 'node:net';
import { defineTask, sh, type CheckContext, type Drift, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { isRhelFamilyOs } from './rhel.js';
import { requireAbsolutePath } from './validate.js';

/*
 * Host identity and system settings: update-alternatives, /etc/hosts, the hostname,
 * /etc/default/kubelet (RHEL: /etc/sysconfig/kubelet). Files are edited by the pure functions here (unit-tested against
 * fixtures) and written atomically.
 */

/* ------------------------------------------------------------------ ensureAlternatives */

/** What `update-alternatives --query <name>` says. */
export interface AlternativesState {
  name: string;
  link: string;
  /** `auto` (the highest priority wins, and may change with a package upgrade) or `manual` (pinned). */
  status: string;
  best: string;
  /** The path the link points to now; null when none. */
  value: string | null;
  alternatives: { path: string; priority: number }[];
}

/** Parses `update-alternatives --query` (Debian's machine-readable format: stanzas of `Key: value`). Pure. */
export function parseAlternatives(output: string): AlternativesState {
  const state: AlternativesState = { name: '', link: '', status: '', best: '', value: null, alternatives: [] };
  let current: { path: string; priority: number } | null = null;
  for (const line of output.split('\n')) {
    const match = /^([A-Za-z]+): ?(.*)$/.exec(line);
    if (!match) continue; // blank lines and slave links (indented)
    const [, key, value = ''] = match;
    if (key === 'Alternative') {
      current = { path: value, priority: 0 };
      state.alternatives.push(current);
    } else if (key === 'Priority' && current) {
      current.priority = Number(value);
    } else if (!current) {
      if (key === 'Name') state.name = value;
      else if (key === 'Link') state.link = value;
      else if (key === 'Status') state.status = value;
      else if (key === 'Best') state.best = value;
      else if (key === 'Value') state.value = value === '' || value === 'none' ? null : value;
    }
  }
  return state;
}

/** Drift between an alternatives group and the path wanted: selected, and pinned (manual) so upgrades keep it. Pure. */
export function alternativesDrift(state: AlternativesState, path: string): Drift[] {
  if (!state.alternatives.some((a) => a.path === path)) {
    throw new Error(`${path} is not an alternative for ${state.name}; registered: ${state.alternatives.map((a) => a.path).join(', ') || 'none'}`);
  }
  if (state.value !== path) return [{ subject: state.name, current: state.value ?? 'none', desired: path }];
  if (state.status !== 'manual') return [{ subject: `${state.name} mode`, current: state.status, desired: 'manual' }];
  return [];
}

export interface AlternativesParams {
  /** The alternatives group: `iptables`. */
  name: string;
  /** The alternative to select: `/usr/sbin/iptables-legacy`. */
  path: string;
  /**
   * When the group does not exist (`no alternatives for …`) or `path` is not one of its
   * alternatives (the package that provides it is not installed), there is nothing to select: in
   * sync. Default false: fail.
   */
  skipWhenAbsent?: boolean;
}

/**
 * Ensures an alternatives group points at `path`, selected in manual mode (`update-alternatives
 * --set`), so a package upgrade with a higher priority does not switch it back. Checked with
 * `update-alternatives --query`. Fails when the group does not exist (install its package first)
 * or `path` is not one of its alternatives. Id: `alternatives:<name>`.
 *
 * @example ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' })
 */
export function ensureAlternatives(params: PerHostParams<AlternativesParams>, options?: TaskOptions): Task<void> {
  return defineTask<AlternativesParams>(
    {
      kind: 'alternatives',
      id: (p) => `alternatives:${p.name}`,
      title: (p) => `alternative ${p.name} → ${p.path}`,
      desired: (p) => ({ name: p.name, path: p.path }),
      validate: (p) => {
        if (typeof p.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(p.name)) throw new Error(`name is not an alternatives group name: ${JSON.stringify(p.name)}`);
        requireAbsolutePath('path', p.path);
      },
      async check(ctx, p) {
        const result = await ctx.probe(sh`LC_ALL=C update-alternatives --query ${p.name}`);
        if (result.code !== 0) {
          const absent = /no alternatives for/.test(result.stderr);
          // Check mode on a fresh host: the package that registers the group is still to be
          // installed by an earlier task, so the group's absence says nothing yet.
          const packages = ctx.pendingChanges.filter((title) => /^(packages|rpm packages) /.test(title));
          if (absent && packages.length) return [{ subject: `alternative ${p.name}`, desired: p.path, pending: packages.join(', ') }];
          if (p.skipWhenAbsent && absent) return [];
          throw new Error(`update-alternatives --query ${p.name} failed: ${result.stderr.trim() || `exit ${result.code}`} (is the package that provides ${p.name} installed?)`);
        }
        const state = parseAlternatives(result.stdout);
        if (p.skipWhenAbsent && !state.alternatives.some((a) => a.path === p.path)) {
          const packages = ctx.pendingChanges.filter((title) => /^(packages|rpm packages) /.test(title));
          return packages.length ? [{ subject: `alternative ${p.name}`, current: state.value ?? 'none', desired: p.path, pending: packages.join(', ') }] : [];
        }
        return alternativesDrift(state, p.path);
      },
      async apply(ctx, p) {
        await ctx.run(sh`update-alternatives --set ${p.name} ${p.path}`);
      },
    },
    params,
    options,
  );
}

/**
 * The legacy iptables backend, as seed 002 does before installing Kubernetes (kube-proxy of that
 * era duplicated rules through the nft compatibility layer): `iptables` and `ip6tables` (the
 * `iptables` package must be installed), and `arptables` / `ebtables` when their legacy tools are
 * installed (Debian's `arptables` and `ebtables` packages; `iptables` alone registers only their
 * nft variants, and then there is nothing to select).
 *
 * @example await play('iptables', 'all', [ensurePackages(['iptables']), ...ensureIptablesLegacy()])
 */
export function ensureIptablesLegacy(options?: TaskOptions): Task<void>[] {
  return [
    ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' }, options),
    ensureAlternatives({ name: 'ip6tables', path: '/usr/sbin/ip6tables-legacy' }, options),
    ensureAlternatives({ name: 'arptables', path: '/usr/sbin/arptables-legacy', skipWhenAbsent: true }, options),
    ensureAlternatives({ name: 'ebtables', path: '/usr/sbin/ebtables-legacy', skipWhenAbsent: true }, options),
  ];
}

/* ------------------------------------------------------------------ /etc/hosts: parsing and editing */

export interface HostsEntry {
  ip: string;
  names: readonly string[];
}

/** One line of /etc/hosts with the positions of its fields, so edits touch only what they must. */
interface HostsLine {
  text: string;
  /** The address, or null for blank lines, comments and lines that do not start with an address. */
  ip: string | null;
  /** Offset just after the address. */
  ipEnd: number;
  /** Names after the address, with their [start, end) offsets in `text`. */
  names: { name: string; start: number; end: number }[];
}

function parseHostsLine(text: string): HostsLine {
  const hash = text.indexOf('#');
  const content = hash >= 0 ? text.slice(0, hash) : text;
  const tokens = [...content.matchAll(/\S+/g)].map((m) => ({ name: m[0], start: m.index!, end: m.index! + m[0].length }));
  const first = tokens[0];
  if (!first || isIP(first.name) === 0) return { text, ip: null, ipEnd: 0, names: [] };
  return { text, ip: first.name, ipEnd: first.end, names: tokens.slice(1) };
}

function splitFileLines(text: string): { lines: string[]; finalNewline: boolean } {
  if (text === '') return { lines: [], finalNewline: true };
  const finalNewline = text.endsWith('\n');
  return { lines: (finalNewline ? text.slice(0, -1) : text).split('\n'), finalNewline };
}

function joinFileLines(lines: string[], finalNewline: boolean): string {
  if (lines.length === 0) return '';
  return lines.join('\n') + (finalNewline ? '\n' : '');
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
const sameAddress = (a: string, b: string) => same(a, b);

/**
 * The line without the names in `drop`, null when no name is left. Each kept name keeps the blanks
 * before it (the first kept name takes the blanks that followed the address), and whatever
 * followed the last name (blanks, a comment) stays.
 */
function withoutNames(line: HostsLine, drop: readonly string[]): string | null {
  const kept = line.names.filter((n) => !drop.some((d) => same(d, n.name)));
  if (kept.length === line.names.length) return line.text;
  if (kept.length === 0) return null;
  const lead = (index: number) => line.text.slice(index === 0 ? line.ipEnd : line.names[index - 1]!.end, line.names[index]!.start);
  let text = line.text.slice(0, line.ipEnd);
  kept.forEach((name, i) => {
    text += lead(i === 0 ? 0 : line.names.indexOf(name)) + name.name;
  });
  return text + line.text.slice(line.names[line.names.length - 1]!.end);
}

/** The line with `add` appended after its last name (before any trailing blanks or comment). */
function withNames(line: HostsLine, add: readonly string[]): string {
  const at = line.names.length ? line.names[line.names.length - 1]!.end : line.ipEnd;
  return `${line.text.slice(0, at)} ${add.join(' ')}${line.text.slice(at)}`;
}

/**
 * Edits /etc/hosts so each entry's names resolve to its address (pure; everything else kept byte
 * for byte):
 * - a name found on a line of another address of the same family (IPv4/IPv6) is moved: removed
 *   from that line, and the line removed when no name is left on it (`localhost` on `::1` does
 *   not stop `localhost` on 127.0.0.1);
 * - an address that already has a line keeps it and its other names; the missing names are
 *   appended to it (the first line of that address, the one the resolver reads);
 * - otherwise a line `<ip> <names…>` is appended.
 */
export function editHosts(text: string, entries: readonly HostsEntry[]): string {
  const { lines, finalNewline } = splitFileLines(text);
  let parsed = lines.map(parseHostsLine);
  let changed = false;
  let appended = false;
  for (const entry of entries) {
    const family = isIP(entry.ip);
    const next: HostsLine[] = [];
    for (const line of parsed) {
      if (line.ip === null || sameAddress(line.ip, entry.ip) || isIP(line.ip) !== family) {
        next.push(line);
        continue;
      }
      const edited = withoutNames(line, entry.names);
      if (edited !== line.text) changed = true;
      if (edited !== null) next.push(parseHostsLine(edited));
    }
    parsed = next;
    const index = parsed.findIndex((line) => line.ip !== null && sameAddress(line.ip, entry.ip));
    if (index >= 0) {
      const line = parsed[index]!;
      const missing = entry.names.filter((name) => !line.names.some((n) => same(n.name, name)));
      if (missing.length > 0) {
        parsed[index] = parseHostsLine(withNames(line, missing));
        changed = true;
      }
    } else {
      parsed.push(parseHostsLine(`${entry.ip} ${entry.names.join(' ')}`));
      changed = appended = true;
    }
  }
  if (!changed) return text;
  // A file without a final newline keeps it so, unless a line is appended (which ends with one).
  return joinFileLines(parsed.map((l) => l.text), finalNewline || appended);
}

const HOSTNAME_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A name for /etc/hosts: a hostname, possibly with dots, underscores or capitals; no blanks or `#`. */
function requireHostsName(name: unknown, where: string): asserts name is string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/.test(name) || name.length > 253) {
    throw new Error(`${where} is not a host name: ${JSON.stringify(name)}`);
  }
}

/** Validates entries: addresses, names, and no name wanted at two addresses of one family. */
export function validateHostsEntries(entries: readonly HostsEntry[]): void {
  if (!Array.isArray(entries) || entries.length === 0) throw new Error('entries must be a non-empty list of { ip, names }');
  const owner = new Map<string, string>();
  entries.forEach((entry: HostsEntry, i: number) => {
    if (typeof entry?.ip !== 'string' || isIP(entry.ip) === 0) throw new Error(`entries[${i}].ip is not an IP address: ${JSON.stringify(entry?.ip)}`);
    if (!Array.isArray(entry.names) || entry.names.length === 0) throw new Error(`entries[${i}].names must be a non-empty list`);
    entry.names.forEach((name: string, j: number) => {
      requireHostsName(name, `entries[${i}].names[${j}]`);
      const key = `${isIP(entry.ip)}:${name.toLowerCase()}`;
      const previous = owner.get(key);
      if (previous !== undefined && !sameAddress(previous, entry.ip)) throw new Error(`${name} is wanted at both ${previous} and ${entry.ip}`);
      owner.set(key, entry.ip);
    });
  });
}

export interface HostsEntriesParams {
  entries: readonly HostsEntry[];
}

/**
 * Ensures names resolve to addresses through /etc/hosts (seed 004: every node knows every other
 * by name, no DNS), editing only what must change (see {@link editHosts}): missing names are
 * added to their address's line, names found at another address are moved. The file is written
 * atomically, keeping its mode and owner. Id: `hosts:<names>`.
 *
 * @example
 * ensureHostsEntries([
 *   { ip: '192.168.0.61', names: ['node1.internal', 'node1'] },
 *   { ip: '192.168.0.62', names: ['node2.internal', 'node2'] },
 * ])
 */
export function ensureHostsEntries(entries: PerHost<readonly HostsEntry[]>, options?: TaskOptions): Task<void> {
  return defineTask<HostsEntriesParams>(
    {
      kind: 'hosts',
      id: (p) => `hosts:${p.entries.flatMap((e) => e.names).join(',')}`,
      title: (p) => `/etc/hosts: ${p.entries.map((e) => `${e.names[0]} → ${e.ip}`).join(', ')}`,
      validate: (p) => validateHostsEntries(p.entries),
      check: (ctx, p) => fileDrift(ctx, HOSTS, (text) => editHosts(text, p.entries)),
      async apply(ctx, p) {
        const current = (await ctx.readText(HOSTS)) ?? '';
        await ctx.writeFile(HOSTS, editHosts(current, p.entries));
      },
    },
    { entries } as PerHostParams<HostsEntriesParams>,
    options,
  );
}

const HOSTS = '/etc/hosts';

async function fileDrift(ctx: CheckContext, path: string, edit: (text: string) => string): Promise<Drift[]> {
  const current = await ctx.readText(path);
  const desired = edit(current ?? '');
  return desired === current ? [] : [{ subject: path, file: path, current, desired }];
}

/* ------------------------------------------------------------------ ensureHostname */

/** The names of the 127.0.1.1 line for a hostname: `node1.internal node1` (Debian's layout), or just `node1`. */
function hostnameNames(name: string): string[] {
  const short = name.split('.')[0]!;
  return short === name ? [name] : [name, short];
}

/**
 * Edits /etc/hosts so the hostname resolves (pure; other lines kept byte for byte), as Debian does
 * with its 127.0.1.1 line:
 * - when a line of another address already maps `name` (ensureHostsEntries gave the node its real
 *   address), no 127.0.1.1 line is needed: `name`, its short form and the `previous` hostname are
 *   removed from 127.0.1.1 lines (a line left without names goes);
 * - otherwise the first 127.0.1.1 line names exactly `name` and its short form (the old names on
 *   it, the previous hostname's, are replaced); without one, `127.0.1.1<TAB>name short` is
 *   inserted after the 127.0.0.1 line (or appended).
 */
export function editHostnameLine(text: string, name: string, previous?: string): string {
  const { lines, finalNewline } = splitFileLines(text);
  const parsed = lines.map(parseHostsLine);
  const wanted = hostnameNames(name);
  const isHostnameLine = (line: HostsLine) => line.ip === '127.0.1.1';
  const mappedElsewhere = parsed.some((line) => line.ip !== null && !isHostnameLine(line) && line.names.some((n) => same(n.name, name)));
  const out: string[] = [];
  if (mappedElsewhere) {
    const drop = [...wanted, ...(previous ? hostnameNames(previous) : [])];
    for (const line of parsed) {
      const edited = isHostnameLine(line) ? withoutNames(line, drop) : line.text;
      if (edited !== null) out.push(edited);
    }
  } else {
    const index = parsed.findIndex(isHostnameLine);
    if (index >= 0) {
      const line = parsed[index]!;
      const current = line.names.map((n) => n.name);
      const exact = current.length === wanted.length && current.every((n, i) => n === wanted[i]);
      parsed.forEach((l, i) => {
        if (i !== index || exact) out.push(l.text);
        else if (line.names.length === 0) out.push(`${l.text.slice(0, l.ipEnd)}\t${wanted.join(' ')}${l.text.slice(l.ipEnd)}`);
        else out.push(`${l.text.slice(0, line.names[0]!.start)}${wanted.join(' ')}${l.text.slice(line.names[line.names.length - 1]!.end)}`);
      });
    } else {
      const loopback = parsed.findIndex((l) => l.ip === '127.0.0.1');
      const added = `127.0.1.1\t${wanted.join(' ')}`;
      out.push(...parsed.map((l) => l.text));
      out.splice(loopback >= 0 ? loopback + 1 : out.length, 0, added);
    }
  }
  const result = joinFileLines(out, finalNewline || out.length > lines.length);
  return result === joinFileLines(lines, finalNewline) ? text : result;
}

export interface HostnameParams {
  name: string;
}

function requireHostname(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || !name.split('.').every((label) => HOSTNAME_LABEL.test(label))) {
    throw new Error(
      `hostname must be lowercase letters, digits and inner hyphens, in dot-separated labels, at most 64 characters (a valid Kubernetes node name), got ${JSON.stringify(name)}`,
    );
  }
}

/**
 * Ensures the host's name (seed 004: `hostnamectl set-hostname node1.internal`): the running
 * hostname (`hostname`), /etc/hostname for the next boot, and /etc/hosts resolving it (see
 * {@link editHostnameLine}). Sets it with `hostnamectl set-hostname`; where that cannot work
 * (no D-Bus or systemd-hostnamed, as in some containers) it writes /etc/hostname and runs
 * `hostname NAME`. Either way the result is verified with `hostname`. Id: `hostname`.
 *
 * @example ensureHostname((host) => `${host.name}.internal`)
 */
export function ensureHostname(name: PerHost<string>, options?: TaskOptions): Task<void> {
  return defineTask<HostnameParams>(
    {
      kind: 'hostname',
      id: () => 'hostname',
      title: (p) => `hostname ${p.name}`,
      validate: (p) => requireHostname(p.name),
      async check(ctx, p) {
        const current = await currentHostname(ctx);
        const drift: Drift[] = [];
        if (current !== p.name) drift.push({ subject: 'hostname', current, desired: p.name });
        const file = await ctx.readText('/etc/hostname');
        if (file !== `${p.name}\n`) drift.push({ subject: '/etc/hostname', file: '/etc/hostname', current: file, desired: `${p.name}\n` });
        drift.push(...(await fileDrift(ctx, HOSTS, (text) => editHostnameLine(text, p.name, current))));
        return drift;
      },
      async apply(ctx, p) {
        const previous = await currentHostname(ctx);
        const file = await ctx.readText('/etc/hostname');
        if (previous !== p.name || file !== `${p.name}\n`) {
          const viaHostnamectl = await ctx.exec(sh`hostnamectl set-hostname ${p.name}`);
          if (viaHostnamectl.code !== 0) {
            ctx.log(`hostnamectl failed (${viaHostnamectl.stderr.trim() || `exit ${viaHostnamectl.code}`}); writing /etc/hostname and running hostname`);
          }
          // hostnamectl writes /etc/hostname itself; make sure of it whichever way the name was set.
          if ((await ctx.readText('/etc/hostname')) !== `${p.name}\n`) await ctx.writeFile('/etc/hostname', `${p.name}\n`, { mode: '0644' });
          if ((await currentHostname(ctx)) !== p.name) await ctx.run(sh`hostname ${p.name}`);
        }
        const hosts = (await ctx.readText(HOSTS)) ?? '';
        const edited = editHostnameLine(hosts, p.name, previous);
        if (edited !== hosts) await ctx.writeFile(HOSTS, edited);
      },
    },
    { name } as PerHostParams<HostnameParams>,
    options,
  );
}

async function currentHostname(ctx: CheckContext): Promise<string> {
  const result = await ctx.probe(sh`hostname`);
  if (result.code !== 0) throw new Error(`hostname failed: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

/* ------------------------------------------------------------------ ensureKubeletExtraArgs */

/**
 * The environment file kubeadm's kubelet drop-in (10-kubeadm.conf) reads KUBELET_EXTRA_ARGS from
 * (pure): the deb packages' `EnvironmentFile=-/etc/default/kubelet`, the rpm packages'
 * `EnvironmentFile=-/etc/sysconfig/kubelet` (pkgs.k8s.io ships both drop-ins that way).
 */
export function kubeletEnvironmentFile(osId: string): '/etc/default/kubelet' | '/etc/sysconfig/kubelet' {
  return isRhelFamilyOs(osId) ? '/etc/sysconfig/kubelet' : '/etc/default/kubelet';
}
const EXTRA_ARGS_LINE = /^(\s*(?:export\s+)?KUBELET_EXTRA_ARGS=)(.*)$/;

/** Splits an environment-file value into its quote character and content. */
function unquote(value: string): { quote: string; content: string; rest: string } {
  const first = value[0];
  if (first === '"' || first === "'") {
    const end = value.indexOf(first, 1);
    if (end > 0) return { quote: first, content: value.slice(1, end), rest: value.slice(end + 1) };
  }
  return { quote: '', content: value, rest: '' };
}

/**
 * Sets kubelet flags in /etc/default/kubelet's (RHEL: /etc/sysconfig/kubelet's) `KUBELET_EXTRA_ARGS` (read by kubeadm's drop-in as
 * an EnvironmentFile), merging with the flags already there (pure; other lines byte for byte):
 * `--name=value` and `--name value` forms are replaced in place by `--name=value`, repeats of a
 * managed flag are dropped, new flags are appended. The value keeps its quotes; an unquoted value
 * gets double quotes once it has several flags. The last KUBELET_EXTRA_ARGS line is the one
 * systemd uses, so that is the one edited; without one, a line is appended.
 */
export function editKubeletExtraArgs(text: string, flags: Readonly<Record<string, string>>): string {
  const { lines, finalNewline } = splitFileLines(text);
  let index = -1;
  lines.forEach((line, i) => {
    if (EXTRA_ARGS_LINE.test(line)) index = i;
  });
  const match = index >= 0 ? EXTRA_ARGS_LINE.exec(lines[index]!) : null;
  const prefix = match ? match[1]! : 'KUBELET_EXTRA_ARGS=';
  const { quote, content, rest } = unquote(match ? match[2]! : '');
  const tokens = content.split(/\s+/).filter(Boolean);
  const out: string[] = [];
  const done = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const flag = /^--?([A-Za-z0-9-]+)(=.*)?$/.exec(token);
    const name = flag?.[1];
    if (name === undefined || !(name in flags)) {
      out.push(token);
      continue;
    }
    // `--node-ip 10.0.0.1`: the value is the next token.
    if (flag![2] === undefined && tokens[i + 1] !== undefined && !tokens[i + 1]!.startsWith('-')) i++;
    if (!done.has(name)) out.push(`--${name}=${flags[name]}`);
    done.add(name);
  }
  for (const [name, value] of Object.entries(flags)) if (!done.has(name)) out.push(`--${name}=${value}`);
  const joined = out.join(' ');
  if (match && joined === tokens.join(' ') && joined === content) return text;
  const q = quote || (out.length > 1 ? '"' : '');
  const line = `${prefix}${q}${joined}${q}${rest}`;
  if (index >= 0) {
    if (line === lines[index]) return text;
    lines[index] = line;
    return joinFileLines(lines, finalNewline);
  }
  return joinFileLines([...lines, line], true);
}

export interface KubeletExtraArgsParams {
  /** `--node-ip`: the address the node registers with (seed 002, hosts with several interfaces); `a,b` for dual stack. */
  nodeIp?: string;
  /** Other kubelet flags to set, without the dashes: `{ 'cgroup-driver': 'systemd' }`. */
  flags?: Readonly<Record<string, string>>;
}

/**
 * Ensures kubelet flags in the kubelet's environment file — /etc/default/kubelet on Debian and
 * Ubuntu (seed 002: `echo "KUBELET_EXTRA_ARGS='--node-ip=172.27.11.10'" > /etc/default/kubelet`),
 * /etc/sysconfig/kubelet on the RHEL family (see {@link kubeletEnvironmentFile}, chosen from the
 * host's os-release) — merged with the flags already there (see {@link editKubeletExtraArgs}).
 * The kubelet reads the file when it starts: notify `restartService('kubelet')` to apply a change
 * to a running kubelet. Run it after the kubelet package is installed (dpkg would otherwise find a
 * conffile it did not write). Id: `kubelet-extra-args`.
 *
 * @example ensureKubeletExtraArgs({ nodeIp: (host) => String(host.vars.node_ip) }, { notify: [restartService('kubelet')] })
 */
export function ensureKubeletExtraArgs(params: PerHostParams<KubeletExtraArgsParams>, options?: TaskOptions): Task<void> {
  const wanted = (p: KubeletExtraArgsParams) => ({ ...(p.flags ?? {}), ...(p.nodeIp === undefined ? {} : { 'node-ip': p.nodeIp }) });
  return defineTask<KubeletExtraArgsParams>(
    {
      kind: 'kubelet-extra-args',
      id: () => 'kubelet-extra-args',
      title: (p) => `kubelet ${Object.entries(wanted(p)).map(([k, v]) => `--${k}=${v}`).join(' ')}`,
      validate: (p) => {
        if (p.nodeIp !== undefined) {
          if (typeof p.nodeIp !== 'string' || !p.nodeIp.split(',').every((ip) => isIP(ip) !== 0)) throw new Error(`nodeIp must be an IP address (or two, comma-separated), got ${JSON.stringify(p.nodeIp)}`);
        }
        for (const [name, value] of Object.entries(p.flags ?? {})) {
          if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`flag name must be like "cgroup-driver" (no dashes in front), got ${JSON.stringify(name)}`);
          if (typeof value !== 'string' || !/^[^\s'"\\$`]+$/.test(value)) throw new Error(`flag ${name}: value must be non-empty, without blanks, quotes, $, \` or \\, got ${JSON.stringify(value)}`);
        }
        if (p.nodeIp !== undefined && p.flags && 'node-ip' in p.flags) throw new Error('give node-ip once: as nodeIp or in flags');
        if (Object.keys(wanted(p)).length === 0) throw new Error('nothing to set: give nodeIp or flags');
      },
      check: (ctx, p) => fileDrift(ctx, kubeletEnvironmentFile(ctx.host.facts.osId), (text) => editKubeletExtraArgs(text, wanted(p))),
      async apply(ctx, p) {
        const path = kubeletEnvironmentFile(ctx.host.facts.osId);
        const current = (await ctx.readText(path)) ?? '';
        await ctx.writeFile(path, editKubeletExtraArgs(current, wanted(p)));
      },
    },
    params,
    options,
  );
}
