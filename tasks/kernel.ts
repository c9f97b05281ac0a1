import { sh, type Command } from '../runner/quote.js';
import { TransportError } from '../runner/errors.js';
import {
  defineTask,
  type ApplyContext,
  type CheckContext,
  type Drift,
  type PerHost,
  type PerHostParams,
  type Task,
  type TaskOptions,
  type TaskSpec,
} from '../runner/task.js';

/** The first line of every file Capstan owns in /etc/modules-load.d and /etc/sysctl.d. */
export const MANAGED_HEADER = '# Managed by Capstan';

/**
 * One identity a task claims beside its own id, with the state it wants there. A task that manages
 * several things (a sysctl drop-in with several keys) claims each, so that two tasks wanting
 * different values for one key can be rejected when the playbook loads. The engine checks only
 * `id` + `desired` today; `claims` on a spec is ready for it to check too (runner/run.ts `claim`).
 */
export interface Claim {
  id: string;
  desired: unknown;
}

type SpecWithClaims<P, R = void> = TaskSpec<P, R> & { claims(params: P): Claim[] };

/** Reads a file as latin1 text, so that writing it back with `Buffer.from(text, 'latin1')` keeps every byte. */
async function readBytesAsText(ctx: CheckContext, path: string): Promise<string | null> {
  const bytes = await ctx.readFile(path);
  return bytes === null ? null : bytes.toString('latin1');
}

function decodeBase64(data: string): string {
  return Buffer.from(data, 'base64').toString('latin1');
}

/* ================================================================== modules */

export const MODULES_FILE = '/etc/modules-load.d/k8s.conf';

/** modprobe treats `-` and `_` in module names alike; so do we. */
function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

/** The modules a modules-load.d file loads: non-empty lines that are not comments (`#` or `;`). */
export function listedModules(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith(';'));
}

/**
 * The modules-load.d file with `name` in it (pure). A new file is the header and the module; an
 * existing file that lists the module is returned unchanged, byte for byte; otherwise the module
 * is appended (and the header put first if missing). So several ensureModule tasks sharing the
 * file each add their own line, in first-added order, and never undo each other.
 */
export function withModule(text: string | null, name: string): string {
  if (text === null || text.trim() === '') return `${MANAGED_HEADER}\n${name}\n`;
  if (listedModules(text).some((listed) => moduleKey(listed) === moduleKey(name))) return text;
  const body = text.endsWith('\n') ? text : `${text}\n`;
  const headed = body.split('\n')[0] === MANAGED_HEADER ? body : `${MANAGED_HEADER}\n${body}`;
  return `${headed}${name}\n`;
}

/**
 * Probe for one module: the running kernel, whether the module is active (loaded, listed in
 * /proc/modules; built in, listed in modules.builtin — br_netfilter built in has no /sys/module
 * entry — or present under /sys/module), else whether modprobe can find it; and the boot file.
 */
export const MODULE_PROBE = `m=$1 f=$2
k=$(uname -r)
echo "kernel $k"
n=$(printf '%s' "$m" | tr - _)
if [ -r /proc/modules ] && awk -v n="$n" '$1 == n { found = 1 } END { exit !found }' /proc/modules; then echo "state loaded"
elif [ -r "/lib/modules/$k/modules.builtin" ] && tr - _ < "/lib/modules/$k/modules.builtin" | grep -Eq "(^|/)$n[.]ko([.](gz|xz|zst))?\$"; then echo "state builtin"
elif [ -d "/sys/module/$n" ]; then echo "state sysfs"
elif modprobe -n -q -- "$m" 2>/dev/null; then echo "state available"
else echo "state missing"; fi
if [ -f "$f" ]; then printf 'file '; base64 -w0 < "$f"; echo; fi
`;

export interface ModuleProbe {
  kernel: string;
  state: 'loaded' | 'builtin' | 'sysfs' | 'available' | 'missing';
  file: string | null;
}

/** Parses MODULE_PROBE's output (pure). */
export function parseModuleProbe(output: string): ModuleProbe {
  const probe: ModuleProbe = { kernel: '', state: 'missing', file: null };
  for (const line of output.split('\n')) {
    const space = line.indexOf(' ');
    const word = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    if (word === 'kernel') probe.kernel = rest;
    else if (word === 'state') probe.state = rest as ModuleProbe['state'];
    else if (word === 'file') probe.file = decodeBase64(rest);
  }
  return probe;
}

export interface ModuleParams {
  name: string;
  /** The modules-load.d file shared by every ensureModule task; default /etc/modules-load.d/k8s.conf. */
  file?: string;
}

function missingModule(name: string, kernel: string, detail = ''): Error {
  return new Error(
    `kernel module ${name} is not available for kernel ${kernel}: not loaded, not built in, and modprobe cannot find it in /lib/modules/${kernel}` +
      `${detail ? ` (${detail})` : ''}; install the kernel's modules package or check the name`,
  );
}

