/**
 * Kernel parameters: the live value (sysctl -w) and the owned drop-in in /etc/sysctl.d, and the later
 * files that would override it at boot.
 */
import { defineTask, sh, type CheckContext, type Command, type Drift, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { decodeBase64, MANAGED_HEADER, type Claim, type SpecWithClaims } from './kernel-files.js';

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
