import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineTask, sh, writeLocalFileAtomic, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { normaliseMode, requireAbsolutePath } from './validate.js';

export interface BinaryParams {
  /**
   * Where the file is, fetched on the machine running capstan: an https:// URL, a file:/// on that
   * machine, or a plain http:// URL only together with a pinned `sha256` (whoever is on the path of
   * an http download could change the file and a checksum fetched beside it alike).
   */
  url: string;
  /** Expected SHA-256 of the file (hex). The download is refused when it differs. */
  sha256?: string;
  /**
   * Instead of `sha256`: where the file's published SHA-256 is (dl.k8s.io puts it at `<url>.sha256`),
   * an https:// URL (or file:/// on the machine running capstan; plain http is refused: a sum fetched
   * over http is no check), fetched once per run there, as the Kubernetes install docs'
   * `curl -LO …sha256; sha256sum --check` do. It then guards against a corrupt or truncated
   * download, not against a compromised server: pin `sha256` for that.
   */
  sha256Url?: string;
  /** Absolute path on the host, e.g. /usr/local/bin/kube-apiserver. */
  dest: string;
  /** Default '0755'. */
  mode?: string;
}

/** Where verified downloads are kept between runs: `$XDG_CACHE_HOME/capstan/downloads` (default ~/.cache/…), one file per sha256. */
export function downloadCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'capstan', 'downloads');
}

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Downloads in flight or done in this process, by url + sha256: every host of a play shares one
 * download. Once cached on disk only the path is remembered, so a run installing several large
 * binaries does not keep them all in memory.
 */
const downloads = new Map<string, Promise<{ path: string } | { bytes: Buffer }>>();

/** Forgets this process's downloads (the on-disk cache stays): for long-lived processes and tests. */
export function forgetDownloads(): void {
  downloads.clear();
}

/**
 * The file at `url`, verified against `sha256`: from the download cache when it holds it, else
 * downloaded once per process (concurrent callers share the download) and then cached. A checksum
 * mismatch rejects with an error naming the url, the expected and the actual sum; nothing is cached.
 */
export async function downloadVerified(url: string, sha256: string, retried = false): Promise<Buffer> {
  const key = `${url}\n${sha256}`;
  let download = downloads.get(key);
  if (!download) {
    download = fetchAndCache(url, sha256);
    downloads.set(key, download);
    // A failure is not remembered: a later run in the same process may try again.
    download.catch(() => downloads.delete(key));
  }
  const source = await download;
  if ('bytes' in source) return source.bytes;
  const bytes = await readFile(source.path).catch(() => null);
  if (bytes && sha256Of(bytes) === sha256) return bytes;
  // The cache entry went away or was changed under us: download again (once).
  downloads.delete(key);
  if (retried) throw new Error(`cannot read back ${source.path}, the cached download of ${url}`);
  return downloadVerified(url, sha256, true);
}

async function fetchAndCache(url: string, sha256: string): Promise<{ path: string } | { bytes: Buffer }> {
  const cached = join(downloadCacheDir(), sha256);
  const hit = await readFile(cached).catch(() => null);
  if (hit && sha256Of(hit) === sha256) return { path: cached };
  if (url.startsWith('file:')) {
    // A file on this machine: verified where it is, not copied into the cache.
    const path = fileURLToPath(url);
    const bytes = await readFile(path).catch((error: Error) => {
      throw new Error(`cannot read ${url}: ${error.message}`);
    });
    const actual = sha256Of(bytes);
    if (actual !== sha256) throw new Error(`checksum mismatch for ${url}: expected sha256 ${sha256}, got ${actual} (${bytes.length} bytes); nothing was installed`);
    return { path };
  }
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(30 * 60_000) });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    throw new Error(`cannot download ${url}: ${(error as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  if (!response.ok) throw new Error(`cannot download ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  const bytes = Buffer.from(await response.arrayBuffer());
  const actual = sha256Of(bytes);
  if (actual !== sha256) throw new Error(`checksum mismatch for ${url}: expected sha256 ${sha256}, got ${actual} (${bytes.length} bytes); nothing was installed`);
  try {
    await keep(cached, bytes);
    return { path: cached };
  } catch {
    return { bytes }; // no cache (read-only home, say): keep it in memory for this run
  }
}

/**
 * Writes a cache entry atomically under a temp name nobody else can claim (runner/local-file.ts), so
 * a crash never leaves a torn entry and another local user cannot plant a symlink there for us to follow.
 */
async function keep(path: string, bytes: Buffer): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  writeLocalFileAtomic(path, bytes, 0o644);
}

/** Published checksums fetched in this process, by URL (every host and task shares one fetch). */
const publishedSums = new Map<string, Promise<string>>();

/** The SHA-256 published at `url`: the first word of the file, 64 hex digits (`sha256sum` output or the bare sum). */
export function publishedSha256(url: string): Promise<string> {
  let sum = publishedSums.get(url);
  if (!sum) {
    sum = fetchPublishedSha256(url);
    publishedSums.set(url, sum);
    sum.catch(() => publishedSums.delete(url));
  }
  return sum;
}

async function fetchPublishedSha256(url: string): Promise<string> {
  let text: string;
  if (url.startsWith('file:')) {
    text = (
      await readFile(fileURLToPath(url), 'utf8').catch((error: Error) => {
        throw new Error(`cannot read the checksum ${url}: ${error.message}`);
      })
    ).trim();
  } else {
    let response: Response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
    } catch (error) {
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      throw new Error(`cannot download the checksum ${url}: ${(error as Error).message}${cause ? ` (${cause})` : ''}`);
    }
    if (!response.ok) throw new Error(`cannot download the checksum ${url}: HTTP ${response.status} ${response.statusText}`.trim());
    text = (await response.text()).trim();
  }
  const sum = text.split(/\s+/)[0] ?? '';
  if (!/^[0-9a-fA-F]{64}$/.test(sum)) throw new Error(`${url} is not a SHA-256 checksum file (it starts with ${JSON.stringify(text.slice(0, 40))})`);
  return sum.toLowerCase();
}