/** The module's read: what check makes and `probes` declares (one function, so the two cannot differ). */
function moduleRead(p: ModuleParams): Command {
  return sh`sh -c ${MODULE_PROBE} capstan-module ${p.name} ${p.file ?? MODULES_FILE}`;
}

async function probeModule(ctx: CheckContext, p: ModuleParams): Promise<ModuleProbe> {
  const result = await ctx.probe(moduleRead(p));
  if (result.code !== 0) throw new Error(`cannot probe kernel module ${p.name}: ${result.stderr.trim() || `exit ${result.code}`}`);
  return parseModuleProbe(result.stdout);
}

/**
 * Ensures a kernel module is loaded now (listed in /proc/modules or built into the kernel; else
 * `modprobe`) and at boot: a line in the modules-load.d file that every ensureModule task shares
 * (`# Managed by Capstan`, then the modules in first-added order). A module the running kernel
 * does not have fails, naming the kernel version.
 *
 * @param name the module (`overlay`, `br_netfilter`)
 * @param params.file the modules-load.d file (default /etc/modules-load.d/k8s.conf)
 * @example [ensureModule('overlay'), ensureModule('br_netfilter')]
 */
export function ensureModule(name: PerHost<string>, params: { file?: PerHost<string> } = {}, options?: TaskOptions): Task<void> {
  return defineTask<ModuleParams>(
    {
      kind: 'module',
      id: (p) => `module:${p.name}`,
      title: (p) => `kernel module ${p.name}`,
      desired: (p) => ({ name: p.name, file: p.file ?? MODULES_FILE }),
      probes: (p) => [{ kind: 'exec', command: moduleRead(p) }],
      validate: (p) => {
        if (typeof p.name !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(p.name)) throw new Error(`module name must be letters, digits, _ or -, got ${JSON.stringify(p.name)}`);
        if (p.file !== undefined && !/^\/etc\/modules-load\.d\/[^/\s]+\.conf$/.test(p.file)) {
          throw new Error(`file must be /etc/modules-load.d/<name>.conf (only those are read at boot), got ${JSON.stringify(p.file)}`);
        }
      },
      async check(ctx, p) {
        const probe = await probeModule(ctx, p);
        if (probe.state === 'missing') throw missingModule(p.name, probe.kernel);
        const drift: Drift[] = [];
        if (probe.state === 'available') drift.push({ subject: `module ${p.name}`, current: 'not loaded', desired: 'loaded' });
        const file = p.file ?? MODULES_FILE;
        const desired = withModule(probe.file, p.name);
        if (desired !== probe.file) drift.push({ subject: file, file, current: probe.file, desired });
        return drift;
      },
      async apply(ctx, p) {
        const probe = await probeModule(ctx, p);
        if (probe.state === 'available') {
          const result = await ctx.exec(sh`modprobe -- ${p.name}`);
          if (result.code !== 0) throw missingModule(p.name, probe.kernel, result.stderr.trim() || `modprobe exit ${result.code}`);
        }
        const file = p.file ?? MODULES_FILE;
        const desired = withModule(probe.file, p.name);
        if (desired !== probe.file) {
          await ctx.run(sh`mkdir -p -- ${file.slice(0, file.lastIndexOf('/')) || '/'}`);
          await ctx.writeFile(file, Buffer.from(desired, 'latin1'), { mode: '0644' });
        }
      },
    },
    { name, ...params } as PerHostParams<ModuleParams>,
    options,
  );
}

/* ================================================================== sysctl */

export const SYSCTL_FILE = '/etc/sysctl.d/99-kubernetes.conf';

export type SysctlValue = string | number;

/**
 * A sysctl key as sysctl(8) names it: `.` between parts. A key written with `/` separators
 * (`net/ipv4/ip_forward`) is the same key; then dots inside parts (a VLAN interface `eth0.100`)
 * become `/`, as sysctl does.
 */
export function normaliseSysctlKey(key: string): string {
  const trimmed = key.trim();
  const slash = trimmed.indexOf('/');
  const dot = trimmed.indexOf('.');
  if (slash >= 0 && (dot < 0 || slash < dot)) return trimmed.replace(/[./]/g, (c) => (c === '/' ? '.' : '/'));
  return trimmed;
}

/** A value as compared: trimmed, runs of spaces and tabs made one space (`1024\t65000` = `1024 65000`). */
export function normaliseSysctlValue(value: SysctlValue): string {
  return String(value).trim().split(/\s+/).join(' ');
}

/**
 * Parses a sysctl.d file (pure): `key = value` lines, `#` and `;` comments, blank lines; a leading
 * `-` (ignore errors) is dropped. Keys and values are normalised; a later line for a key wins.
 */
