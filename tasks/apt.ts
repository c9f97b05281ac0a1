import { posix } from 'node:path';
import { raw, sh, type Command } from '../runner/quote.js';
import { defineTask, type ApplyContext, type CheckContext, type Drift, type HostView, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/task.js';
import type { RunResult } from '../runner/index.js';
import { requireAbsolutePath, requireString } from './validate.js';
import { kubernetesMinor } from './kubernetes-version.js';

/*
 * apt: signing keys, repositories and packages, as in the seeds (000/001/002):
 *
 *   curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
 *   echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /' > /etc/apt/sources.list.d/kubernetes.list
 *   apt-get update && apt-get install -y kubelet kubeadm kubectl && apt-mark hold kubelet kubeadm kubectl
 *
 * The key is downloaded ON THE HOST (curl), not on the controller: the host is the machine that
 * must reach the repository anyway (apt fetches from it over the same network path, proxy and
 * DNS), the controller may sit outside the hosts' network (a laptop behind a ProxyJump), and the
 * seeds do the same. Dearmoring and fingerprint listing use the host's gpg in a throw-away
 * GNUPGHOME, so neither check nor apply touches root's ~/.gnupg.
 *
 * `apt-get update` after a repository or key change: the play's handler mechanism runs handlers
 * only at the END of the play, which is too late when the same play then installs packages from
 * the new repository. So every changed key/repo marks the host's package lists stale (state kept
 * per host for the run), and the update runs exactly once per host, at the first of:
 *   - the next ensurePackages on that host (it updates before installing), or
 *   - the aptUpdate() handler, which ensureAptKey/ensureAptRepo notify by default (a single
 *     shared handler, so the play runs it once per host however many repos changed); it finds the
 *     lists fresh, and reports ok, when ensurePackages already updated them.
 * In --check the same bookkeeping runs on predicted changes, so check and apply report the same.
 */

/* ------------------------------------------------------------------ per-host apt state */

/** What changed on a host in this run that apt's package lists do not reflect yet. */
const staleLists = new WeakMap<HostView, Set<string>>();

function markStale(host: HostView, reason: string): void {
  const reasons = staleLists.get(host) ?? new Set<string>();
  reasons.add(reason);
  staleLists.set(host, reasons);
}

function staleReasons(host: HostView): string[] {
  return [...(staleLists.get(host) ?? [])];
}

function clearStale(host: HostView): void {
  staleLists.delete(host);
}

/** Environment for every apt-get: no prompts, English messages (we match a few of them). */
const APT_ENV = raw('DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8');
/** Wait for a dpkg lock held by unattended-upgrades or cloud-init instead of failing at once. */
const LOCK_TIMEOUT = ['-o', 'DPkg::Lock::Timeout=300'];

/** `apt-get update` that fails when any source fails (`-o` is ignored by apt versions that lack it). */
export const APT_GET_UPDATE: Command = sh`${APT_ENV} apt-get update -q ${LOCK_TIMEOUT} -o APT::Update::Error-Mode=any`;

async function runAptUpdate(ctx: ApplyContext): Promise<void> {
  const result = await ctx.exec(APT_GET_UPDATE);
  if (result.code !== 0) {
    const problems = `${result.stdout}\n${result.stderr}`.split('\n').filter((line) => /^(E|W|Err):/.test(line.trim()));
    throw new Error(`apt-get update failed (exit ${result.code}):\n${problems.join('\n') || tail(result.stderr)}`);
  }
  ctx.log('apt-get update: package lists refreshed');
  clearStale(ctx.host);
}

function tail(text: string, lines = 15): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/* ------------------------------------------------------------------ aptUpdate */

let aptUpdateTask: Task<void> | undefined;

/**
 * Runs `apt-get update` on a host whose package lists are stale because a key or repository
 * changed earlier in this run (and no ensurePackages has refreshed them since); ok otherwise.
 * One shared task, so as a handler (ensureAptKey/ensureAptRepo notify it by default) it runs once
 * per host per play however many repositories changed.
 *
 * @example ensureAptRepo(kubernetesRepo('1.34.2').repo, { notify: [aptUpdate()] })
 */
export function aptUpdate(): Task<void> {
  aptUpdateTask ??= defineTask<Record<string, never>>(
    {
      kind: 'apt-update',
      id: () => 'apt-update',
      title: () => 'apt-get update',
      async check(ctx) {
        const reasons = staleReasons(ctx.host);
        return reasons.length ? [{ subject: 'package lists', current: `stale (${reasons.join(', ')} changed)`, desired: 'updated' }] : [];
      },
      async apply(ctx) {
        await runAptUpdate(ctx);
      },
    },
    {},
  );
  return aptUpdateTask;
}

/** The options with the shared aptUpdate handler added to `notify`. */
function notifyingUpdate(options: TaskOptions = {}): TaskOptions {
  const handler = aptUpdate();
  const notify = options.notify ?? [];
  return { ...options, notify: notify.includes(handler as Task<unknown>) ? notify : [...notify, handler as Task<unknown>] };
}

/* ------------------------------------------------------------------ keys */

/** One key from `gpg --show-keys --with-colons`: its primary fingerprint, subkeys and user ids. */
export interface OpenPgpKey {
  fingerprint: string;
  /** The last 16 hex digits of the fingerprint (what apt prints as NO_PUBKEY). */
  keyId: string;
  userIds: string[];
  subkeyFingerprints: string[];
}

/**
 * Parses `gpg --show-keys --with-colons` (or `--list-keys --with-colons`) output: a `pub` record
 * starts a key, the `fpr` record after it is its fingerprint (field 10), `sub` + `fpr` are
 * subkeys, `uid` field 10 is a user id (with gpg's \xNN escapes for `:` and control characters).
 */
export function parseKeyColons(output: string): OpenPgpKey[] {
  const keys: OpenPgpKey[] = [];
  let current: OpenPgpKey | undefined;
  let last: 'pub' | 'sub' | 'other' = 'other';
  for (const line of output.split('\n')) {
    const fields = line.split(':');
    const type = fields[0];
    if (type === 'pub') {
      current = { fingerprint: '', keyId: fields[4] ?? '', userIds: [], subkeyFingerprints: [] };
      keys.push(current);
      last = 'pub';
    } else if (type === 'sub' || type === 'ssb') {
      last = 'sub';
    } else if (type === 'fpr' && current) {
      const fingerprint = (fields[9] ?? '').toUpperCase();
      if (last === 'pub' && current.fingerprint === '') current.fingerprint = fingerprint;
      else if (last === 'sub') current.subkeyFingerprints.push(fingerprint);
      last = 'other';
    } else if (type === 'uid' && current) {
      current.userIds.push((fields[9] ?? '').replace(/\\x([0-9a-f]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))));
    }
  }
  return keys;
}