/** A file:/// URL: a file on the machine running capstan (file://host/… is not). */
const LOCAL_FILE_URL = /^file:\/\/\/\S+$/;

/** The sum a binary must have: the pinned one, or the one published at sha256Url. */
async function wantedSha256(p: BinaryParams): Promise<string> {
  return p.sha256 !== undefined ? p.sha256.toLowerCase() : publishedSha256(p.sha256Url!);
}

/** `[ -f dest ]` then its sha256, as one read-only probe; exit 44 when there is no such file. */
const sumProbe = (dest: string) => sh`if [ -f ${dest} ]; then sha256sum -- ${dest}; else exit 44; fi`;

/**
 * Ensures a binary from a URL is installed at `dest` with the given SHA-256 and mode (the seed's
 * `wget … && chmod +x … && sudo mv … /usr/local/bin/`). The SHA-256 is pinned (`sha256`) or the one
 * published beside the file (`sha256Url`, fetched once per run). Check compares the host's
 * `sha256sum` and mode and downloads nothing but a published checksum. Apply downloads on the machine running capstan, once per process for
 * all hosts (and kept in {@link downloadCacheDir} for later runs), verifies the checksum (a mismatch
 * fails, naming url, expected and actual sums, and nothing is uploaded), then writes the file
 * atomically on the host with its mode.
 *
 * @example
 * ensureBinary({
 *   url: 'https://dl.k8s.io/v1.34.1/bin/linux/amd64/kube-apiserver',
 *   sha256: '…64 hex digits…',
 *   dest: '/usr/local/bin/kube-apiserver',
 * })
 */
export function ensureBinary(params: PerHostParams<BinaryParams>, options?: TaskOptions): Task<void> {
  return defineTask<BinaryParams>(
    {
      kind: 'binary',
      id: (p) => `binary:${p.dest}`,
      title: (p) => `binary ${p.dest}`,
      desired: (p) => ({ sha256: p.sha256?.toLowerCase() ?? p.sha256Url, mode: normaliseMode('mode', p.mode ?? '0755') }),
      claims: (p) => [{ id: `file:${p.dest}`, desired: { sha256: p.sha256?.toLowerCase() ?? p.sha256Url, mode: normaliseMode('mode', p.mode ?? '0755') } }],
      validate: (p) => {
        let url: URL;
        try {
          url = new URL(p.url);
        } catch {
          throw new Error(`url is not a URL: ${JSON.stringify(p.url)}`);
        }
        if (!['http:', 'https:'].includes(url.protocol) && !LOCAL_FILE_URL.test(p.url)) throw new Error(`url must be https://, http:// (with a pinned sha256) or file:/// (on this machine), got ${p.url}`);
        if ((p.sha256 === undefined) === (p.sha256Url === undefined)) throw new Error('give exactly one of sha256 (the pinned sum) and sha256Url (where the sum is published)');
        if (p.sha256 !== undefined && (typeof p.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(p.sha256))) throw new Error(`sha256 must be 64 hex digits, got ${JSON.stringify(p.sha256)}`);
        // Over plain http, whoever can change the file can change a sum fetched beside it too: only a pin checks it.
        if (url.protocol === 'http:' && p.sha256 === undefined) throw new Error(`url ${p.url} is plain http: pin its sha256 (a checksum fetched beside an http download is no check), or use https://`);
        if (p.sha256Url !== undefined && !(/^https:\/\/\S+$/.test(p.sha256Url) || LOCAL_FILE_URL.test(p.sha256Url))) {
          throw new Error(`sha256Url must be https:// (or file:/// on this machine): a checksum fetched over plain http is no check; got ${JSON.stringify(p.sha256Url)}`);
        }
        requireAbsolutePath('dest', p.dest);
        normaliseMode('mode', p.mode);
      },
      probes: (p) => [{ kind: 'stat', path: p.dest }, { kind: 'exec', command: sumProbe(p.dest) }],
      async check(ctx, p) {
        const want = await wantedSha256(p);
        const mode = normaliseMode('mode', p.mode ?? '0755')!;
        const stat = await ctx.stat(p.dest);
        if (!stat) return [{ subject: 'sha256', current: null, desired: `${want} from ${p.url}` }];
        if (stat.type !== 'file') throw new Error(`${p.dest} exists and is not a regular file (${stat.type}); not replacing it`);
        const result = await ctx.probe(sumProbe(p.dest));
        if (result.code !== 0) throw new Error(`cannot checksum ${p.dest}: ${result.stderr.trim() || `exit ${result.code}`}`);
        const current = result.stdout.trim().split(/\s+/)[0] ?? '';
        const drift: Drift[] = [];
        if (current !== want) drift.push({ subject: 'sha256', current, desired: `${want} from ${p.url}` });
        if (stat.mode !== mode) drift.push({ subject: 'mode', current: stat.mode, desired: mode });
        return drift;
      },
      async apply(ctx, p, drift) {
        const mode = normaliseMode('mode', p.mode ?? '0755')!;
        if (drift.some((d) => d.subject === 'sha256')) {
          const bytes = await downloadVerified(p.url, await wantedSha256(p));
          ctx.log(`${p.url}: ${bytes.length} bytes, sha256 verified`);
          await ctx.writeFile(p.dest, bytes, { mode });
        } else {
          await ctx.run(sh`chmod ${mode} -- ${p.dest}`);
        }
      },
    },
    params,
    options,
  );
}