export function parseSysctlConf(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = normaliseSysctlKey(line.slice(0, eq).replace(/^-/, ''));
    values.delete(key); // keep map order = order of the winning lines
    values.set(key, normaliseSysctlValue(line.slice(eq + 1)));
  }
  return values;
}

/** The owned drop-in: the header, then `key = value` for exactly the given keys, in the given order (pure). */
export function renderSysctlConf(values: Readonly<Record<string, SysctlValue>>): string {
  const lines = Object.entries(values).map(([key, value]) => `${normaliseSysctlKey(key)} = ${normaliseSysctlValue(value)}`);
  return `${MANAGED_HEADER}\n${lines.join('\n')}\n`;
}

const SYSCTL_DIRS = ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d'] as const;

/**
 * What each key will be after a boot (pure), as systemd-sysctl and `sysctl --system` apply the
 * files: *.conf from the sysctl.d directories ordered by file name, a name in an earlier directory
 * hiding the same name in later ones (/etc over /run over /usr/local/lib over /usr/lib), then
 * /etc/sysctl.conf. Returns, per key, the value and the file it comes from.
 */
export function bootSysctlValues(files: ReadonlyMap<string, string>): Map<string, { value: string; path: string }> {
  const byName = new Map<string, string>();
  for (const dir of SYSCTL_DIRS) {
    for (const path of files.keys()) {
      if (!path.startsWith(`${dir}/`) || !path.endsWith('.conf')) continue;
      const name = path.slice(dir.length + 1);
      if (name.includes('/') || byName.has(name)) continue;
      byName.set(name, path);
    }
  }
  const ordered = [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, path]) => path);
  if (files.has('/etc/sysctl.conf')) ordered.push('/etc/sysctl.conf');
  const result = new Map<string, { value: string; path: string }>();
  for (const path of ordered) {
    for (const [key, value] of parseSysctlConf(files.get(path)!)) result.set(key, { value, path });
  }
  return result;
}

/**
 * Probe for ensureSysctl: every sysctl config file (base64), then each key's live value read with
 * `sysctl -n` (`live <key> <value>`, or `missing <key>` when the kernel has no such key).
 */
export const SYSCTL_PROBE = `f=$1; shift
file() { if [ -f "$1" ]; then printf 'file %s ' "$1"; base64 -w0 < "$1"; echo; fi; }
file "$f"
for d in ${SYSCTL_DIRS.join(' ')}; do for p in "$d"/*.conf; do file "$p"; done; done
file /etc/sysctl.conf
for k do
  if v=$(sysctl -n -- "$k" 2>/dev/null); then printf 'live %s %s\\n' "$k" "$(printf '%s' "$v" | tr '\\n' ' ')"; else printf 'missing %s\\n' "$k"; fi
done
`;

export interface SysctlProbe {
  files: Map<string, string>;
  /** Live values (normalised); null when the kernel has no such key. */
  live: Map<string, string | null>;
}

/** Parses SYSCTL_PROBE's output (pure). */
export function parseSysctlProbe(output: string): SysctlProbe {
  const probe: SysctlProbe = { files: new Map(), live: new Map() };
  for (const line of output.split('\n')) {
    const [word, key = '', ...rest] = line.split(' ');
    if (word === 'file') probe.files.set(key, decodeBase64(rest.join(' ')));
    else if (word === 'live') probe.live.set(key, normaliseSysctlValue(rest.join(' ')));
    else if (word === 'missing') probe.live.set(key, null);
  }
  return probe;
}

export interface SysctlParams {
  values: Record<string, SysctlValue>;
  /** The owned drop-in; default /etc/sysctl.d/99-kubernetes.conf. */
  file?: string;
}

/** The drift of ensureSysctl from a probe (pure): the drop-in's content, live values, and later files that override it at boot. */
export function sysctlDrift(probe: SysctlProbe, p: SysctlParams): Drift[] {
  const file = p.file ?? SYSCTL_FILE;
  const desired = renderSysctlConf(p.values);
  const current = probe.files.get(file) ?? null;
  const drift: Drift[] = [];
  if (current !== desired) drift.push({ subject: file, file, current, desired });
  const boot = bootSysctlValues(new Map([...probe.files, [file, desired]]));
  for (const [rawKey, rawValue] of Object.entries(p.values)) {
    const key = normaliseSysctlKey(rawKey);
    const value = normaliseSysctlValue(rawValue);
    const live = probe.live.get(key);
    if (live !== value) drift.push({ subject: key, current: live ?? 'absent (no such key in the running kernel)', desired: value });
    const atBoot = boot.get(key);
    if (atBoot && atBoot.path !== file && atBoot.value !== value) {
      drift.push({ subject: `${key} at boot`, current: `${atBoot.value} (set by ${atBoot.path}, applied after ${file})`, desired: value });
    }
  }
  return drift;
}