/** "9DC8 5822 9FC7 …" or "0x9dc8…" → "9DC85822…"; throws unless it is a full v4 (40) or v5/v6 (64) fingerprint. */
export function normaliseFingerprint(value: string): string {
  if (typeof value !== 'string') throw new Error(`fingerprint must be a string, got ${JSON.stringify(value)}`);
  const hex = value.replace(/\s+/g, '').replace(/^0x/i, '').toUpperCase();
  if (!/^([0-9A-F]{40}|[0-9A-F]{64})$/.test(hex)) {
    throw new Error(`fingerprint must be a full key fingerprint (40 or 64 hex digits), got ${JSON.stringify(value)}`);
  }
  return hex;
}

/**
 * Throws unless the primary keys in a downloaded key file are exactly the wanted fingerprints:
 * a file with the right key plus an extra one would let that extra key sign the repository too.
 */
export function verifyFingerprints(keys: OpenPgpKey[], wanted: string | readonly string[], source: string): void {
  const want = [...new Set((typeof wanted === 'string' ? [wanted] : wanted).map(normaliseFingerprint))].sort();
  const have = [...new Set(keys.map((key) => key.fingerprint))].sort();
  if (have.length === 0) throw new Error(`${source} holds no OpenPGP public key`);
  if (want.join(' ') !== have.join(' ')) {
    throw new Error(`key fingerprint mismatch for ${source}: expected ${want.join(', ')}, the key is ${have.join(', ')}; nothing written`);
  }
}

export interface AptKeyParams {
  /** Where the key is published (https, or plain http only with `fingerprint`); ASCII-armored or binary. */
  url: string;
  /** Absolute path of the dearmored keyring, conventionally under /etc/apt/keyrings, ending in .gpg. */
  keyring: string;
  /**
   * The key's full fingerprint (or all of them, when the file holds several keys): a mismatch fails before
   * anything is written. Required for a plain http `url` (refused when the playbook loads without it).
   */
  fingerprint?: string | readonly string[];
}

/** A key downloaded and parsed on the host by {@link keyProbeCommand}. */
export interface DownloadedKey {
  sha256: string;
  bytes: Buffer;
  keys: OpenPgpKey[];
  /** sha256 and mode ("0644") of the keyring on the host, null when it does not exist. */
  current: { sha256: string; mode: string } | null;
}

/**
 * How a downloaded key is kept: `dearmored` (apt's signed-by keyrings; an armored key is converted)
 * or `armored`, as published (rpm imports only ASCII-armored keys: a binary one is refused).
 */
export type KeyFormat = 'dearmored' | 'armored';

const TO_DEARMORED = raw(`if grep -q -e '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$t/key"; then
  GNUPGHOME="$t" gpg --batch --quiet --dearmor < "$t/key" > "$t/key.gpg" 2>/dev/null || { echo "the key at the URL is not valid ASCII armor" >&2; exit 11; }
else
  mv "$t/key" "$t/key.gpg"
fi`);

const KEEP_ARMORED = raw(`grep -q -e '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$t/key" || { echo "the key at the URL is not ASCII-armored (rpm imports armored keys only)" >&2; exit 13; }
mv "$t/key" "$t/key.gpg"`);

