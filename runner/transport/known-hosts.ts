import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InputError, TransportError } from '../errors.js';

/** One key line of an OpenSSH known_hosts file. */
export interface KnownHostEntry {
  /** The file the line came from, for messages. */
  file: string;
  /** 1-based line number in `file`. */
  line: number;
  /** `@revoked` and `@cert-authority` lines carry a marker; plain key lines do not. */
  marker?: 'revoked' | 'cert-authority';
  /** The host field as written: a comma list of patterns, or one hashed `|1|salt|hash` entry. */
  hosts: string;
  /** Key type taken from the key blob itself (e.g. `ssh-ed25519`, `ssh-rsa`). */
  keyType: string;
  /** The public key blob (SSH wire format, the base64 field decoded). */
  key: Buffer;
}

/** Where a host is reached and what known_hosts files vouch for it. */
export interface HostKeyCheck {
  /** Inventory name, used in messages. */
  name: string;
  host: string;
  port: number;
  /** Files to read; the first is where an accepted new key is written. */
  files: string[];
  /**
   * Accept an unknown key: {@link verifyHostKey} answers `new`, and the caller records it with
   * {@link recordHostKey} in `files[0]` once the handshake completed (a changed key is still refused).
   */
  acceptNew: boolean;
}

/** What known_hosts says about an offered key. */
export type HostKeyVerdict =
  | { status: 'known'; entry: KnownHostEntry }
  | { status: 'unknown' }
  /**
   * The host is known, but not with this key: `entries` are its keys of the offered type when there are
   * any (the same type, another key), else all of its keys (it is known only under other key types).
   * `entry` is the first of them.
   */
  | { status: 'changed'; entry: KnownHostEntry; entries: KnownHostEntry[] }
  | { status: 'revoked'; entry: KnownHostEntry };

/**
 * The name a host is filed under in known_hosts: the bare host for port 22, `[host]:port` otherwise
 * (what OpenSSH writes and looks up). Lowercased, because OpenSSH lowercases the host before lookup.
 */
export function knownHostsName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 ? lower : `[${lower}]:${port}`;
}

/** The key type embedded at the start of an SSH public key blob, or undefined if the blob is malformed. */
export function keyTypeOf(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const length = key.readUInt32BE(0);
  if (length === 0 || 4 + length > key.length) return undefined;
  return key.subarray(4, 4 + length).toString('latin1');
}

/** The fingerprint as `ssh-keygen -l` and `ssh` print it: `SHA256:` and unpadded base64 of the blob's digest. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Hashes a host name the way `ssh-keygen -H` and `HashKnownHosts yes` do:
 * `|1|base64(salt)|base64(HMAC-SHA1(key=salt, name))` with a random 20-byte salt unless one is given.
 */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const digest = createHmac('sha1', salt).update(name).digest('base64');
  return `|1|${salt.toString('base64')}|${digest}`;
}

/** Parses known_hosts text. Comments, blank lines and lines OpenSSH would also ignore (malformed keys) are skipped. */
export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, index) => {
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) return;
    let marker: KnownHostEntry['marker'];
    if (fields[0].startsWith('@')) {
      const name = fields.shift();
      if (name === '@revoked') marker = 'revoked';
      else if (name === '@cert-authority') marker = 'cert-authority';
      else return;
    }
    const [hosts, type, base64] = fields;
    if (hosts === undefined || type === undefined || base64 === undefined) return;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return;
    const key = Buffer.from(base64, 'base64');
    const keyType = keyTypeOf(key);
    // A blob that disagrees with its type field is corrupt; OpenSSH skips such lines too.
    if (keyType === undefined || keyType !== type) return;
    entries.push({ file, line: index + 1, ...(marker ? { marker } : {}), hosts, keyType, key });
  });
  return entries;
}

/** OpenSSH's wildcard match (`*` any run, `?` one character), on whole strings. */
function wildcardMatch(pattern: string, text: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(text);
}

/**
 * Whether a known_hosts host field matches `name` (as made by {@link knownHostsName}).
 * Handles hashed entries, comma lists, wildcards and `!negation` (a matching negated pattern wins).
 */