/** The sysctl read: what check makes and `probes` declares. */
function sysctlRead(p: SysctlParams): Command {
  const keys = Object.keys(p.values).map(normaliseSysctlKey);
  return sh`sh -c ${SYSCTL_PROBE} capstan-sysctl ${p.file ?? SYSCTL_FILE} ${keys}`;
}

async function probeSysctl(ctx: CheckContext, p: SysctlParams): Promise<SysctlProbe> {
  const result = await ctx.probe(sysctlRead(p));
  if (result.code !== 0) throw new Error(`cannot probe sysctl: ${result.stderr.trim() || `exit ${result.code}`}`);
  return parseSysctlProbe(result.stdout);
}

/** The identities ensureSysctl claims: each key with its value, and its owned file with all of them. */
export function sysctlClaims(p: SysctlParams): Claim[] {
  const file = p.file ?? SYSCTL_FILE;
  const normalised = Object.entries(p.values).map(([k, v]) => [normaliseSysctlKey(k), normaliseSysctlValue(v)] as const);
  return [
    ...normalised.map(([key, value]) => ({ id: `sysctl:${key}`, desired: value })),
    { id: `sysctl-file:${file}`, desired: Object.fromEntries(normalised) },
  ];
}

const SYSCTL_KEY = /^[A-Za-z0-9_-]+([./][A-Za-z0-9_:@+-]+)+$/;

const sysctlSpec: SpecWithClaims<SysctlParams> = {
  kind: 'sysctl',
  // One key: its canonical id, so two tasks setting it differently are rejected at load.
  // Several keys: the owned file, so two tasks rewriting one drop-in differently are rejected.
  id: (p) => {
    const keys = Object.keys(p.values).map(normaliseSysctlKey);
    return keys.length === 1 ? `sysctl:${keys[0]}` : `sysctl:${p.file ?? SYSCTL_FILE}`;
  },
  title: (p) => `sysctl ${Object.entries(p.values).map(([k, v]) => `${normaliseSysctlKey(k)}=${normaliseSysctlValue(v)}`).join(' ')}`,
  desired: (p) => ({ file: p.file ?? SYSCTL_FILE, values: Object.fromEntries(Object.entries(p.values).map(([k, v]) => [normaliseSysctlKey(k), normaliseSysctlValue(v)])) }),
  claims: sysctlClaims,
  validate: (p) => {
    if (typeof p.values !== 'object' || p.values === null || Array.isArray(p.values)) throw new Error('values must be an object of key → value');
    const entries = Object.entries(p.values);
    if (entries.length === 0) throw new Error('values must set at least one key');
    const seen = new Set<string>();
    for (const [key, value] of entries) {
      if (!SYSCTL_KEY.test(key)) throw new Error(`not a sysctl key: ${JSON.stringify(key)}`);
      const normalised = normaliseSysctlKey(key);
      if (seen.has(normalised)) throw new Error(`key ${normalised} is given twice`);
      seen.add(normalised);
      if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`value of ${key} must be a string or a number`);
      if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`value of ${key} must be a finite number`);
      const text = normaliseSysctlValue(value);
      if (text === '' || /[\n#;]/.test(String(value))) throw new Error(`value of ${key} must be one non-empty line without # or ;, got ${JSON.stringify(value)}`);
    }
    // No blanks in the name: the probe prints "file <path> <base64>" lines.
    if (p.file !== undefined && !/^\/etc\/sysctl\.d\/[^/\s]+\.conf$/.test(p.file)) {
      throw new Error(`file must be /etc/sysctl.d/<name>.conf without blanks (only those are read at boot), got ${JSON.stringify(p.file)}`);
    }
  },
  probes: (p) => [{ kind: 'exec', command: sysctlRead(p) }],
  check: async (ctx, p) => sysctlDrift(await probeSysctl(ctx, p), p),
  async apply(ctx, p) {
    const file = p.file ?? SYSCTL_FILE;
    const drift = sysctlDrift(await probeSysctl(ctx, p), p);
    const overridden = drift.filter((d) => d.subject.endsWith(' at boot'));
    if (overridden.length > 0) {
      throw new Error(
        `other sysctl files would undo ${file} at the next boot: ${overridden.map((d) => `${d.subject.slice(0, -' at boot'.length)} = ${String(d.current)}`).join('; ')}; ` +
          'change or remove those lines, or use a file that sorts later',
      );
    }
    if (drift.some((d) => d.subject === file)) {
      await ctx.run(sh`mkdir -p -- ${file.slice(0, file.lastIndexOf('/')) || '/'}`);
      await ctx.writeFile(file, renderSysctlConf(p.values), { mode: '0644' });
    }
    if (drift.some((d) => d.file === undefined)) {
      const result = await ctx.run(sh`sysctl -p ${file}`);
      for (const line of result.stdout.split('\n').filter(Boolean)) ctx.log(line);
    }
  },
};