/**
 * Downloads the key on the host into a temp directory, dearmors it when ASCII-armored (or, for
 * `armored`, requires and keeps the armor), and prints its sha256, base64 bytes and fingerprints,
 * with the sha256/mode of the current keyring: one round trip for check. Writes nothing outside its
 * own temp directory (removed on exit).
 */
export function keyProbeCommand(url: string, keyring: string, format: KeyFormat = 'dearmored'): Command {
  return sh`t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
curl -fsSL --retry 2 --connect-timeout 15 --max-time 120 -o "$t/key" ${url} 2>"$t/err" || { echo "$(tail -n 1 "$t/err")" >&2; exit 10; }
${format === 'armored' ? KEEP_ARMORED : TO_DEARMORED}
echo "sha256=$(sha256sum < "$t/key.gpg" | cut -c1-64)"
if [ -f ${keyring} ]; then echo "current=$(sha256sum < ${keyring} | cut -c1-64)"; echo "mode=$(stat -c %a ${keyring})"; fi
echo "base64=$(base64 -w0 < "$t/key.gpg")"
echo "colons:"
GNUPGHOME="$t" gpg --batch --quiet --show-keys --with-colons "$t/key.gpg" 2>/dev/null || { echo "the file at the key URL is not an OpenPGP key" >&2; exit 12; }`;
}