export function hostMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (salt === undefined || hash === undefined) return false;
    const expected = Buffer.from(hash, 'base64');
    const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
  let matched = false;
  for (const pattern of hosts.toLowerCase().split(',')) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), name)) return false;
    } else if (wildcardMatch(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

/**
 * Judges an offered host key against known_hosts entries: a revoked key is refused; a key listed for the
 * host is known; a host listed with other keys has changed, whether they are of the offered type or only
 * of other types. OpenSSH would take a key of a type it has not seen as new and (with accept-new) record
 * it; that lets anyone on the path who offers only another algorithm be "new", so Capstan refuses it like
 * a changed key. `@cert-authority` lines are ignored because ssh2 does not negotiate host certificates,
 * so a CA line can never vouch for a plain key.
 */
export function checkHostKey(entries: readonly KnownHostEntry[], name: string, key: Buffer): HostKeyVerdict {
  const keyType = keyTypeOf(key);
  const forHost = entries.filter((entry) => entry.marker !== 'cert-authority' && hostMatches(entry.hosts, name));
  const revoked = forHost.find((entry) => entry.marker === 'revoked' && entry.key.equals(key));
  if (revoked) return { status: 'revoked', entry: revoked };
  const plain = forHost.filter((entry) => entry.marker === undefined);
  const known = plain.find((entry) => entry.key.equals(key));
  if (known) return { status: 'known', entry: known };
  const sameType = plain.filter((entry) => entry.keyType === keyType);
  const changed = sameType.length ? sameType : plain;
  return changed[0] ? { status: 'changed', entry: changed[0], entries: changed } : { status: 'unknown' };
}

/**
 * Parsed files, by path, with the identity of the version parsed: a run connecting to 50 hosts reads
 * each file twice per host (key types, then the verdict) but parses it once, and again only after it
 * changed (a key accepted meanwhile: another size, another modification time).
 */
const parsedFiles = new Map<string, { version: string; entries: KnownHostEntry[] }>();

/**
 * Reads and parses known_hosts files. A missing file is empty (OpenSSH treats it so: the first
 * connection creates it); any other read failure is an InputError naming the file.
 */
export async function readKnownHosts(files: readonly string[], host?: string): Promise<KnownHostEntry[]> {
  const entries: KnownHostEntry[] = [];
  for (const file of files) {
    let version: string;
    let text: string | undefined;
    try {
      const info = await stat(file, { bigint: true });
      version = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`;
      if (parsedFiles.get(file)?.version !== version) text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new InputError(`cannot read known_hosts file ${file}: ${(error as Error).message}`, {
        ...(host !== undefined ? { host } : {}),
        cause: error,
      });
    }
    if (text !== undefined) parsedFiles.set(file, { version, entries: parseKnownHosts(text, file) });
    entries.push(...parsedFiles.get(file)!.entries);
  }
  return entries;
}

/** The line recorded for a newly accepted key: `<name> <type> <base64>` with `name` from {@link knownHostsName}. */
export function formatKnownHostsLine(name: string, key: Buffer): string {
  return `${name} ${keyTypeOf(key)} ${key.toString('base64')}\n`;
}

/**
 * Appends a key line to a known_hosts file, creating its directory (0700) and the file (0600) like ssh
 * does. A file that does not end in a newline gets one first, so the new entry is not glued to the last.
 */
export async function appendKnownHost(file: string, name: string, key: Buffer): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  let prefix = '';
  try {
    const existing = await readFile(file);
    if (existing.length > 0 && existing[existing.length - 1] !== 0x0a) prefix = '\n';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  // O_APPEND keeps concurrent writers (several hosts accepted at once) from overwriting each other's lines.
  await appendFile(file, prefix + formatKnownHostsLine(name, key), { mode: 0o600 });
}

/** The host key types known_hosts lists for a host, so the client can prefer them in key exchange like OpenSSH. */
export async function knownKeyTypes(check: Pick<HostKeyCheck, 'name' | 'host' | 'port' | 'files'>): Promise<string[]> {
  const name = knownHostsName(check.host, check.port);
  const entries = await readKnownHosts(check.files, check.name);
  const types = entries
    .filter((entry) => entry.marker === undefined && hostMatches(entry.hosts, name))
    .map((entry) => entry.keyType);
  return [...new Set(types)];
}

/**
 * Why `file` cannot keep a newly accepted host key, or undefined when it can: /dev/null and other
 * non-files keep nothing, so accept-new there would take any key on every run. A missing file is fine
 * when its nearest existing ancestor is a directory we may write (the directories are created 0700).
 * Checked with access(2), so it is exact for ordinary users; root passes permission bits but not a
 * read-only file system.
 */
export function whyCannotKeep(file: string | undefined): string | undefined {
  if (file === undefined) return 'no known_hosts file is configured';
  if (file === '/dev/null') return 'it is /dev/null, which keeps nothing';
  let stats: Stats;
  try {
    stats = statSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return whyCannotCreate(file);
    if (code === 'ENOTDIR') return 'a directory on its path is a file';
    return `it cannot be examined (${code ?? (error as Error).message})`;
  }
  if (!stats.isFile()) return `it is not a regular file (${fileKind(stats)})`;
  try {
    accessSync(file, constants.W_OK);
  } catch (error) {
    return `it is not writable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
  return undefined;
}

function whyCannotCreate(file: string): string | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    let stats: Stats;
    try {
      stats = statSync(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && dir !== dirname(dir)) continue;
      return `it does not exist and ${dir} cannot be examined (${code ?? (error as Error).message})`;
    }
    if (!stats.isDirectory()) return `it does not exist and ${dir} is not a directory`;
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (error) {
      return `it does not exist and cannot be created in ${dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
    }
    return undefined;
  }
}

function fileKind(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  return 'not a file';
}

/**
 * Verifies the key a host offered, before the server has proved it holds the private key (ssh2 asks
 * before it checks the key exchange signature). Resolves `known` when known_hosts vouches for it, and
 * `new` when it is unknown and `acceptNew` is set: the caller must then record it with
 * {@link recordHostKey} only after the handshake completed. Rejects with TransportError when the key is
 * unknown (without acceptNew), revoked or changed (also when the host is known only under another key
 * type), and with InputError when a known_hosts file cannot be read or the first one cannot keep a key.
 */
export async function verifyHostKey(check: HostKeyCheck, key: Buffer): Promise<'known' | 'new'> {
  const name = knownHostsName(check.host, check.port);
  const offeredType = keyTypeOf(key) ?? 'unknown-type';
  const offered = `${offeredType} ${fingerprint(key)}`;
  const verdict = checkHostKey(await readKnownHosts(check.files, check.name), name, key);
  switch (verdict.status) {
    case 'known':
      return 'known';
    case 'revoked':
      throw new TransportError(
        `host ${check.name} (${name}): host key ${offered} is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}; refusing to connect`,
        { host: check.name },
      );
    case 'changed': {
      if (verdict.entry.keyType === offeredType) {
        throw new TransportError(
          `REMOTE HOST IDENTIFICATION HAS CHANGED for ${check.name} (${name}): known_hosts ${verdict.entry.file}:${verdict.entry.line} has ${fingerprint(verdict.entry.key)}, the host offered ${fingerprint(key)}`,
          { host: check.name },
        );
      }
      const knownKeys = verdict.entries.map((entry) => `${entry.keyType} ${fingerprint(entry.key)} at ${entry.file}:${entry.line}`);
      throw new TransportError(
        `REMOTE HOST IDENTIFICATION HAS CHANGED for ${check.name} (${name}): the host offered ${offered}, another key type than known_hosts has for it (${knownKeys.join(', ')}); refusing to connect`,
        { host: check.name },
      );
    }
    case 'unknown': {
      if (!check.acceptNew) {
        throw new TransportError(
          `host ${check.name} (${name}): host key ${offered} is not in known_hosts (${check.files.join(', ') || 'no files configured'}); verify it and add it, or run with --accept-new-host-keys`,
          { host: check.name },
        );
      }
      const problem = whyCannotKeep(check.files[0]);
      if (problem !== undefined) {
        throw new InputError(`host ${check.name}: accept-new cannot record host keys in ${check.files[0] ?? 'known_hosts'}: ${problem}`, {
          host: check.name,
        });
      }
      return 'new';
    }
  }
}

/**
 * Records a key that {@link verifyHostKey} answered `new` for, once the server proved it holds the key
 * (ssh2's `ready`). known_hosts is judged again first: a concurrent connection may have recorded the
 * key meanwhile (then nothing is written), or another one (then this is a changed key after all).
 */
export async function recordHostKey(check: HostKeyCheck, key: Buffer): Promise<void> {
  if ((await verifyHostKey(check, key)) === 'known') return;
  const target = check.files[0]!;
  try {
    await appendKnownHost(target, knownHostsName(check.host, check.port), key);
  } catch (error) {
    throw new InputError(`cannot record the host key of ${check.name} in ${target}: ${(error as Error).message}`, {
      host: check.name,
      cause: error,
    });
  }
}