/**
 * Ensures kernel parameters: an owned drop-in (default /etc/sysctl.d/99-kubernetes.conf) with
 * exactly the given keys, and the live values (read back with `sysctl -n`, compared after
 * normalising spaces and tabs) — applied with `sysctl -p FILE` only when one differs. A later
 * sysctl file that would override a key at boot is reported, and apply refuses it with the file named.
 *
 * @param values key → value; `net.*` keys are per network namespace, others are machine-wide
 * @param params.file the drop-in (default /etc/sysctl.d/99-kubernetes.conf)
 * @example ensureSysctl({ 'net.bridge.bridge-nf-call-iptables': 1, 'net.bridge.bridge-nf-call-ip6tables': 1, 'net.ipv4.ip_forward': 1 })
 */
export function ensureSysctl(values: PerHost<Record<string, SysctlValue>>, params: { file?: PerHost<string> } = {}, options?: TaskOptions): Task<void> {
  return defineTask<SysctlParams>(sysctlSpec, { values, ...params } as PerHostParams<SysctlParams>, options);
}

/* ================================================================== kernel command line (Raspberry Pi) */

/** Where Raspberry Pi OS keeps the kernel command line: bookworm and later first, then older releases. */
export const CMDLINE_PATHS = ['/boot/firmware/cmdline.txt', '/boot/cmdline.txt'] as const;

/** Debian's "reboot needed" flag (also read by unattended-upgrades and motd); `reboot({ ifRequired: true })` honours it. */
export const REBOOT_REQUIRED = '/run/reboot-required';

interface Span {
  token: string;
  start: number;
  end: number;
}

/** Splits a command line into tokens at spaces and tabs outside double quotes, with their positions (pure). */
export function cmdlineTokens(line: string): Span[] {
  const spans: Span[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /[ \t\r]/.test(line[i]!)) i++;
    if (i >= line.length) break;
    const start = i;
    let quoted = false;
    while (i < line.length && (quoted || !/[ \t\r]/.test(line[i]!))) {
      if (line[i] === '"') quoted = !quoted;
      i++;
    }
    spans.push({ token: line.slice(start, i), start, end: i });
  }
  return spans;
}

export interface CmdlineEdit {
  /** Tokens wanted once each (`cgroup_memory=1`); appended, in order, when missing. */
  add?: readonly string[];
  /** Tokens to drop: an exact token (`cgroup_disable=memory`), or a bare name (`quiet`, `splash`) for every token of that name. */
  remove?: readonly string[];
}

function matchesRemoval(token: string, removal: string): boolean {
  if (token === removal) return true;
  return !removal.includes('=') && token.split('=')[0] === removal;
}

/**
 * Edits a cmdline.txt (pure): drops the `remove` tokens, appends missing `add` tokens once, keeps
 * every other byte and the order of tokens. Returns the text unchanged when nothing is to do;
 * otherwise the single line with exactly one trailing newline. The bootloader reads one line:
 * a file with more non-blank lines is refused rather than guessed at.
 */
export function editCmdline(text: string, edit: CmdlineEdit): string {
  const newline = text.indexOf('\n');
  const line = newline < 0 ? text : text.slice(0, newline);
  const rest = newline < 0 ? '' : text.slice(newline + 1);
  if (rest.trim() !== '') throw new Error('cmdline.txt must hold the kernel command line on a single line, and this one has more lines: fix it by hand first');
  const spans = cmdlineTokens(line);
  const leading = spans.length ? line.slice(0, spans[0]!.start) : '';
  const trailing = spans.length ? line.slice(spans[spans.length - 1]!.end) : line;
  // Each token with the separator before it; the first keeps the line's leading whitespace.
  let parts = spans.map((span, index) => ({ sep: index === 0 ? leading : line.slice(spans[index - 1]!.end, span.start), token: span.token }));
  let changed = false;
  for (const removal of edit.remove ?? []) {
    const kept = parts.filter((part) => !matchesRemoval(part.token, removal));
    if (kept.length !== parts.length) {
      changed = true;
      if (kept.length && parts[0] && matchesRemoval(parts[0].token, removal)) kept[0] = { ...kept[0]!, sep: leading };
      parts = kept;
    }
  }
  for (const token of edit.add ?? []) {
    if (parts.some((part) => part.token === token)) continue;
    parts.push({ sep: parts.length ? ' ' : '', token });
    changed = true;
  }
  if (!changed) return text;
  return `${parts.map((part) => part.sep + part.token).join('')}${parts.length ? trailing.replace(/[\r\n]+$/, '') : ''}\n`;
}

/** The cmdline.txt to edit, from the candidates that exist (pure): /boot/firmware first. */
export function pickCmdline(existing: readonly string[]): string | null {
  return CMDLINE_PATHS.find((path) => existing.includes(path)) ?? null;
}

