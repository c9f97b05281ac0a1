/**
 * Repository signing keys: downloaded on the host, dearmored, fingerprint-checked, kept in /etc/apt/keyrings.
 */
import { posix } from 'node:path';
import { defineTask, raw, sh, type Command, type Drift, type PerHostParams, type RunResult, type Task, type TaskOptions } from '../runner/index.js';
import { requireAbsolutePath } from './validate.js';
import { markStale, notifyingUpdate, tail } from './apt-update.js';

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

/* ------------------------------------------------------------------ parameter checks */

export function requireUrl(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || !/^https?:\/\/[^\s\][]+$/.test(value)) throw new Error(`${name} must be an http(s) URL without spaces or brackets, got ${JSON.stringify(value)}`);
}

export function requireKeyring(value: unknown): asserts value is string {
  requireAbsolutePath('keyring', value);
  if (/\s/.test(value)) throw new Error(`keyring must not contain spaces (apt's signed-by option cannot quote them): ${value}`);
  // apt decides the keyring format by extension: .asc is read as ASCII armor, but the task stores it dearmored.
  if (!value.endsWith('.gpg')) throw new Error(`keyring must end in .gpg (the key is stored dearmored), got ${value}`);
}