/** Parses keyProbeCommand's output (pure). */
export function parseKeyProbe(output: string): DownloadedKey {
  const at = output.indexOf('\ncolons:\n');
  const head = at >= 0 ? output.slice(0, at) : output;
  const values = new Map<string, string>();
  for (const line of head.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const current = values.get('current');
  const mode = values.get('mode');
  return {
    sha256: values.get('sha256') ?? '',
    bytes: Buffer.from(values.get('base64') ?? '', 'base64'),
    keys: at >= 0 ? parseKeyColons(output.slice(at + '\ncolons:\n'.length)) : [],
    current: current ? { sha256: current, mode: (mode ?? '').padStart(4, '0') } : null,
  };
}

/**
 * The key at `p.url`, downloaded on the host (through `probe`: ctx.probe in check, ctx.run in apply)
 * and checked against `p.fingerprint` when given; `p.keyring` is where it is kept (its current sum and mode are read).
 */
export async function downloadKey(probe: (command: Command) => Promise<RunResult>, p: AptKeyParams, format: KeyFormat = 'dearmored'): Promise<DownloadedKey> {
  const result = await probe(keyProbeCommand(p.url, p.keyring, format));
  if (result.code !== 0) {
    const why = result.code === 127 ? 'curl or gpg is not installed' : tail(result.stderr, 5) || `exit ${result.code}`;
    throw new Error(`could not fetch the key ${p.url} on the host: ${why}`);
  }
  const key = parseKeyProbe(result.stdout);
  if (!/^[0-9a-f]{64}$/.test(key.sha256) || key.bytes.length === 0) throw new Error(`could not fetch the key ${p.url}: unexpected output`);
  if (p.fingerprint !== undefined) verifyFingerprints(key.keys, p.fingerprint, p.url);
  else if (key.keys.length === 0) throw new Error(`${p.url} holds no OpenPGP public key`);
  return key;
}

/** "<fingerprints> (sha256 <first 16 hex digits>)": how a key is named in drift and logs. */
export function describeKey(key: DownloadedKey): string {
  return `${key.keys.map((k) => k.fingerprint).join(', ')} (sha256 ${key.sha256.slice(0, 16)})`;
}

const KEYRING_MODE = '0644';

/**
 * Ensures a repository signing key is installed, dearmored, as a keyring for `signed-by=`: the
 * key is downloaded on the host with curl, ASCII-armored keys are converted with
 * `gpg --dearmor`, and when `fingerprint` is given the key must be exactly that key — a mismatch
 * is a hard error (in --check too) and nothing is written. The key is downloaded on every run and
 * compared byte for byte, so a re-published key (extended expiry) is picked up.
 *
 * @param params.url where the key is published: https, or plain http only with `fingerprint`
 * @param params.keyring absolute path of the keyring (mode 0644), e.g. /etc/apt/keyrings/docker.gpg
 * @param params.fingerprint the expected fingerprint(s), spaces allowed; required for an http:// url
 * @example ensureAptKey({ url: 'https://download.docker.com/linux/debian/gpg', keyring: '/etc/apt/keyrings/docker.gpg', fingerprint: '9DC8 5822 9FC7 DD38 854A  E2D8 8D81 803C 0EBF CD88' })
 */
export function ensureAptKey(params: PerHostParams<AptKeyParams>, options?: TaskOptions): Task<void> {
  return defineTask<AptKeyParams>(
    {
      kind: 'apt-key',
      id: (p) => `apt-key:${p.keyring}`,
      title: (p) => `apt key ${p.keyring}`,
      validate: (p) => {
        requireUrl('url', p.url);
        requireKeyring(p.keyring);
        if (p.fingerprint !== undefined) {
          const list = typeof p.fingerprint === 'string' ? [p.fingerprint] : p.fingerprint;
          if (!Array.isArray(list) || list.length === 0) throw new Error('fingerprint must be a fingerprint or a non-empty list of them');
          list.forEach(normaliseFingerprint);
        } else if (/^http:/i.test(p.url)) {
          // Anyone on the path can swap a key fetched over plain http, and then sign the packages root installs.
          throw new Error(`the key ${p.url} is fetched over plain http: give its fingerprint (the full fingerprint, as the vendor publishes it), or an https:// URL`);
        }
      },
      async check(ctx, p) {
        const key = await downloadKey((command) => ctx.probe(command), p);
        const drift: Drift[] = [];
        if (key.current?.sha256 !== key.sha256) {
          drift.push({ subject: 'keyring', current: key.current ? `other key (sha256 ${key.current.sha256.slice(0, 16)})` : 'absent', desired: describeKey(key) });
        } else if (key.current.mode !== KEYRING_MODE) {
          drift.push({ subject: 'mode', current: key.current.mode, desired: KEYRING_MODE });
        }
        if (drift.length && ctx.checkMode) markStale(ctx.host, `key ${posix.basename(p.keyring)}`);
        return drift;
      },
      async apply(ctx, p) {
        // Download again: apply must act on what is published now, and verify it again before writing.
        const key = await downloadKey((command) => ctx.run(command), p);
        await ctx.run(sh`mkdir -p -m 0755 -- ${posix.dirname(p.keyring)}`);
        await ctx.writeFile(p.keyring, key.bytes, { mode: KEYRING_MODE, owner: 'root', group: 'root' });
        ctx.log(`installed ${describeKey(key)} as ${p.keyring}`);
        markStale(ctx.host, `key ${posix.basename(p.keyring)}`);
      },
    },
    params,
    notifyingUpdate(options),
  );
}

/* ------------------------------------------------------------------ repositories */

export type AptSourceFormat = 'one-line' | 'deb822';

export interface AptRepoParams {
  /** File name under /etc/apt/sources.list.d, without extension: `kubernetes` → kubernetes.list / kubernetes.sources. */
  name: string;
  /** The repository's base URI. */
  uri: string;
  /** Distribution (`bookworm`), or a path ending in `/` for a flat repository (`/`). Default: the host's codename. */
  suite?: string;
  /** Components (`main`, `stable`); none for a flat repository. */
  components?: readonly string[];
  /** The keyring for `signed-by=` (see ensureAptKey). */
  keyring: string;
  /** `arch=`: default the host's `dpkg --print-architecture`; null for no arch option (every configured architecture). */
  arch?: string | null;
  /** `one-line` (`<name>.list`, default) or `deb822` (`<name>.sources`). */
  format?: AptSourceFormat;
}

/** An AptRepoParams with the host's defaults filled in: what renderAptSource renders. */
export interface ResolvedAptRepo {
  uri: string;
  suite: string;
  components: readonly string[];
  keyring: string;
  arch: string | null;
}

/** Fills in the defaults from the host's facts: suite = codename, arch = `dpkg --print-architecture`. */
export function resolveAptRepo(p: AptRepoParams, host: Pick<HostView, 'facts'>): ResolvedAptRepo {
  const suite = p.suite ?? host.facts.codename;
  if (!suite) throw new Error(`no suite given and the host has no codename fact (VERSION_CODENAME)`);
  const arch = p.arch === undefined ? host.facts.arch || null : p.arch;
  return { uri: p.uri, suite, components: p.components ?? [], keyring: p.keyring, arch };
}

const isFlat = (suite: string): boolean => suite.endsWith('/');

/**
 * The source entry, exactly as apt reads it (pure). One-line:
 * `deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable`;
 * deb822: Types/URIs/Suites/Components/Architectures/Signed-By fields (no Components for a flat repo).
 */
export function renderAptSource(repo: ResolvedAptRepo, format: AptSourceFormat = 'one-line'): string {
  const archs = repo.arch ? repo.arch.split(',') : [];
  if (format === 'deb822') {
    const fields = [
      `Types: deb`,
      `URIs: ${repo.uri}`,
      `Suites: ${repo.suite}`,
      ...(repo.components.length ? [`Components: ${repo.components.join(' ')}`] : []),
      ...(archs.length ? [`Architectures: ${archs.join(' ')}`] : []),
      `Signed-By: ${repo.keyring}`,
    ];
    return `${fields.join('\n')}\n`;
  }
  const options = [...(archs.length ? [`arch=${archs.join(',')}`] : []), `signed-by=${repo.keyring}`];
  return `${['deb', `[${options.join(' ')}]`, repo.uri, repo.suite, ...repo.components].join(' ')}\n`;
}

const SOURCES_DIR = '/etc/apt/sources.list.d';

/** The file for a repository in a format, and the file of the other format (removed if present). */
export function aptSourcePaths(name: string, format: AptSourceFormat = 'one-line'): { path: string; other: string } {
  const list = `${SOURCES_DIR}/${name}.list`;
  const sources = `${SOURCES_DIR}/${name}.sources`;
  return format === 'deb822' ? { path: sources, other: list } : { path: list, other: sources };
}

function validateRepo(p: AptRepoParams): void {
  requireString('name', p.name);
  if (!/^[A-Za-z0-9_.-]+$/.test(p.name)) throw new Error(`name must be a file name of letters, digits, _ . - (apt ignores others), got ${JSON.stringify(p.name)}`);
  requireUrl('uri', p.uri);
  requireKeyring(p.keyring);
  if (p.suite !== undefined && (typeof p.suite !== 'string' || !/^[A-Za-z0-9_.\-/~:+]+$/.test(p.suite))) throw new Error(`suite must be a distribution name or a path ending in /, got ${JSON.stringify(p.suite)}`);
  const components = p.components ?? [];
  if (!Array.isArray(components) || !components.every((c) => typeof c === 'string' && /^[A-Za-z0-9_.\-/]+$/.test(c))) {
    throw new Error(`components must be a list of component names, got ${JSON.stringify(p.components)}`);
  }
  if (p.suite !== undefined && isFlat(p.suite) && components.length) throw new Error(`a flat repository (suite ${p.suite}) has no components`);
  if ((p.suite === undefined || !isFlat(p.suite)) && components.length === 0) throw new Error('components are required unless suite is a path ending in / (flat repository)');
  if (p.arch !== undefined && p.arch !== null && (typeof p.arch !== 'string' || !/^[a-z0-9-]+(,[a-z0-9-]+)*$/.test(p.arch))) {
    throw new Error(`arch must be a Debian architecture like amd64 or arm64 (comma-separated for several), or null, got ${JSON.stringify(p.arch)}`);
  }
  if (p.format !== undefined && p.format !== 'one-line' && p.format !== 'deb822') throw new Error(`format must be one-line or deb822, got ${JSON.stringify(p.format)}`);
}

/**
 * Ensures an apt repository is configured with `signed-by=` its keyring, in one-line
 * (`/etc/apt/sources.list.d/<name>.list`) or deb822 (`<name>.sources`) format; the file of the
 * other format is removed, so apt never sees the repository twice. `arch` defaults to the host's
 * `dpkg --print-architecture` (arm64 on a 64-bit Pi) and `suite` to its codename. A change marks
 * the host's package lists stale: the next ensurePackages, or the aptUpdate handler notified by
 * default, runs `apt-get update` once.
 *
 * @example ensureAptRepo({ name: 'docker', uri: 'https://download.docker.com/linux/debian', components: ['stable'], keyring: '/etc/apt/keyrings/docker.gpg' })
 */
export function ensureAptRepo(params: PerHostParams<AptRepoParams>, options?: TaskOptions): Task<void> {
  const desired = (ctx: CheckContext, p: AptRepoParams) => renderAptSource(resolveAptRepo(p, ctx.host), p.format);
  return defineTask<AptRepoParams>(
    {
      kind: 'apt-repo',
      id: (p) => `apt-repo:${p.name}`,
      title: (p) => `apt repository ${p.name}`,
      validate: validateRepo,
      probes: (p) => {
        const { path, other } = aptSourcePaths(p.name, p.format);
        return [{ kind: 'read', path }, { kind: 'stat', path }, { kind: 'stat', path: other }];
      },
      async check(ctx, p) {
        const { path, other } = aptSourcePaths(p.name, p.format);
        const want = desired(ctx, p);
        const [current, stat, otherStat] = await Promise.all([ctx.readText(path), ctx.stat(path), ctx.stat(other)]);
        const drift: Drift[] = [];
        if (current !== want) drift.push({ subject: 'content', file: path, current, desired: want });
        else if (stat && stat.mode !== '0644') drift.push({ subject: 'mode', current: stat.mode, desired: '0644' });
        if (otherStat) drift.push({ subject: other, current: 'present', desired: 'absent' });
        if (drift.length && ctx.checkMode) markStale(ctx.host, `repository ${p.name}`);
        return drift;
      },
      async apply(ctx, p) {
        const { path, other } = aptSourcePaths(p.name, p.format);
        await ctx.run(sh`mkdir -p -m 0755 -- ${SOURCES_DIR}`);
        await ctx.writeFile(path, desired(ctx, p), { mode: '0644' });
        await ctx.run(sh`rm -f -- ${other}`);
        markStale(ctx.host, `repository ${p.name}`);
      },
    },
    params,
    notifyingUpdate(options),
  );
}

/* ------------------------------------------------------------------ the seeds' repositories */

/** A key and the repository it signs, for ensureAptSource. */
export interface AptSource {
  key: PerHostParams<AptKeyParams>;
  repo: PerHostParams<AptRepoParams>;
}

/** The Kubernetes community repositories' signing key (pkgs.k8s.io, "isv:kubernetes OBS Project"). */
export const KUBERNETES_KEY_FINGERPRINT = 'DE15B14486CD377B9E876E1A234654DA9A296436';
/** Docker's release key ("Docker Release (CE deb)"). */
export const DOCKER_KEY_FINGERPRINT = '9DC858229FC7DD38854AE2D88D81803C0EBFCD88';


/** pkgs.k8s.io's base URL: one repository per minor below it. */
export const KUBERNETES_REPO_BASE_URL = 'https://pkgs.k8s.io';

/** The repository of a Kubernetes minor under a pkgs.k8s.io-shaped base URL: `<base>/core:/stable:/v1.34/deb/` (pure). */
export function kubernetesRepoUrl(version: string, baseUrl: string = KUBERNETES_REPO_BASE_URL): string {
  return `${baseUrl.replace(/\/+$/, '')}/core:/stable:/${kubernetesMinor(version)}/deb/`;
}

/**
 * The pkgs.k8s.io repository for a Kubernetes minor (seed 001): key
 * `https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key` → /etc/apt/keyrings/kubernetes-apt-keyring.gpg,
 * flat repository `deb [signed-by=…] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /` (packages of
 * every architecture, so no arch option). `baseUrl` and `fingerprint` name a mirror laid out like
 * pkgs.k8s.io and its signing key (the lab's repository).
 *
 * @example ensureAptSource(kubernetesRepo('1.34.2'))
 */
export function kubernetesRepo(
  version: string,
  options: { format?: AptSourceFormat; keyring?: string; name?: string; baseUrl?: string; fingerprint?: string } = {},
): AptSource {
  const uri = kubernetesRepoUrl(version, options.baseUrl);
  const keyring = options.keyring ?? '/etc/apt/keyrings/kubernetes-apt-keyring.gpg';
  return {
    key: { url: `${uri}Release.key`, keyring, fingerprint: options.fingerprint ?? KUBERNETES_KEY_FINGERPRINT },
    repo: { name: options.name ?? 'kubernetes', uri, suite: '/', components: [], keyring, arch: null, ...(options.format ? { format: options.format } : {}) },
  };
}

export type DockerDistro = 'debian' | 'ubuntu' | 'raspbian';

/** Docker's distribution directory for a host: ubuntu on Ubuntu, raspbian on 32-bit Raspberry Pi OS, else debian (64-bit Pi OS too). */
export function dockerDistro(host: Pick<HostView, 'facts'>): DockerDistro {
  if (host.facts.osId === 'ubuntu') return 'ubuntu';
  if (host.facts.osId === 'raspbian' && host.facts.arch === 'armhf') return 'raspbian';
  return 'debian';
}

/**
 * Docker's repository (seeds 000/001/002): key `https://download.docker.com/linux/<distro>/gpg`
 * → /etc/apt/keyrings/docker.gpg, `deb [arch=<host arch> signed-by=…] https://download.docker.com/linux/<distro> <codename> stable`.
 * The distro defaults per host (see dockerDistro); the codename and arch come from the host.
 *
 * @example ensureAptSource(dockerRepo()), ensurePackages(['containerd.io'])
 */
export function dockerRepo(options: { distro?: DockerDistro; format?: AptSourceFormat; keyring?: string; name?: string } = {}): AptSource {
  const keyring = options.keyring ?? '/etc/apt/keyrings/docker.gpg';
  const base = (host: HostView) => `https://download.docker.com/linux/${options.distro ?? dockerDistro(host)}`;
  return {
    key: { url: (host) => `${base(host)}/gpg`, keyring, fingerprint: DOCKER_KEY_FINGERPRINT },
    repo: { name: options.name ?? 'docker', uri: base, components: ['stable'], keyring, ...(options.format ? { format: options.format } : {}) },
  };
}

/**
 * The two tasks for a repository: its key, then the repository.
 *
 * @example await play('repos', 'all', [...ensureAptSource(kubernetesRepo('1.34.2')), ...ensureAptSource(dockerRepo())])
 */
export function ensureAptSource(source: AptSource, options?: TaskOptions): Task<void>[] {
  return [ensureAptKey(source.key, options), ensureAptRepo(source.repo, options)];
}

/* ------------------------------------------------------------------ packages */

export interface PackagesParams {
  /** Package names, optionally pinned: `kubelet=1.34.1-1.1`. */
  names: readonly string[];
  /** true: `apt-mark hold` them; false: unhold them; default: leave holds alone. */
  hold?: boolean;
  /** present (default) or absent (`apt-get remove`). */
  state?: 'present' | 'absent';
}

export interface PackageSpec {
  name: string;
  version?: string;
}

/** `kubelet=1.34.1-1.1` → { name: 'kubelet', version: '1.34.1-1.1' } (pure; throws on a malformed spec). */
export function parsePackageSpec(spec: string): PackageSpec {
  const match = typeof spec === 'string' ? /^([a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?)(?:=([0-9][A-Za-z0-9.+~:-]*))?$/.exec(spec) : null;
  if (!match) throw new Error(`not a package name or name=version: ${JSON.stringify(spec)}`);
  return match[2] === undefined ? { name: match[1]! } : { name: match[1]!, version: match[2] };
}

/** One package as dpkg knows it. */
export interface InstalledPackage {
  version: string;
  /** Fully installed (dpkg status `i`): not half-configured, not only config files left. */
  installed: boolean;
  held: boolean;
}

/** The dpkg-query probe: one line per known package, `name<TAB>version<TAB>status abbreviation`. */
export function dpkgQueryCommand(names: readonly string[]): Command {
  return sh`dpkg-query -W -f=${'${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'} ${names.map((n) => n.replace(/:.*$/, ''))}`;
}

/** Parses dpkgQueryCommand's output: `ii `, `hi `, `rc `… (want, status, error flag). Pure. */
export function parseDpkgQuery(output: string): Map<string, InstalledPackage> {
  const packages = new Map<string, InstalledPackage>();
  for (const line of output.split('\n')) {
    const [name, version, status] = line.split('\t');
    if (!name || version === undefined || status === undefined) continue;
    const entry = { version, installed: status[1] === 'i', held: status[0] === 'h' };
    const known = packages.get(name);
    // Multiarch: a package may be listed once per architecture; an installed instance wins.
    if (!known || (!known.installed && entry.installed)) packages.set(name, entry);
  }
  return packages;
}

/** What ensurePackages would change (pure): which to install or upgrade, which to hold or unhold, which to remove. */
export function packagesPlan(specs: readonly PackageSpec[], dpkg: Map<string, InstalledPackage>, p: Pick<PackagesParams, 'hold' | 'state'>) {
  const baseName = (name: string) => name.replace(/:.*$/, '');
  const state = (spec: PackageSpec) => dpkg.get(baseName(spec.name));
  if (p.state === 'absent') {
    return { install: [] as PackageSpec[], hold: [] as string[], unhold: [] as string[], remove: specs.filter((s) => state(s)?.installed).map((s) => s.name) };
  }
  const install = specs.filter((s) => {
    const now = state(s);
    return !now?.installed || (s.version !== undefined && now.version !== s.version);
  });
  const hold = p.hold === true ? specs.filter((s) => !state(s)?.held).map((s) => s.name) : [];
  const unhold = p.hold === false ? specs.filter((s) => state(s)?.held).map((s) => s.name) : [];
  return { install, hold, unhold, remove: [] as string[] };
}

/** The drift for a plan: one entry for what is missing, one for holds, one for removals. Pure. */
export function packagesDrift(specs: readonly PackageSpec[], dpkg: Map<string, InstalledPackage>, p: Pick<PackagesParams, 'hold' | 'state'>): Drift[] {
  const plan = packagesPlan(specs, dpkg, p);
  const now = (name: string) => {
    const found = dpkg.get(name.replace(/:.*$/, ''));
    return found?.installed ? found.version : 'absent';
  };
  const drift: Drift[] = [];
  if (plan.install.length) {
    drift.push({
      subject: 'missing',
      current: plan.install.map((s) => `${s.name} ${now(s.name)}`).join(', '),
      desired: plan.install.map(specText).join(', '),
    });
  }
  if (plan.hold.length) drift.push({ subject: 'not held', current: plan.hold.join(', '), desired: 'held' });
  if (plan.unhold.length) drift.push({ subject: 'held', current: plan.unhold.join(', '), desired: 'not held' });
  if (plan.remove.length) drift.push({ subject: 'installed', current: plan.remove.map((name) => `${name} ${now(name)}`).join(', '), desired: 'absent' });
  return drift;
}

const specText = (spec: PackageSpec): string => (spec.version === undefined ? spec.name : `${spec.name}=${spec.version}`);

/** apt's messages for a package or version it does not know (yet): the lists need an update. */
const UNKNOWN_TO_APT = /Unable to locate package|has no installation candidate|Version '[^']*' for '[^']*' was not found|Couldn't find any package/;

async function queryPackages(ctx: CheckContext, specs: readonly PackageSpec[]): Promise<Map<string, InstalledPackage>> {
  // Exit 1 = some package is unknown to dpkg, i.e. not installed: that is drift, not an error.
  const result = await ctx.probe(dpkgQueryCommand(specs.map((s) => s.name)));
  if (result.code !== 0 && result.code !== 1) throw new Error(`dpkg-query failed (exit ${result.code}): ${tail(result.stderr, 5)}`);
  return parseDpkgQuery(result.stdout);
}

/**
 * Ensures packages are installed (apt-get install, non-interactive, keeping changed config files
 * with `--force-confold`), at the pinned version when given (`kubelet=1.34.1-1.1`), and held or
 * unheld with `apt-mark`; or removed (`state: 'absent'`). Check reads dpkg's database with
 * dpkg-query, never apt, so a package apt does not know yet (its repository is still pending in
 * --check) is simply reported missing. Apply runs `apt-get update` first when a key or repository
 * changed earlier in the run, and once more when apt does not know a package (a fresh host, or a
 * repository added by an earlier run that stopped before its update).
 *
 * @example ensurePackages(['kubelet=1.34.1-1.1', 'kubeadm=1.34.1-1.1', 'kubectl=1.34.1-1.1'], { hold: true })
 */
export function ensurePackages(names: PerHost<readonly string[]>, params: Omit<PackagesParams, 'names'> = {}, options?: TaskOptions): Task<void> {
  const specsOf = (p: PackagesParams) => p.names.map(parsePackageSpec);
  return defineTask<PackagesParams>(
    {
      kind: 'packages',
      id: (p) => `packages:${specsOf(p).map((s) => s.name).sort().join(',')}`,
      title: (p) => `${p.state === 'absent' ? 'remove packages' : 'packages'} ${p.names.join(', ')}${p.hold === true ? ' (held)' : ''}`,
      validate: (p) => {
        if (!Array.isArray(p.names) || p.names.length === 0) throw new Error('names must be a non-empty list of package names');
        const specs = specsOf(p);
        const seen = new Set<string>();
        for (const spec of specs) {
          if (seen.has(spec.name)) throw new Error(`package ${spec.name} is listed twice`);
          seen.add(spec.name);
        }
        if (p.state !== undefined && p.state !== 'present' && p.state !== 'absent') throw new Error(`state must be present or absent, got ${JSON.stringify(p.state)}`);
        if (p.hold !== undefined && typeof p.hold !== 'boolean') throw new Error('hold must be true or false');
        if (p.state === 'absent' && (p.hold === true || specs.some((s) => s.version !== undefined))) throw new Error('state absent takes neither hold nor versions');
      },
      provides: (p) => (p.state === 'absent' ? [] : specsOf(p).map((s) => ({ package: s.name }))),
      probes: (p) => [{ kind: 'exec', command: dpkgQueryCommand(specsOf(p).map((s) => s.name)) }],
      async check(ctx, p) {
        const specs = specsOf(p);
        const drift = packagesDrift(specs, await queryPackages(ctx, specs), p);
        // In --check, an install here is where apply would refresh stale lists: later handlers find them fresh.
        if (ctx.checkMode && drift.some((d) => d.subject === 'missing')) clearStale(ctx.host);
        return drift;
      },
      async apply(ctx, p) {
        const specs = specsOf(p);
        const plan = packagesPlan(specs, await queryPackages(ctx, specs), p);
        if (plan.remove.length) {
          await ctx.run(sh`${APT_ENV} apt-get remove -y -q ${LOCK_TIMEOUT} --allow-change-held-packages ${plan.remove}`);
          return;
        }
        if (plan.install.length) {
          if (staleReasons(ctx.host).length) await runAptUpdate(ctx);
          const flags = [
            '-o', 'Dpkg::Options::=--force-confold',
            ...LOCK_TIMEOUT,
            // An explicit pin is the wanted state even when it is a downgrade or the package is held.
            ...(plan.install.some((s) => s.version !== undefined) ? ['--allow-downgrades', '--allow-change-held-packages'] : []),
          ];
          const install = sh`${APT_ENV} apt-get install -y -q ${flags} ${plan.install.map(specText)}`;
          let result = await ctx.exec(install);
          if (result.code !== 0 && UNKNOWN_TO_APT.test(`${result.stdout}\n${result.stderr}`)) {
            ctx.log('apt does not know a package yet: apt-get update, then install again');
            await runAptUpdate(ctx);
            result = await ctx.exec(install);
          }
          if (result.code !== 0) throw new Error(`apt-get install ${plan.install.map(specText).join(' ')} failed (exit ${result.code}):\n${tail(`${result.stdout}\n${result.stderr}`)}`);
          for (const line of result.stdout.split('\n').filter((l) => /^(Setting up|Unpacking) /.test(l))) ctx.log(line);
        }
        // Holds from dpkg's state after the install: installing a held package at another version drops its hold.
        const holds = plan.install.length ? packagesPlan(specs, await queryPackages(ctx, specs), p) : plan;
        if (holds.hold.length) await ctx.run(sh`apt-mark hold ${holds.hold}`);
        if (holds.unhold.length) await ctx.run(sh`apt-mark unhold ${holds.unhold}`);
      },
    },
    { ...params, names },
    options,
  );
}

/* ------------------------------------------------------------------ parameter checks */

function requireUrl(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || !/^https?:\/\/[^\s\][]+$/.test(value)) throw new Error(`${name} must be an http(s) URL without spaces or brackets, got ${JSON.stringify(value)}`);
}

function requireKeyring(value: unknown): asserts value is string {
  requireAbsolutePath('keyring', value);
  if (/\s/.test(value)) throw new Error(`keyring must not contain spaces (apt's signed-by option cannot quote them): ${value}`);
  // apt decides the keyring format by extension: .asc is read as ASCII armor, but the task stores it dearmored.
  if (!value.endsWith('.gpg')) throw new Error(`keyring must end in .gpg (the key is stored dearmored), got ${value}`);
}