/** Finds cmdline.txt: detected, never guessed; an error names what was looked for when there is none. */
async function findCmdline(ctx: CheckContext, purpose: string): Promise<string> {
  const existing: string[] = [];
  for (const path of CMDLINE_PATHS) {
    const stat = await ctx.stat(path);
    if (stat?.type === 'file') existing.push(path);
  }
  const path = pickCmdline(existing);
  if (!path) {
    throw new Error(
      `${purpose}: no Raspberry Pi kernel command line here (neither ${CMDLINE_PATHS.join(' nor ')} exists); ` +
        'editing GRUB (GRUB_CMDLINE_LINUX in /etc/default/grub) is out of scope for Capstan: set it by hand and reboot',
    );
  }
  return path;
}

async function readCmdline(ctx: CheckContext, path: string): Promise<string> {
  const text = (await readBytesAsText(ctx, path)) ?? '';
  if (text.includes('DO NOT EDIT THIS FILE')) {
    throw new Error(`${path} is Raspberry Pi OS's placeholder, not the real command line: is /boot/firmware mounted?`);
  }
  return text;
}

async function writeCmdline(ctx: ApplyContext, path: string, text: string): Promise<void> {
  await ctx.writeFile(path, Buffer.from(text, 'latin1'), { backup: true });
  await ctx.writeFile(REBOOT_REQUIRED, '*** System restart required ***\n');
  ctx.log(`${path} changed: the new kernel command line takes effect after a reboot (flagged in ${REBOOT_REQUIRED})`);
}

