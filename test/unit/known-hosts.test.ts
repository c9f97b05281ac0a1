import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InputError, TransportError } from '../../runner/errors.js';
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  formatKnownHostsLine,
  hashHostName,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  readKnownHosts,
  recordHostKey,
  verifyHostKey,
  whyCannotKeep,
} from '../../runner/transport/known-hosts.js';

const run = promisify(execFile);
const haveSshKeygen = existsSync('/usr/bin/ssh-keygen');
/** The uid and gid of Debian's `nobody`, an ordinary user for checks that root's privileges would skip. */
const NOBODY = 65534;

/** A syntactically valid key blob of a given type: SSH string type + opaque bytes (enough for matching). */
function fakeKey(type: string, seed: number): Buffer {
  const name = Buffer.from(type);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(name.length);
  return Buffer.concat([length, name, Buffer.alloc(32, seed)]);
}

const ED_A = fakeKey('ssh-ed25519', 1);
const ED_B = fakeKey('ssh-ed25519', 2);
const RSA_A = fakeKey('ssh-rsa', 3);
const b64 = (key: Buffer): string => key.toString('base64');

describe('known_hosts', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capstan-kh-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('readKnownHosts', () => {
    it('parses a file once while it is unchanged, and again after a key is appended or the file replaced', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, `web1 ssh-ed25519 ${b64(ED_A)}\n`);
      const first = await readKnownHosts([file]);
      const again = await readKnownHosts([file]);
      expect(again[0]).to.equal(first[0]); // the same parsed entry: not parsed twice
      await appendKnownHost(file, 'web2', ED_B);
      expect((await readKnownHosts([file])).map((e) => [e.hosts, e.line])).to.deep.equal([['web1', 1], ['web2', 2]]);
      await writeFile(`${file}.new`, `web3 ssh-rsa ${b64(RSA_A)}\n`);
      await rm(file);
      await writeFile(file, await readFile(`${file}.new`));
      expect((await readKnownHosts([file])).map((e) => [e.hosts, e.keyType])).to.deep.equal([['web3', 'ssh-rsa']]);
      await rm(file);
      expect(await readKnownHosts([file])).to.deep.equal([]); // gone: empty, as OpenSSH treats it
    });
  });

  describe('knownHostsName', () => {
    it('uses the bare lowercased host on port 22 and [host]:port otherwise', () => {
      expect(knownHostsName('Web1.Example.COM', 22)).to.equal('web1.example.com');
      expect(knownHostsName('127.0.0.1', 2222)).to.equal('[127.0.0.1]:2222');
    });
  });

  describe('fingerprint', () => {
    for (const type of ['ed25519', 'ecdsa', 'rsa'] as const) {
      it(`matches ssh-keygen -lf for an ${type} key`, async function () {
        if (!haveSshKeygen) this.skip();
        const path = join(dir, `key_${type}`);
        await run('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', path]);
        const [, base64] = (await readFile(`${path}.pub`, 'utf8')).split(' ');
        const { stdout } = await run('ssh-keygen', ['-lf', `${path}.pub`]);
        const expected = stdout.split(' ')[1];
        expect(expected).to.match(/^SHA256:[A-Za-z0-9+/]{43}$/);
        expect(fingerprint(Buffer.from(base64 ?? '', 'base64'))).to.equal(expected);
      });
    }
  });

  describe('parseKnownHosts', () => {
    it('reads plain, comma-list, [host]:port, hashed and marked lines and skips the rest', () => {
      const text = [
        '# comment',
        '',
        `web1,10.0.0.5 ssh-ed25519 ${b64(ED_A)} root@web1`,
        `[db.example.com]:2222 ssh-rsa ${b64(RSA_A)}`,
        `${hashHostName('hashed.example.com')} ssh-ed25519 ${b64(ED_B)}`,
        `@revoked * ssh-ed25519 ${b64(ED_B)}`,
        `@cert-authority *.example.com ssh-ed25519 ${b64(ED_A)}`,
        `@bogus web1 ssh-ed25519 ${b64(ED_A)}`,
        `web2 ssh-rsa ${b64(ED_A)}`,
        'web3 ssh-ed25519 !!!notbase64',
        'web4 ssh-ed25519',
      ].join('\n');
      const entries = parseKnownHosts(text, '/kh');
      expect(entries.map((e) => [e.line, e.marker ?? '', e.hosts.startsWith('|1|') ? 'hashed' : e.hosts, e.keyType])).to.deep.equal([
        [3, '', 'web1,10.0.0.5', 'ssh-ed25519'],
        [4, '', '[db.example.com]:2222', 'ssh-rsa'],
        [5, '', 'hashed', 'ssh-ed25519'],
        [6, 'revoked', '*', 'ssh-ed25519'],
        [7, 'cert-authority', '*.example.com', 'ssh-ed25519'],
      ]);
      expect(entries[0]?.key.equals(ED_A)).to.equal(true);
      expect(entries[0]?.file).to.equal('/kh');
    });

    it('reads the key type from the blob', () => {
      expect(keyTypeOf(RSA_A)).to.equal('ssh-rsa');
      expect(keyTypeOf(Buffer.from([0, 0, 0, 9, 1]))).to.equal(undefined);
    });
  });

  describe('hostMatches', () => {
    it('matches comma lists, wildcards and negations case-insensitively', () => {
      expect(hostMatches('web1,10.0.0.5', '10.0.0.5')).to.equal(true);
      expect(hostMatches('WEB1', 'web1')).to.equal(true);
      expect(hostMatches('*.example.com', 'a.example.com')).to.equal(true);
      expect(hostMatches('*.example.com', 'example.com')).to.equal(false);
      expect(hostMatches('web?', 'web7')).to.equal(true);
      expect(hostMatches('web?', 'web17')).to.equal(false);
      expect(hostMatches('*.example.com,!bad.example.com', 'bad.example.com')).to.equal(false);
      expect(hostMatches('a.b', 'aXb')).to.equal(false);
    });

    it('keeps ports apart: a bare entry is port 22 only', () => {
      expect(hostMatches('127.0.0.1', knownHostsName('127.0.0.1', 2222))).to.equal(false);
      expect(hostMatches('[127.0.0.1]:2222', knownHostsName('127.0.0.1', 2222))).to.equal(true);
      expect(hostMatches('[127.0.0.1]:2222', knownHostsName('127.0.0.1', 22))).to.equal(false);
    });

    it('matches hashed entries by HMAC-SHA1 of the name', () => {
      const salt = Buffer.alloc(20, 7);
      const hashed = hashHostName('web1', salt);
      expect(hashed).to.match(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}=$/);
      expect(hashed.split('|')[2]).to.equal(salt.toString('base64'));
      expect(hostMatches(hashed, 'web1')).to.equal(true);
      expect(hostMatches(hashed, 'web2')).to.equal(false);
      expect(hostMatches(hashHostName('[web1]:2222'), '[web1]:2222')).to.equal(true);
    });

    it('produces the same hash as ssh-keygen -H for the same salt', async function () {
      if (!haveSshKeygen) this.skip();
      const file = join(dir, 'known_hosts');
      await writeFile(file, `example.com,10.0.0.1 ssh-ed25519 ${b64(ED_A)}\n[h]:2222 ssh-ed25519 ${b64(ED_A)}\n`);
      await run('ssh-keygen', ['-H', '-f', file]);
      const lines = (await readFile(file, 'utf8')).trim().split('\n');
      // ssh-keygen splits a comma list into one hashed line per name.
      const names = ['example.com', '10.0.0.1', '[h]:2222'];
      expect(lines).to.have.length(3);
      lines.forEach((line, index) => {
        const field = line.split(' ')[0] ?? '';
        const salt = Buffer.from(field.split('|')[2] ?? '', 'base64');
        expect(hashHostName(names[index]!, salt)).to.equal(field);
        expect(hostMatches(field, names[index]!)).to.equal(true);
        expect(hostMatches(field, 'other.example.com')).to.equal(false);
      });
    });
  });

  describe('checkHostKey', () => {
    const entries = parseKnownHosts(
      [
        `web1 ssh-ed25519 ${b64(ED_A)}`,
        `web1 ssh-rsa ${b64(RSA_A)}`,
        `rsaonly ssh-rsa ${b64(RSA_A)}`,
        `@cert-authority * ssh-ed25519 ${b64(ED_B)}`,
        `@revoked * ssh-rsa ${b64(fakeKey('ssh-rsa', 9))}`,
        `${hashHostName('[hashed]:2222')} ssh-ed25519 ${b64(ED_A)}`,
      ].join('\n'),
      '/kh',
    );

    it('knows a host by any of its key types', () => {
      expect(checkHostKey(entries, 'web1', ED_A).status).to.equal('known');
      expect(checkHostKey(entries, 'web1', RSA_A).status).to.equal('known');
      expect(checkHostKey(entries, '[hashed]:2222', ED_A).status).to.equal('known');
    });

    it('treats a host known only under other key types as changed, not unknown', () => {
      const verdict = checkHostKey(entries, 'rsaonly', ED_A);
      expect(verdict.status).to.equal('changed');
      expect(verdict.status === 'changed' && verdict.entries.map((e) => [e.line, e.keyType])).to.deep.equal([[3, 'ssh-rsa']]);
      expect(checkHostKey(entries, 'nobody', ED_A).status).to.equal('unknown');
    });

    it('reports a different key of the same type as changed, with its line', () => {
      const verdict = checkHostKey(entries, 'web1', ED_B);
      expect(verdict.status).to.equal('changed');
      expect(verdict.status === 'changed' && verdict.entry.line).to.equal(1);
    });

    it('refuses revoked keys and ignores @cert-authority lines', () => {
      expect(checkHostKey(entries, 'anything', fakeKey('ssh-rsa', 9)).status).to.equal('revoked');
      expect(checkHostKey(entries, 'other', ED_B).status).to.equal('unknown');
    });
  });

  describe('verifyHostKey', () => {
    const check = (files: string[], acceptNew = false) => ({ name: 'web1', host: '127.0.0.1', port: 2222, files, acceptNew });

    it('refuses an unknown key with the fingerprint and the files it looked in', async () => {
      const files = [join(dir, 'a'), join(dir, 'b')];
      const error = await verifyHostKey(check(files), ED_A).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(
        `host web1 ([127.0.0.1]:2222): host key ssh-ed25519 ${fingerprint(ED_A)} is not in known_hosts (${files.join(', ')}); verify it and add it, or run with --accept-new-host-keys`,
      );
      expect((error as TransportError).host).to.equal('web1');
    });

    it('with acceptNew answers new and writes nothing: the key is recorded only by recordHostKey', async () => {
      const file = join(dir, 'ssh', 'known_hosts');
      expect(await verifyHostKey(check([file, join(dir, 'other')], true), ED_A)).to.equal('new');
      expect(existsSync(file)).to.equal(false);
      await recordHostKey(check([file, join(dir, 'other')], true), ED_A);
      expect(await readFile(file, 'utf8')).to.equal(`[127.0.0.1]:2222 ssh-ed25519 ${b64(ED_A)}\n`);
      expect((await stat(file)).mode & 0o777).to.equal(0o600);
      expect((await stat(join(dir, 'ssh'))).mode & 0o777).to.equal(0o700);
      expect(await verifyHostKey(check([file]), ED_A)).to.equal('known');
      // Recorded meanwhile (another connection to the same host): not written twice.
      await recordHostKey(check([file], true), ED_A);
      expect((await readFile(file, 'utf8')).split('\n')).to.have.length(2);
    });

    it('refuses a host known only under another key type even with acceptNew, naming the known keys and file:line', async () => {
      const file = join(dir, 'known_hosts');
      const text = `# managed\n[127.0.0.1]:2222 ssh-rsa ${b64(RSA_A)}\nother ssh-ed25519 ${b64(ED_B)}\n`;
      await writeFile(file, text);
      const error = await verifyHostKey(check([file], true), ED_A).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(
        `REMOTE HOST IDENTIFICATION HAS CHANGED for web1 ([127.0.0.1]:2222): the host offered ssh-ed25519 ${fingerprint(ED_A)}, another key type than known_hosts has for it (ssh-rsa ${fingerprint(RSA_A)} at ${file}:2); refusing to connect`,
      );
      expect(await readFile(file, 'utf8')).to.equal(text);
    });

    it('with acceptNew refuses a first known_hosts file that cannot keep the key (/dev/null)', async () => {
      const error = await verifyHostKey(check(['/dev/null'], true), ED_A).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(InputError);
      expect((error as Error).message).to.equal('host web1: accept-new cannot record host keys in /dev/null: it is /dev/null, which keeps nothing');
    });

    it('refuses a changed key even with acceptNew, and leaves the file alone', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, `# managed\n[127.0.0.1]:2222 ssh-ed25519 ${b64(ED_A)}\n`);
      const error = await verifyHostKey(check([file], true), ED_B).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(
        `REMOTE HOST IDENTIFICATION HAS CHANGED for web1 ([127.0.0.1]:2222): known_hosts ${file}:2 has ${fingerprint(ED_A)}, the host offered ${fingerprint(ED_B)}`,
      );
      expect(await readFile(file, 'utf8')).to.equal(`# managed\n[127.0.0.1]:2222 ssh-ed25519 ${b64(ED_A)}\n`);
    });

    it('refuses a revoked key even with acceptNew', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, `@revoked * ssh-ed25519 ${b64(ED_A)}\n`);
      const error = await verifyHostKey(check([file], true), ED_A).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.contain(`is marked @revoked in ${file}:1`);
    });

    it('reports an unreadable known_hosts file as InputError naming it', async () => {
      const file = join(dir, 'is-a-directory');
      await mkdir(file);
      const error = await verifyHostKey(check([file]), ED_A).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(InputError);
      expect((error as Error).message).to.contain(file);
    });
  });

  describe('whyCannotKeep', () => {
    it('accepts a writable file, or a missing one whose directories can be created', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, '');
      expect(whyCannotKeep(file)).to.equal(undefined);
      expect(whyCannotKeep(join(dir, 'a', 'b', 'known_hosts'))).to.equal(undefined);
    });

    it('names why /dev/null, devices, directories and paths through a file cannot keep a key', async () => {
      const plain = join(dir, 'plain');
      await writeFile(plain, '');
      expect(whyCannotKeep('/dev/null')).to.equal('it is /dev/null, which keeps nothing');
      expect(whyCannotKeep('/dev/zero')).to.equal('it is not a regular file (a character device)');
      expect(whyCannotKeep(dir)).to.equal('it is not a regular file (a directory)');
      expect(whyCannotKeep(join(plain, 'known_hosts'))).to.equal('a directory on its path is a file');
      expect(whyCannotKeep(undefined)).to.equal('no known_hosts file is configured');
    });

    it('refuses a file or directory the user may not write', async () => {
      const locked = join(dir, 'locked');
      await mkdir(locked, { mode: 0o500 });
      const expected = `it does not exist and cannot be created in ${locked} (EACCES)`;
      if (process.getuid?.() !== 0) {
        expect(whyCannotKeep(join(locked, 'sub', 'known_hosts'))).to.equal(expected);
        return;
      }
      // Root writes regardless of mode bits: ask as an ordinary user (nobody) who owns the 0500 directory.
      await chmod(dir, 0o755);
      await chown(locked, NOBODY, NOBODY);
      const module = new URL('../../runner/transport/known-hosts.ts', import.meta.url).href;
      const code = `const m = await import(${JSON.stringify(module)}); process.stdout.write(String(m.whyCannotKeep(${JSON.stringify(join(locked, 'sub', 'known_hosts'))})));`;
      const { stdout } = await run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, '--import', 'tsx', '--input-type=module', '-e', code]);
      expect(stdout).to.equal(expected);
    });
  });

  describe('appendKnownHost', () => {
    it('writes the bare host on port 22 and adds a missing final newline first', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, `web0 ssh-rsa ${b64(RSA_A)}`);
      await appendKnownHost(file, knownHostsName('Web1', 22), ED_A);
      expect(await readFile(file, 'utf8')).to.equal(`web0 ssh-rsa ${b64(RSA_A)}\nweb1 ssh-ed25519 ${b64(ED_A)}\n`);
      expect(formatKnownHostsLine('[h]:2', ED_A)).to.equal(`[h]:2 ssh-ed25519 ${b64(ED_A)}\n`);
    });

    it('writes lines that ssh-keygen -F finds', async function () {
      if (!haveSshKeygen) this.skip();
      const keyPath = join(dir, 'host_key');
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyPath]);
      const key = Buffer.from((await readFile(`${keyPath}.pub`, 'utf8')).split(' ')[1] ?? '', 'base64');
      const file = join(dir, 'known_hosts');
      await appendKnownHost(file, knownHostsName('127.0.0.1', 2222), key);
      const { stdout } = await run('ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', file]);
      expect(stdout).to.contain('found: line 1');
    });
  });

  describe('knownKeyTypes', () => {
    it('lists the key types recorded for a host, without duplicates', async () => {
      const file = join(dir, 'known_hosts');
      await writeFile(file, `web1 ssh-rsa ${b64(RSA_A)}\nweb1,web2 ssh-ed25519 ${b64(ED_A)}\nweb1 ssh-rsa ${b64(RSA_A)}\n`);
      expect(await knownKeyTypes({ name: 'web1', host: 'web1', port: 22, files: [file, join(dir, 'missing')] })).to.deep.equal([
        'ssh-rsa',
        'ssh-ed25519',
      ]);
    });
  });
});
