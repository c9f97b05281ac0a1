import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadCacheDir, ensureBinary, forgetDownloads } from '../../tasks/binary.js';
import { describeDrift } from '../../runner/drift.js';
import { localHost, run } from '../helpers/local.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('ensureBinary (local HTTP server, local hosts)', function () {
  this.timeout(30_000);
  let server: Server;
  let base: string;
  /** Requests per path: the proof of "downloaded once". */
  const requests = new Map<string, number>();
  const served = new Map<string, Buffer>();
  let cache: string;
  let savedCache: string | undefined;
  let local: ReturnType<typeof localHost>;

  /** A new file on the server, different in every test (so no test gets another's download). */
  const publish = (name: string, size = 100_000): { url: string; bytes: Buffer; sum: string } => {
    const bytes = Buffer.concat([Buffer.from(`#!/bin/sh\necho ${name}\nexit 0\n`), Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + name.length) % 256))]);
    served.set(`/${name}`, bytes);
    return { url: `${base}/${name}`, bytes, sum: sha256(bytes) };
  };

  before(async () => {
    server = createServer((req, res) => {
      requests.set(req.url ?? '', (requests.get(req.url ?? '') ?? 0) + 1);
      const body = served.get(req.url ?? '');
      if (!body) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    cache = mkdtempSync(join(tmpdir(), 'capstan-cache-'));
    savedCache = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = cache;
  });
  after(async () => {
    if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedCache;
    rmSync(cache, { recursive: true, force: true });
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  it('check mode reports the missing binary and downloads nothing', async () => {
    const file = publish('check-only');
    const dest = join(local.dir, 'kube-apiserver');
    const outcome = await run(local, ensureBinary({ url: file.url, sha256: file.sum, dest }), true);
    expect(outcome.status).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([`sha256: absent → ${file.sum} from ${file.url}`]);
    expect(requests.get('/check-only') ?? 0).to.equal(0);
    expect(existsSync(dest)).to.equal(false);
  });

  it('downloads, verifies and installs with the mode; then unchanged; fixes a mode without downloading', async () => {
    const file = publish('kubectl');
    const dest = join(local.dir, 'kubectl');
    const task = ensureBinary({ url: file.url, sha256: file.sum, dest });
    const first = await run(local, task);
    expect(first.status, first.message).to.equal('changed');
    expect(readFileSync(dest).equals(file.bytes)).to.equal(true);
    expect(statSync(dest).mode & 0o777).to.equal(0o755);
    expect(readFileSync(join(cache, 'capstan', 'downloads', file.sum)).equals(file.bytes)).to.equal(true);
    expect(downloadCacheDir()).to.equal(join(cache, 'capstan', 'downloads'));
    const second = await run(local, task);
    expect(second.status).to.equal('ok');
    expect(second.drift).to.deep.equal([]);

    chmodSync(dest, 0o644);
    const mode = await run(local, task);
    expect(mode.drift.map(describeDrift)).to.deep.equal(['mode: 0644 → 0755']);
    expect(statSync(dest).mode & 0o777).to.equal(0o755);
    expect(requests.get('/kubectl')).to.equal(1);
  });

  it('replaces a binary with another checksum, honouring a given mode', async () => {
    const file = publish('kube-scheduler');
    const dest = join(local.dir, 'kube-scheduler');
    writeFileSync(dest, 'old version\n', { mode: 0o755 });
    const task = ensureBinary({ url: file.url, sha256: file.sum.toUpperCase(), dest, mode: '0750' });
    const outcome = await run(local, task);
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([`sha256: ${sha256(Buffer.from('old version\n'))} → ${file.sum} from ${file.url}`, 'mode: 0755 → 0750']);
    expect(readFileSync(dest).equals(file.bytes)).to.equal(true);
    expect(statSync(dest).mode & 0o777).to.equal(0o750);
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('downloads once for several hosts, and a later process uses the disk cache', async () => {
    const file = publish('kube-controller-manager', 2_000_000);
    const hosts = [localHost(), localHost(), localHost()];
    try {
      const outcomes = await Promise.all(hosts.map((host) => run(host, ensureBinary({ url: file.url, sha256: file.sum, dest: join(host.dir, 'kube-controller-manager') }))));
      expect(outcomes.map((o) => o.status)).to.deep.equal(['changed', 'changed', 'changed']);
      for (const host of hosts) expect(readFileSync(join(host.dir, 'kube-controller-manager')).equals(file.bytes)).to.equal(true);
      expect(requests.get('/kube-controller-manager')).to.equal(1);
      forgetDownloads(); // as a new capstan process would start
      const again = await run(local, ensureBinary({ url: file.url, sha256: file.sum, dest: join(local.dir, 'kcm') }));
      expect(again.status).to.equal('changed');
      expect(readFileSync(join(local.dir, 'kcm')).equals(file.bytes)).to.equal(true);
      expect(requests.get('/kube-controller-manager')).to.equal(1);
    } finally {
      for (const host of hosts) host.cleanup();
    }
  });

  it('a checksum mismatch fails naming url, expected and actual sums, and installs and caches nothing', async () => {
    const file = publish('tampered');
    const wrong = sha256(Buffer.from('what the release notes said'));
    const dest = join(local.dir, 'tampered');
    const outcome = await run(local, ensureBinary({ url: file.url, sha256: wrong, dest }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`checksum mismatch for ${file.url}: expected sha256 ${wrong}, got ${file.sum} (${file.bytes.length} bytes); nothing was installed`);
    expect(existsSync(dest)).to.equal(false);
    expect(existsSync(join(cache, 'capstan', 'downloads', wrong))).to.equal(false);
    expect(existsSync(join(cache, 'capstan', 'downloads', file.sum))).to.equal(false);
  });

  it('without a pinned sum, uses the one published at a file:/// sha256Url (read once per run, in check mode too); a checksum file that is not one fails the check', async () => {
    const file = publish('kube-proxy');
    const binary = join(local.dir, 'kube-proxy');
    writeFileSync(binary, file.bytes);
    writeFileSync(`${binary}.sha256`, `${file.sum}  kube-proxy\n`);
    const url = `file://${binary}`;
    const dests = [join(local.dir, 'a'), join(local.dir, 'b')];
    const tasks = dests.map((dest) => ensureBinary({ url, sha256Url: `${url}.sha256`, dest }));
    const checked = await run(local, tasks[0]!, true);
    expect(checked.drift.map(describeDrift)).to.deep.equal([`sha256: absent → ${file.sum} from ${url}`]);
    // Read once: the published sum is remembered for the run, whatever the file says later.
    writeFileSync(`${binary}.sha256`, 'not a sum\n');
    for (const task of tasks) expect((await run(local, task)).status).to.equal('changed');
    for (const dest of dests) expect(readFileSync(dest).equals(file.bytes)).to.equal(true);
    expect((await run(local, tasks[0]!)).status).to.equal('ok');
    expect(existsSync(join(cache, 'capstan', 'downloads', file.sum)), 'a local file is not copied into the cache').to.equal(false);

    const bad = join(local.dir, 'kube-proxy-bad');
    writeFileSync(bad, 'x');
    writeFileSync(`${bad}.sha256`, '<html>not found</html>');
    const outcome = await run(local, ensureBinary({ url: `file://${bad}`, sha256Url: `file://${bad}.sha256`, dest: join(local.dir, 'c') }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`check failed: file://${bad}.sha256 is not a SHA-256 checksum file (it starts with "<html>not found</html>")`);
    expect(() => ensureBinary({ url, dest: '/usr/local/bin/y' })).to.throw(/give exactly one of sha256 .* and sha256Url/);
    expect(() => ensureBinary({ url, sha256: file.sum, sha256Url: `${url}.sha256`, dest: '/usr/local/bin/y' })).to.throw(/give exactly one of sha256/);
  });

  it('a file:/// url with a pinned sum that differs fails naming both sums and installs nothing', async () => {
    const path = join(local.dir, 'local-binary');
    writeFileSync(path, 'local bytes\n');
    const wrong = 'b'.repeat(64);
    const outcome = await run(local, ensureBinary({ url: `file://${path}`, sha256: wrong, dest: join(local.dir, 'installed') }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`checksum mismatch for file://${path}: expected sha256 ${wrong}, got ${sha256(Buffer.from('local bytes\n'))} (12 bytes); nothing was installed`);
    expect(existsSync(join(local.dir, 'installed'))).to.equal(false);
  });

  it('refuses plain http without a pinned sum: an http url with sha256Url, or a sha256Url over http (issue 19)', () => {
    const http = `${base}/kube-proxy`;
    expect(() => ensureBinary({ url: http, sha256Url: 'https://dl.k8s.io/x.sha256', dest: '/usr/local/bin/y' })).to.throw(
      `url ${http} is plain http: pin its sha256 (a checksum fetched beside an http download is no check), or use https://`,
    );
    expect(() => ensureBinary({ url: 'https://dl.k8s.io/x', sha256Url: 'http://dl.k8s.io/x.sha256', dest: '/usr/local/bin/y' })).to.throw(
      'sha256Url must be https:// (or file:/// on this machine): a checksum fetched over plain http is no check; got "http://dl.k8s.io/x.sha256"',
    );
    expect(() => ensureBinary({ url: 'file:///srv/x', sha256Url: 'file://mirror/x.sha256', dest: '/usr/local/bin/y' })).to.throw(/sha256Url must be https:\/\//);
    // Accepted: http with a pin, https with a published sum, file:/// either way.
    expect(() => ensureBinary({ url: http, sha256: 'a'.repeat(64), dest: '/usr/local/bin/y' })).not.to.throw();
    expect(() => ensureBinary({ url: 'https://dl.k8s.io/x', sha256Url: 'https://dl.k8s.io/x.sha256', dest: '/usr/local/bin/y' })).not.to.throw();
    expect(() => ensureBinary({ url: 'file:///srv/x', sha256Url: 'file:///srv/x.sha256', dest: '/usr/local/bin/y' })).not.to.throw();
  });

  it('an HTTP error fails with the status', async () => {
    const url = `${base}/missing`;
    const outcome = await run(local, ensureBinary({ url, sha256: 'a'.repeat(64), dest: join(local.dir, 'missing') }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`cannot download ${url}: HTTP 404 Not Found`);
  });

  it('rejects bad parameters when the task is made', () => {
    expect(() => ensureBinary({ url: 'ftp://x/y', sha256: 'a'.repeat(64), dest: '/usr/local/bin/y' })).to.throw(/url must be https:\/\/, http:\/\/ \(with a pinned sha256\) or file:\/\/\//);
    expect(() => ensureBinary({ url: 'file://mirror/y', sha256: 'a'.repeat(64), dest: '/usr/local/bin/y' })).to.throw(/url must be https:\/\//);
    expect(() => ensureBinary({ url: 'https://x/y', sha256: 'abc', dest: '/usr/local/bin/y' })).to.throw(/sha256 must be 64 hex digits/);
    expect(() => ensureBinary({ url: 'https://x/y', sha256: 'a'.repeat(64), dest: 'y' })).to.throw(/dest must be an absolute path/);
    expect(() => ensureBinary({ url: 'https://x/y', sha256: 'a'.repeat(64), dest: '/y', mode: 'rwx' })).to.throw(/mode must be an octal string/);
  });
});