const CMDLINE_TOKEN = /^[^\s"]+$/;

/** How ensureKernelCmdline titles start (reboot({ ifRequired }) recognises them among pending changes in check mode). */
const CMDLINE_TITLE = 'kernel command line';

function validateTokens(name: string, tokens: unknown): void {
  if (tokens === undefined) return;
  if (!Array.isArray(tokens)) throw new Error(`${name} must be an array of tokens`);
  for (const token of tokens) {
    if (typeof token !== 'string' || !CMDLINE_TOKEN.test(token)) throw new Error(`${name}: not a single command-line token: ${JSON.stringify(token)}`);
  }
}

export interface KernelCmdlineParams extends CmdlineEdit {}

/**
 * Ensures tokens in (or out of) a Raspberry Pi's kernel command line, `/boot/firmware/cmdline.txt`
 * (or `/boot/cmdline.txt` on older releases; detected, an error when neither exists): missing
 * tokens appended once, removed tokens dropped, the rest of the single line kept byte for byte (a
 * backup is kept). The change takes effect at the next boot: apply flags it in /run/reboot-required,
 * so a later `reboot({ ifRequired: true })` — or a `reboot()` handler in `notify` — reboots.
 *
 * @example
 * const restart = reboot();
 * ensureKernelCmdline({ add: ['cgroup_memory=1', 'cgroup_enable=memory'] }, { notify: [restart] })
 */
export function ensureKernelCmdline(params: PerHostParams<KernelCmdlineParams>, options?: TaskOptions): Task<void> {
  const spec: SpecWithClaims<KernelCmdlineParams> = {
    kind: 'kernel-cmdline',
    id: (p) => `kernel-cmdline:${[...(p.add ?? []).map((t) => `+${t}`), ...(p.remove ?? []).map((t) => `-${t}`)].join(' ')}`,
    title: (p) => `${CMDLINE_TITLE} ${[...(p.add ?? []).map((t) => `+${t}`), ...(p.remove ?? []).map((t) => `-${t}`)].join(' ')}`,
    desired: (p) => ({ add: p.add ?? [], remove: p.remove ?? [] }),
    claims: (p) => [
      ...(p.add ?? []).map((token) => ({ id: `kernel-cmdline:${token}`, desired: 'present' })),
      ...(p.remove ?? []).map((token) => ({ id: `kernel-cmdline:${token}`, desired: 'absent' })),
    ],
    validate: (p) => {
      validateTokens('add', p.add);
      validateTokens('remove', p.remove);
      if ((p.add ?? []).length + (p.remove ?? []).length === 0) throw new Error('give tokens to add or remove');
      const clash = (p.add ?? []).find((token) => (p.remove ?? []).some((removal) => matchesRemoval(token, removal)));
      if (clash) throw new Error(`${clash} is both added and removed`);
    },
    async check(ctx, p) {
      const path = await findCmdline(ctx, 'cannot edit the kernel command line');
      const current = await readCmdline(ctx, path);
      const desired = editCmdline(current, p);
      return desired === current ? [] : [{ subject: path, file: path, current, desired }];
    },
    async apply(ctx, p) {
      const path = await findCmdline(ctx, 'cannot edit the kernel command line');
      const current = await readCmdline(ctx, path);
      const desired = editCmdline(current, p);
      if (desired !== current) await writeCmdline(ctx, path, desired);
    },
  };
  return defineTask<KernelCmdlineParams>(spec, params, options);
}

/* ================================================================== memory cgroup */

/** What the kernel says about the memory cgroup: cgroup v2's controllers, cgroup v1's enabled flag. */
export interface CgroupState {
  /** /sys/fs/cgroup/cgroup.controllers (cgroup v2), null when absent. */
  controllers: string | null;
  /** The `enabled` column of the memory line of /proc/cgroups, null when there is none. */
  v1MemoryEnabled: string | null;
}

/** True when the memory cgroup controller is active (pure): listed in cgroup.controllers (v2), or enabled in /proc/cgroups (v1). */
export function memoryCgroupActive(state: CgroupState): boolean {
  if (state.controllers !== null) return state.controllers.trim().split(/\s+/).includes('memory');
  return state.v1MemoryEnabled === '1';
}

export const CGROUP_PROBE = `if [ -r /sys/fs/cgroup/cgroup.controllers ]; then printf 'controllers '; cat /sys/fs/cgroup/cgroup.controllers; fi
if [ -r /proc/cgroups ]; then awk '$1 == "memory" { print "v1-memory " $4 }' /proc/cgroups; fi
`;

export function parseCgroupProbe(output: string): CgroupState {
  const state: CgroupState = { controllers: null, v1MemoryEnabled: null };
  for (const line of output.split('\n')) {
    if (line.startsWith('controllers ')) state.controllers = line.slice('controllers '.length);
    else if (line === 'controllers') state.controllers = '';
    else if (line.startsWith('v1-memory ')) state.v1MemoryEnabled = line.slice('v1-memory '.length).trim();
  }
  return state;
}

async function memoryActive(ctx: CheckContext): Promise<boolean> {
  const result = await ctx.probe(sh`sh -c ${CGROUP_PROBE}`);
  if (result.code !== 0) throw new Error(`cannot probe cgroups: ${result.stderr.trim() || `exit ${result.code}`}`);
  return memoryCgroupActive(parseCgroupProbe(result.stdout));
}

/** The tokens Raspberry Pi kernels need for the memory cgroup (kubeadm: "missing required cgroups: memory"). */
export const MEMORY_CGROUP_EDIT = { add: ['cgroup_memory=1', 'cgroup_enable=memory'], remove: ['cgroup_disable=memory'] } as const;

export interface MemoryCgroupParams {
  /** How long to wait for the host after the reboot; default 600000 (10 minutes). */
  timeoutMs?: number;
}

/**
 * Ensures the memory cgroup controller is active — the effect, not the edit: `memory` in
 * /sys/fs/cgroup/cgroup.controllers (cgroup v2) or enabled in /proc/cgroups (v1). When it is not,
 * on a Raspberry Pi: adds `cgroup_memory=1 cgroup_enable=memory` to cmdline.txt (dropping
 * `cgroup_disable=memory`), reboots, waits for the host and verifies the controller is active.
 * Elsewhere (no cmdline.txt) it fails with a clear message: GRUB is out of scope.
 *
 * @example ensureMemoryCgroup({ timeoutMs: 300_000 })
 */
export function ensureMemoryCgroup(params: PerHostParams<MemoryCgroupParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<MemoryCgroupParams>(
    {
      kind: 'cgroup',
      id: () => 'cgroup:memory',
      title: () => 'memory cgroup active',
      desired: () => 'active',
      validate: (p) => validateTimeout(p.timeoutMs),
      async check(ctx) {
        if (await memoryActive(ctx)) return [];
        const path = await findCmdline(ctx, 'the memory cgroup is not active');
        const current = await readCmdline(ctx, path);
        const desired = editCmdline(current, MEMORY_CGROUP_EDIT);
        return [
          { subject: 'memory cgroup', current: 'missing', desired: 'active' },
          ...(desired === current ? [] : [{ subject: path, file: path, current, desired }]),
          { subject: 'reboot', desired: 'reboot for the new kernel command line' },
        ];
      },
      async apply(ctx, p) {
        const path = await findCmdline(ctx, 'the memory cgroup is not active');
        const current = await readCmdline(ctx, path);
        const desired = editCmdline(current, MEMORY_CGROUP_EDIT);
        if (desired !== current) await writeCmdline(ctx, path, desired);
        await rebootAndWait(ctx, p.timeoutMs ?? DEFAULT_REBOOT_TIMEOUT_MS);
        if (!(await memoryActive(ctx))) {
          const cmdline = (await ctx.readText('/proc/cmdline'))?.trim() ?? '';
          throw new Error(`the memory cgroup is still not active after a reboot with ${MEMORY_CGROUP_EDIT.add.join(' ')} in ${path}; the running kernel's command line is: ${cmdline}`);
        }
      },
    },
    params,
    options,
  );
}

/* ================================================================== reboot */

export const DEFAULT_REBOOT_TIMEOUT_MS = 600_000;

/**
 * Which boot the host is in: the kernel's boot id, and the start time of PID 1 (so a container
 * restarted by its host, whose kernel boot id stays, counts as rebooted too).
 */
export const BOOT_IDENTITY = sh`cat /proc/sys/kernel/random/boot_id && sed 's/^.*) //' /proc/1/stat | cut -d ' ' -f 20`;

/**
 * Reboots so that the SSH command returns before the connection drops: a systemd timer two seconds
 * out (or a detached `sleep 2; reboot` without systemd).
 */
export const REBOOT_COMMAND = sh`if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then exec systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot; else nohup sh -c 'sleep 2; exec reboot' >/dev/null 2>&1 & fi`;

async function bootIdentity(ctx: CheckContext): Promise<string> {
  const result = await ctx.probe(BOOT_IDENTITY);
  if (result.code !== 0) throw new Error(`cannot read the boot id: ${result.stderr.trim() || `exit ${result.code}`}`);
  return result.stdout.trim().split('\n').join(' ');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Reboots the host and waits until it answers again in a new boot (boot id changed), reconnecting
 * as often as needed; throws (TransportError: the host counts as unreachable) after `timeoutMs`.
 */
export async function rebootAndWait(ctx: ApplyContext, timeoutMs: number, pollMs = 2_000): Promise<void> {
  const before = await bootIdentity(ctx);
  const deadline = Date.now() + timeoutMs;
  ctx.log(`rebooting (boot ${before.split(' ')[0]})`);
  await ctx.run(REBOOT_COMMAND);
  for (;;) {
    await sleep(pollMs);
    const left = deadline - Date.now();
    if (left <= 0) throw new TransportError(`the host did not come back in a new boot within ${Math.round(timeoutMs / 1000)} s`);
    // A reconnect can succeed before the reboot has even started: only a new boot id ends the wait.
    await ctx.reconnect(left);
    let now: string;
    try {
      now = await bootIdentity(ctx);
    } catch (error) {
      if (error instanceof TransportError) continue; // the connection dropped as the host went down
      throw error;
    }
    if (now !== before) {
      ctx.log(`back in a new boot (${now.split(' ')[0]})`);
      return;
    }
  }
}

function validateTimeout(timeoutMs: unknown): void {
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 1_000)) {
    throw new Error(`timeoutMs must be a number of milliseconds ≥ 1000, got ${JSON.stringify(timeoutMs)}`);
  }
}

