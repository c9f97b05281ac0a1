import { isDeepStrictEqual } from 'node:util';
import { parse, stringify, TomlError, type TomlTable } from 'smol-toml';
import { defineTask, sh, type ApplyContext, type CheckContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { changedSinceStart, parseUnitState, unitProbe, type UnitState } from './systemd.js';
import { requireAbsolutePath } from './validate.js';

/*
 * Container runtimes with the systemd cgroup driver (what kubeadm's kubelet uses by default).
 *
 * Seeds 000/001: `containerd config default | tee /etc/containerd/config.toml`,
 * `sed -i 's/SystemdCgroup = false/SystemdCgroup = true/g'`, `systemctl restart containerd`.
 * Seed 002: /etc/docker/daemon.json with `"exec-opts": ["native.cgroupdriver=systemd"]` and
 * `"log-driver": "journald"`, restart docker.
 *
 * The TOML is edited as text, guided and checked by a parser (smol-toml): the SystemdCgroup line
 * is replaced or inserted in its table, everything else — comments, order, quoting, indentation —
 * stays byte for byte. The edited text is parsed again and must equal the parsed original with
 * only the intended keys changed; when it does not (a layout the line editor does not understand:
 * inline tables, dotted keys), the whole document is re-serialised from the parsed data instead,
 * which is correct but loses comments and formatting. A full parse/stringify round trip for every
 * file would be simpler, but it would drop the comments that `containerd config default` (2.x)
 * and hand-written configs carry, and rewrite every line of a file a human may diff.
 *
 * The restart happens inside apply (`systemctl restart` then `systemctl is-active`), not through a
 * handler from tasks/systemd.ts, so this family does not depend on that one.
 */

/* ------------------------------------------------------------------ TOML line editing */

/** A table header line: its key path and indentation. */
interface Header {
  line: number;
  indent: string;
  path: string[];
  /** `[[array of tables]]`: a boundary, never edited. */
  array: boolean;
}

/**
 * Parses a TOML table header's key (`plugins."io.containerd.grpc.v1.cri".containerd` or with
 * single-quoted keys) into its parts; null when the line is not a header this parser understands.
 */
export function parseTableHeader(line: string): { indent: string; path: string[]; array: boolean } | null {
  const match = /^(\s*)(\[\[?)(.*)$/.exec(line);
  if (!match) return null;
  const array = match[2] === '[[';
  const rest = match[3]!;
  const path: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (rest[i] === ' ' || rest[i] === '\t') i++;
  };
  for (;;) {
    skipSpace();
    const c = rest[i];
    if (c === '"') {
      let key = '';
      i++;
      while (i < rest.length && rest[i] !== '"') {
        if (rest[i] === '\\') {
          const next = rest[i + 1];
          const escapes: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };
          if (next !== undefined && escapes[next] !== undefined) {
            key += escapes[next];
            i += 2;
            continue;
          }
          return null; // \u escapes and the like: leave such headers to the fallback
        }
        key += rest[i++];
      }
      if (rest[i] !== '"') return null;
      i++;
      path.push(key);
    } else if (c === "'") {
      const end = rest.indexOf("'", i + 1);
      if (end < 0) return null;
      path.push(rest.slice(i + 1, end));
      i = end + 1;
    } else {
      const bare = /^[A-Za-z0-9_-]+/.exec(rest.slice(i));
      if (!bare) return null;
      path.push(bare[0]);
      i += bare[0].length;
    }
    skipSpace();
    if (rest[i] === '.') {
      i++;
      continue;
    }
    const close = array ? ']]' : ']';
    if (!rest.startsWith(close, i)) return null;
    const after = rest.slice(i + close.length).trim();
    if (after !== '' && !after.startsWith('#')) return null;
    return { indent: match[1]!, path, array };
  }
}

function headersOf(lines: string[]): Header[] {
  const headers: Header[] = [];
  lines.forEach((text, line) => {
    if (!/^\s*\[/.test(text)) return;
    const parsed = parseTableHeader(text);
    // An unparseable `[` line still ends the table before it (the parse check catches any mistake).
    headers.push(parsed ? { line, ...parsed } : { line, indent: '', path: [], array: true });
  });
  return headers;
}

const samePath = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((part, i) => part === b[i]);

/** The lines of a table's own body: after its header, up to the next header. */
function bodyRange(lines: string[], headers: Header[], header: Header): { start: number; end: number } {
  const next = headers.find((h) => h.line > header.line);
  return { start: header.line + 1, end: next ? next.line : lines.length };
}

/** Renders a key for a header in the file's quoting style: bare when it can be, else quoted. */
function renderKey(key: string, quote: '"' | "'"): string {
  if (/^[A-Za-z0-9_-]+$/.test(key)) return key;
  return quote === "'" && !key.includes("'") ? `'${key}'` : JSON.stringify(key);
}

function renderHeader(path: readonly string[], indent: string, quote: '"' | "'"): string {
  return `${indent}[${path.map((key) => renderKey(key, quote)).join('.')}]`;
}

/** The last line of a body that holds a key (not blank, not a comment), or -1. */
function lastKeyLine(lines: string[], range: { start: number; end: number }): number {
  for (let i = range.end - 1; i >= range.start; i--) {
    const text = lines[i]!.trim();
    if (text !== '' && !text.startsWith('#')) return i;
  }
  return -1;
}

/** Indentation for keys in a body: that of its first key line, else the header's plus two spaces. */
function keyIndent(lines: string[], range: { start: number; end: number }, header: Header): string {
  for (let i = range.start; i < range.end; i++) {
    const text = lines[i]!;
    if (text.trim() !== '' && !text.trim().startsWith('#')) return /^\s*/.exec(text)![0];
  }
  return `${header.indent}  `;
}

/**
 * Sets `key = value` in the table at `path` by editing lines: replaces the value on the key's own
 * line (keeping any trailing comment), or inserts the key after the table's last key line. When
 * the table has no header of its own, a new table is inserted after `insertAfter`'s body (or at
 * the end of the file). Returns false when it cannot tell where the key lives.
 */
function setKeyInText(lines: string[], path: readonly string[], key: string, value: string, quote: '"' | "'", insertAfter?: readonly string[]): boolean {
  const headers = headersOf(lines);
  const header = headers.find((h) => !h.array && samePath(h.path, path));
  if (header) {
    const range = bodyRange(lines, headers, header);
    const keyPattern = new RegExp(`^(\\s*)(${key}|"${key}"|'${key}')(\\s*=\\s*)(.*)$`);
    for (let i = range.start; i < range.end; i++) {
      const match = keyPattern.exec(lines[i]!);
      if (!match) continue;
      const comment = /^(?:true|false|\d+|"[^"\\]*"|'[^']*')(\s+#.*)?\s*$/.exec(match[4]!);
      if (!comment) return false; // a value spanning lines or an escape we do not re-render
      lines[i] = `${match[1]}${match[2]}${match[3]}${value}${comment[1] ?? ''}`;
      return true;
    }
    const last = lastKeyLine(lines, range);
    lines.splice(last >= 0 ? last + 1 : header.line + 1, 0, `${keyIndent(lines, range, header)}${key} = ${value}`);
    return true;
  }
  // The table has no header. Insert one after the parent's (or the given sibling's) body, indented one step deeper.
  const anchor = insertAfter ? headers.find((h) => !h.array && samePath(h.path, insertAfter)) : undefined;
  const block = (indent: string) => [renderHeader(path, indent, quote), `${indent}  ${key} = ${value}`];
  if (anchor) {
    const range = bodyRange(lines, headers, anchor);
    const last = lastKeyLine(lines, range);
    const at = last >= 0 ? last + 1 : anchor.line + 1;
    lines.splice(at, 0, '', ...block(`${anchor.indent}${path.length > anchor.path.length ? '  ' : ''}`));
    return true;
  }
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  lines.push('', ...block(''));
  return true;
}

/* ------------------------------------------------------------------ containerd's config */

/** Where the CRI runtimes table lives for a config `version` (1: containerd 1.x legacy, 2: 1.x, 3+: 2.x). */
export function containerdRuntimesPath(version: number): string[] {
  if (version >= 3) return ['plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes'];
  if (version === 2) return ['plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'runtimes'];
  return ['plugins', 'cri', 'containerd', 'runtimes'];
}

const RUNC_V2 = 'io.containerd.runc.v2';
const CRI_PLUGIN_IDS = ['cri', 'io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.runtime', 'io.containerd.cri.v1.images'];

function tableAt(doc: TomlTable, path: readonly string[]): TomlTable | undefined {
  let node: unknown = doc;
  for (const key of path) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = (node as TomlTable)[key];
  }
  return node !== null && typeof node === 'object' && !Array.isArray(node) && !(node instanceof Date) ? (node as TomlTable) : undefined;
}

function ensureTable(doc: TomlTable, path: readonly string[]): TomlTable {
  let node = doc;
  for (const key of path) {
    const next = node[key];
    if (next === undefined) node[key] = {};
    else if (next === null || typeof next !== 'object' || Array.isArray(next)) throw new Error(`${path.join('.')} is not a table in the containerd config`);
    node = node[key] as TomlTable;
  }
  return node;
}

function parseToml(text: string, what: string): TomlTable {
  try {
    return parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid TOML: ${error instanceof TomlError ? error.message.split('\n')[0] : String(error)}`);
  }
}

/**
 * What the packages put in /etc/containerd/config.toml, which configure no usable CRI runtime and
 * which the seeds replace with `containerd config default`:
 * - Docker's containerd.io: comments and `disabled_plugins = ["cri"]` (CRI off: kubeadm fails);
 * - Debian's containerd (bookworm, 1.6.20): `version = 2`, cni bin_dir /usr/lib/cni, opt path —
 *   and no runtimes table (a runc table added alone gets an empty runtime_type).
 */
export const PACKAGED_CONTAINERD_CONFIGS: { name: string; config: TomlTable }[] = [
  { name: "Docker's containerd.io", config: { disabled_plugins: ['cri'] } },
  {
    name: "Debian's containerd",
    config: {
      version: 2,
      plugins: {
        'io.containerd.grpc.v1.cri': { cni: { bin_dir: '/usr/lib/cni', conf_dir: '/etc/cni/net.d' } },
        'io.containerd.internal.v1.opt': { path: '/var/lib/containerd/opt' },
      },
    },
  },
];

/**
 * True when the config must be generated with `containerd config default` first (pure): the file
 * is missing, empty or comments only, or is one of the package-shipped stubs above.
 */
export function needsDefaultContainerdConfig(text: string | null): boolean {
  if (text === null) return true;
  const doc = parseToml(text, 'the containerd config');
  if (Object.keys(doc).length === 0) return true;
  return PACKAGED_CONTAINERD_CONFIGS.some((stub) => isDeepStrictEqual(plain(doc), stub.config));
}

/** The data of a parsed document as plain objects (smol-toml's tables have a null prototype). */
function plain(doc: TomlTable): unknown {
  return JSON.parse(JSON.stringify(doc));
}

/**
 * Sets `SystemdCgroup` in containerd's config text (pure): in the runc runtime's options, and in
 * every other runtime of type io.containerd.runc.v2 (containerd asks all runc-based runtime
 * classes to agree), for the config's layout — `version = 2` (containerd 1.x,
 * `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options`), `version = 3`
 * (containerd 2.x, `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options`), or
 * no version (1.x's legacy `plugins.cri`). A runc table the file lacks is added with its
 * runtime_type. The rest of the text is kept byte for byte (see the note at the top); text that
 * already has the value comes back unchanged.
 *
 * @throws when the text is not TOML or disables the CRI plugin (kubeadm needs it)
 */
export function setSystemdCgroup(text: string, value = true): string {
  const doc = parseToml(text, 'the containerd config');
  const disabled = doc.disabled_plugins;
  if (Array.isArray(disabled) && disabled.some((id) => typeof id === 'string' && CRI_PLUGIN_IDS.includes(id))) {
    throw new Error(`the containerd config disables the CRI plugin (disabled_plugins = ${JSON.stringify(disabled)}), which kubelet needs: remove it from disabled_plugins or remove the file to start from containerd's default`);
  }
  const version = typeof doc.version === 'number' ? doc.version : 1;
  const runtimesPath = containerdRuntimesPath(version);
  const runtimes = tableAt(doc, runtimesPath) ?? {};
  const names = new Set(['runc']);
  for (const [name, runtime] of Object.entries(runtimes)) {
    if (runtime && typeof runtime === 'object' && (runtime as TomlTable).runtime_type === RUNC_V2) names.add(name);
  }
  // The document as it must parse after the edit.
  const expected = structuredClone(doc);
  const edits: { path: string[]; key: string; value: string; after?: string[] }[] = [];
  const quote: '"' | "'" = version >= 3 && !text.includes('[plugins."') ? "'" : '"';
  const tomlString = (s: string) => (quote === "'" ? `'${s}'` : JSON.stringify(s));
  for (const name of names) {
    const runtimePath = [...runtimesPath, name];
    const runtime = ensureTable(expected, runtimePath);
    if (runtime.runtime_type === undefined) {
      runtime.runtime_type = RUNC_V2;
      edits.push({ path: runtimePath, key: 'runtime_type', value: tomlString(RUNC_V2), after: runtimesPath.slice(0, -1) });
    }
    const options = ensureTable(expected, [...runtimePath, 'options']);
    if (options.SystemdCgroup !== value) {
      options.SystemdCgroup = value;
      edits.push({ path: [...runtimePath, 'options'], key: 'SystemdCgroup', value: String(value), after: runtimePath });
    }
  }
  if (edits.length === 0) return text;
  const newline = text.includes('\r\n') ? '\r\n' : '\n';
  const lines = text.split(/\r?\n/);
  const finalNewline = lines.length > 1 && lines[lines.length - 1] === '';
  if (finalNewline) lines.pop();
  const edited = edits.every((edit) => setKeyInText(lines, edit.path, edit.key, edit.value, quote, edit.after))
    ? `${lines.join(newline)}${finalNewline || text === '' ? newline : ''}`
    : undefined;
  if (edited !== undefined) {
    try {
      if (isDeepStrictEqual(plain(parse(edited)), plain(expected))) return edited;
    } catch {
      // fall through to the re-serialisation
    }
  }
  return stringify(expected);
}

/** True when the config sets SystemdCgroup = true for runc in its layout (pure; for reports and tests). */
export function systemdCgroupOf(text: string): boolean | undefined {
  const doc = parseToml(text, 'the containerd config');
  const version = typeof doc.version === 'number' ? doc.version : 1;
  const options = tableAt(doc, [...containerdRuntimesPath(version), 'runc', 'options']);
  const value = options?.SystemdCgroup;
  return typeof value === 'boolean' ? value : undefined;
}

/* ------------------------------------------------------------------ services */

/**
 * Drift of a runtime service against its config (pure): it must be active, and have started no
 * earlier than the config's last change — else it runs an older config (a run that stopped
 * between writing and restarting, or a hand edit), which a restart fixes. No unit (no systemd, or
 * the package not installed): the file is all there is to manage.
 */
export function serviceDrift(unit: string, state: UnitState, configPath: string): Drift[] {
  if (state.loadState !== 'loaded') return [];
  if (state.active !== 'active') return [{ subject: unit, current: state.active || 'unknown', desired: 'active' }];
  const mtime = state.mtimes[configPath];
  if (mtime !== undefined && changedSinceStart(mtime, state)) {
    return [{ subject: unit, current: 'running an older config', desired: 'restarted with the current config' }];
  }
  return [];
}

async function probeService(ctx: CheckContext, unit: string, path: string): Promise<UnitState> {
  return parseUnitState((await ctx.probe(unitProbe(unit, [path]))).stdout);
}

/** `systemctl restart` and wait until the unit is active; fails with the unit's last log lines otherwise. */
async function restartAndVerify(ctx: ApplyContext, unit: string): Promise<void> {
  await ctx.run(sh`systemctl restart ${unit}`);
  let state = '';
  for (let attempt = 0; attempt < 20; attempt++) {
    state = (await ctx.exec(sh`systemctl is-active ${unit}`)).stdout.trim();
    if (state !== 'activating' && state !== 'reloading') break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (state !== 'active') {
    const log = await ctx.exec(sh`journalctl -u ${unit} -n 15 --no-pager`);
    throw new Error(`${unit} is ${state || 'not active'} after restart:\n${log.stdout.trim()}`);
  }
  const pid = (await ctx.exec(sh`systemctl show -p MainPID --value ${unit}`)).stdout.trim();
  ctx.log(`restarted ${unit} (MainPID ${pid}), active`);
}

/* ------------------------------------------------------------------ ensureContainerdCgroup */

export interface ContainerdCgroupParams {
  /** Default /etc/containerd/config.toml. */
  path?: string;
}

const CONTAINERD_CONFIG = '/etc/containerd/config.toml';

async function desiredContainerdConfig(ctx: CheckContext, current: string | null): Promise<string> {
  let base = current;
  if (needsDefaultContainerdConfig(current)) {
    const generated = await ctx.probe(sh`containerd config default`);
    if (generated.code !== 0) {
      throw new Error(generated.code === 127 ? 'containerd is not installed (no containerd command)' : `containerd config default failed: ${generated.stderr.trim()}`);
    }
    base = generated.stdout;
  }
  return setSystemdCgroup(base!, true);
}

/**
 * Ensures containerd uses the systemd cgroup driver: `SystemdCgroup = true` for runc in
 * /etc/containerd/config.toml (1.x and 2.x layouts), starting from `containerd config default`
 * when the file is missing, empty or a package's stub; containerd is restarted only when the file
 * changed (or runs an older config, or is not active), and must then be active.
 *
 * @example ensureContainerdCgroup()
 */
export function ensureContainerdCgroup(params: PerHostParams<ContainerdCgroupParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<ContainerdCgroupParams>(
    {
      kind: 'containerd-cgroup',
      id: (p) => `containerd-cgroup:${p.path ?? CONTAINERD_CONFIG}`,
      title: () => 'containerd SystemdCgroup = true',
      validate: (p) => {
        if (p.path !== undefined) requireAbsolutePath('path', p.path);
      },
      // `containerd config default` makes the desired file: in --check on a fresh host, it waits for the package.
      needs: () => [{ command: 'containerd' }],
      probes: (p) => [{ kind: 'read', path: p.path ?? CONTAINERD_CONFIG }, { kind: 'exec', command: unitProbe('containerd', [p.path ?? CONTAINERD_CONFIG]) }],
      async check(ctx, p) {
        const path = p.path ?? CONTAINERD_CONFIG;
        const current = await ctx.readText(path);
        const desired = await desiredContainerdConfig(ctx, current);
        if (desired !== current) return [{ subject: 'content', file: path, current, desired }];
        return serviceDrift('containerd', await probeService(ctx, 'containerd', path), path);
      },
      async apply(ctx, p, drift) {
        const path = p.path ?? CONTAINERD_CONFIG;
        if (drift.some((d) => d.subject === 'content')) {
          const current = await ctx.readText(path);
          const desired = await desiredContainerdConfig(ctx, current);
          await ctx.run(sh`mkdir -p -m 0755 -- ${path.replace(/\/[^/]+$/, '') || '/'}`);
          await ctx.writeFile(path, desired, current === null ? { mode: '0644' } : {});
        }
        const state = await probeService(ctx, 'containerd', path);
        if (state.loadState === 'loaded') await restartAndVerify(ctx, 'containerd');
        else ctx.log(`no containerd service (${state.loadState || 'no systemd'}): config written, nothing to restart`);
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ ensureDockerCgroupDriver */

/** What seed 002 writes to /etc/docker/daemon.json: the systemd cgroup driver and Docker's logs in the journal. */
export interface DockerDaemonSettings {
  cgroupDriver: 'systemd' | 'cgroupfs';
  logDriver: string;
}

/** Seed 002's daemon.json: `"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "journald"`. */
export const SEED_DOCKER_DAEMON: DockerDaemonSettings = { cgroupDriver: 'systemd', logDriver: 'journald' };

/**
 * Merges seed 002's settings into daemon.json text (pure): `"exec-opts"` gets
 * `native.cgroupdriver=<driver>` (an existing native.cgroupdriver entry is replaced in place, other
 * exec-opts are kept) and `"log-driver"` is set; every other key the file has is kept, in its
 * order. Text that already says so comes back unchanged; otherwise the JSON is written with
 * two-space indentation and a final newline. Missing or empty text is `{}`, which gives the seed's
 * file with its keys in the seed's order.
 *
 * @throws when the text is not a JSON object (a broken daemon.json is not overwritten)
 */
export function editDockerDaemonJson(text: string | null, settings: DockerDaemonSettings = SEED_DOCKER_DAEMON): string {
  let doc: unknown = {};
  if (text !== null && text.trim() !== '') {
    try {
      doc = JSON.parse(text);
    } catch (error) {
      throw new Error(`daemon.json is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('daemon.json must hold a JSON object');
  const config = doc as Record<string, unknown>;
  const opts = config['exec-opts'] ?? [];
  if (!Array.isArray(opts) || !opts.every((o) => typeof o === 'string')) throw new Error('daemon.json "exec-opts" must be a list of strings');
  const wanted = `native.cgroupdriver=${settings.cgroupDriver}`;
  const isDriver = (o: string) => /^native\.cgroupdriver\s*=/.test(o);
  const driverSet = opts.filter(isDriver).length === 1 && opts.includes(wanted);
  if (driverSet && config['log-driver'] === settings.logDriver && text !== null && text.trim() !== '') return text;
  const at = opts.findIndex(isDriver);
  const rest = opts.filter((o) => !isDriver(o));
  const execOpts = at >= 0 ? [...rest.slice(0, at), wanted, ...rest.slice(at)] : [...rest, wanted];
  // Spread order keeps the user's keys where they are; keys the file lacks come after them, exec-opts first (the seed's order).
  return `${JSON.stringify({ ...config, 'exec-opts': execOpts, 'log-driver': settings.logDriver }, null, 2)}\n`;
}

export interface DockerCgroupParams {
  /** Default /etc/docker/daemon.json. */
  path?: string;
}

const DOCKER_CONFIG = '/etc/docker/daemon.json';

/**
 * Ensures Docker runs with seed 002's daemon.json: the systemd cgroup driver (`"exec-opts":
 * ["native.cgroupdriver=systemd"]`) and `"log-driver": "journald"`, merged into
 * /etc/docker/daemon.json with the keys already there (see {@link editDockerDaemonJson}). When
 * docker.service exists it is restarted on a change and must come back active, and a running
 * daemon must report both in `docker info` (CgroupDriver systemd, LoggingDriver journald).
 *
 * @example ensureDockerCgroupDriver()
 */
export function ensureDockerCgroupDriver(params: PerHostParams<DockerCgroupParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<DockerCgroupParams>(
    {
      kind: 'docker-cgroup',
      id: (p) => `docker-cgroup:${p.path ?? DOCKER_CONFIG}`,
      title: () => `docker native.cgroupdriver=${SEED_DOCKER_DAEMON.cgroupDriver}, log-driver ${SEED_DOCKER_DAEMON.logDriver}`,
      validate: (p) => {
        if (p.path !== undefined) requireAbsolutePath('path', p.path);
      },
      async check(ctx, p) {
        const path = p.path ?? DOCKER_CONFIG;
        const current = await ctx.readText(path);
        const desired = editDockerDaemonJson(current);
        if (desired !== current) return [{ subject: 'content', file: path, current, desired }];
        const state = await probeService(ctx, 'docker', path);
        const drift = serviceDrift('docker', state, path);
        if (drift.length === 0 && state.active === 'active') {
          // The effect, not the file: what the running daemon uses.
          const info = await ctx.probe(sh`docker info --format '{{.CgroupDriver}} {{.LoggingDriver}}'`);
          const [cgroupDriver = '', logDriver = ''] = info.stdout.trim().split(' ');
          if (info.code === 0 && cgroupDriver !== SEED_DOCKER_DAEMON.cgroupDriver) drift.push({ subject: 'docker cgroup driver', current: cgroupDriver, desired: SEED_DOCKER_DAEMON.cgroupDriver });
          if (info.code === 0 && logDriver !== SEED_DOCKER_DAEMON.logDriver) drift.push({ subject: 'docker log driver', current: logDriver, desired: SEED_DOCKER_DAEMON.logDriver });
        }
        return drift;
      },
      async apply(ctx, p, drift) {
        const path = p.path ?? DOCKER_CONFIG;
        if (drift.some((d) => d.subject === 'content')) {
          const current = await ctx.readText(path);
          await ctx.run(sh`mkdir -p -m 0755 -- ${path.replace(/\/[^/]+$/, '') || '/'}`);
          await ctx.writeFile(path, editDockerDaemonJson(current), current === null ? { mode: '0644' } : {});
        }
        const state = await probeService(ctx, 'docker', path);
        if (state.loadState === 'loaded') await restartAndVerify(ctx, 'docker');
        else ctx.log('no docker service: daemon.json written, dockerd reads it when it starts');
      },
    },
    params,
    options,
  );
}