export interface RebootParams {
  /** How long to wait for SSH in a new boot; default 600000 (10 minutes). */
  timeoutMs?: number;
  /** Reboot only when /run/reboot-required exists (set by ensureKernelCmdline, and by Debian packages). */
  ifRequired?: boolean;
}

/**
 * Reboots the host and waits for it: the reboot is scheduled so the SSH command returns first,
 * then Capstan reconnects until `timeoutMs` and verifies the boot id changed. Run it only when
 * needed: as a handler (`notify: [restart]` on the tasks that need it; handlers run once at the end
 * of the play where something changed), with `when`, or with `ifRequired` (Debian's
 * /run/reboot-required flag). Check mode reports "would change: reboot" and does nothing.
 *
 * @example
 * const restart = reboot({ timeoutMs: 300_000 });
 * await play('pi', 'pis', [ensureKernelCmdline({ add: ['cgroup_memory=1', 'cgroup_enable=memory'] }, { notify: [restart] })]);
 * @example reboot({ ifRequired: true })
 */
export function reboot(params: PerHostParams<RebootParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<RebootParams>(
    {
      kind: 'reboot',
      id: () => 'reboot',
      title: (p) => (p.ifRequired ? 'reboot if required' : 'reboot'),
      validate: (p) => validateTimeout(p.timeoutMs),
      // apply verifies the new boot itself; a check after it would want to reboot again.
      verify: false,
      async check(ctx, p) {
        if (p.ifRequired) {
          if (await ctx.stat(REBOOT_REQUIRED)) return [{ subject: 'reboot', current: `required (${REBOOT_REQUIRED})`, desired: 'rebooted' }];
          // Check mode: an earlier kernel command line change would set the flag.
          const pending = ctx.pendingChanges.filter((title) => title.startsWith(CMDLINE_TITLE));
          return pending.length ? [{ subject: 'reboot', desired: 'rebooted', pending: pending.join(', ') }] : [];
        }
        return [{ subject: 'reboot', current: `boot ${(await bootIdentity(ctx)).split(' ')[0]}`, desired: 'a new boot' }];
      },
      apply: (ctx, p) => rebootAndWait(ctx, p.timeoutMs ?? DEFAULT_REBOOT_TIMEOUT_MS),
    },
    params,
    options,
  );
}
