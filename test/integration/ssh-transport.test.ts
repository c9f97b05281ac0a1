import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { CommandError, CommandTimeoutError, InputError, TransportError } from '../../runner/errors.js';
import { Host } from '../../runner/host.js';
import { sh } from '../../runner/quote.js';
import { Secret } from '../../runner/secret.js';
import { fingerprint } from '../../runner/transport/known-hosts.js';
import { SshTransport, stopRemoteCommands } from '../../runner/transport/ssh.js';
import type { SshTarget } from '../../runner/transport/types.js';
import { skipOutsideCi } from '../helpers/skip.js';
import { generateKey, SshAgent, Sshd, SSHD_PATH, sshdAvailable } from '../helpers/sshd.js';

/** Polls `probe` every 50 ms until it is true; throws after 30 s. */
async function until(probe: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 30_000; !(await probe()); ) {
    if (Date.now() > deadline) throw new Error('condition not met within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Settles a promise into a value or the error, so tests can assert on rejections. */
async function outcome<T>(promise: Promise<T>): Promise<T | Error> {
  return promise.catch((error: unknown) => error as Error);
}

describe('SshTransport against a loopback sshd', function () {
  this.timeout(120_000); // key generation and agents are slow on a loaded 2-core machine
  let sshd: Sshd;
  let scratch: string;
  let knownHosts: string;
  const open: SshTransport[] = [];

  /** A target for the test sshd whose known_hosts already vouches for it (unless told otherwise). */
  function target(overrides: Partial<SshTarget> = {}): SshTarget {
    return {
      name: 'web1',
      host: sshd.host,
      port: sshd.port,
      user: sshd.user,
      identityFiles: [sshd.clientKeyPath],
      knownHostsFiles: [knownHosts],
      acceptNewHostKeys: false,
      connectTimeoutMs: 5000,
      connectRetries: 0,
      keepaliveIntervalMs: 5000,
      maxChannels: 8,
      ...overrides,
    };
  }

  function transport(overrides: Partial<SshTarget> = {}): SshTransport {
    const created = new SshTransport(target(overrides));
    open.push(created);
    return created;
  }

  before(async function () {
    if (!sshdAvailable()) skipOutsideCi(this, `no OpenSSH server at ${SSHD_PATH}`);
    sshd = await Sshd.start();
    scratch = await mkdtemp(join(tmpdir(), 'capstan-ssh-test-'));
    knownHosts = join(scratch, 'known_hosts');
    // Trust the test host once, through the transport itself, so most tests start from a known key.
    const first = new SshTransport(target({ acceptNewHostKeys: true }));
    await first.connect();
    await first.close();
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((each) => each.close()));
  });

  after(async () => {
    await sshd?.remove();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  describe('exec', () => {
    it('returns stdout, stderr and the exit code; a non-zero exit is a result', async () => {
      const result = await transport().exec(sh`printf 'out\n'; printf 'err\n' >&2; exit 3`);
      expect(result.stdout.toString()).to.equal('out\n');
      expect(result.stderr.toString()).to.equal('err\n');
      expect(result.code).to.equal(3);
      expect(result.signal).to.equal(undefined);
      expect((await transport().exec(sh`true`)).code).to.equal(0);
    });

    it('reports a command killed by a signal with a null code', async () => {
      const result = await transport().exec(sh`kill -TERM $$`);
      expect(result.code).to.equal(null);
      expect(result.signal).to.equal('SIGTERM');
    });

    it('round-trips binary stdin byte for byte', async () => {
      const ssh = transport();
      const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(1 << 20)]);
      const result = await ssh.exec(sh`cat`, { stdin: bytes });
      expect(result.code).to.equal(0);
      expect(result.stdout.equals(bytes)).to.equal(true);
      expect((await ssh.exec(sh`wc -c`, { stdin: 'héllo' })).stdout.toString().trim()).to.equal('6');
    });

    it('ends stdin when none is given, so readers do not hang', async () => {
      const result = await transport().exec(sh`cat`, { timeoutMs: 5000 });
      expect(result.stdout.length).to.equal(0);
    });

    it('runs 20 concurrent execs over exactly one TCP connection, within the channel limit', async () => {
      const before = await sshd.connectionCount();
      const logBefore = (await sshd.log()).length;
      const ssh = transport({ maxChannels: 8 });
      // Several callers connecting at once share one attempt.
      await Promise.all([ssh.connect(), ssh.connect(), ssh.connect()]);
      // Each command holds its session a while, so without the limit sshd (MaxSessions 10) would refuse some.
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => ssh.exec(sh`sleep 0.2; echo ${i}`)));
      expect(results.map((r) => r.stdout.toString().trim())).to.deep.equal(Array.from({ length: 20 }, (_, i) => String(i)));
      expect(results.every((r) => r.code === 0)).to.equal(true);
      expect((await sshd.connectionCount()) - before).to.equal(1);
      // sshd logs each session's start and close: replaying them gives the most that were open at once.
      let active = 0;
      let peak = 0;
      for (const line of (await sshd.log()).slice(logBefore).split('\n')) {
        if (line.startsWith('Starting session:')) peak = Math.max(peak, ++active);
        if (line.startsWith('Close session:')) active--;
      }
      expect(peak).to.be.within(2, 8);
      // What the transport counted is what sshd saw: one connection, a session per command.
      const sessionsSeen = (await sshd.log()).slice(logBefore).split('\n').filter((line) => line.startsWith('Starting session:')).length;
      expect([sessionsSeen, ssh.usage]).to.deep.equal([20, { connections: 1, sessions: 20, commands: 20 }]);
    });

    it('times out a long command quickly and keeps the connection usable', async () => {
      const ssh = transport();
      // Had the call waited for the command, it would have resolved with "finished": rejecting proves the timeout.
      const error = await outcome(ssh.exec(sh`sleep 30; echo finished`, { timeoutMs: 500 }));
      expect(error).to.be.instanceOf(CommandTimeoutError); // a hung command fails the task; the connection is fine
      expect((error as Error).message).to.equal('host web1: command timed out after 0.5s: sleep 30; echo finished');
      expect((await ssh.exec(sh`echo still here`)).stdout.toString()).to.equal('still here\n');
    });

    it('holds a timed-out command\'s channel until sshd closes its session, and times out queued calls', async () => {
      const ssh = transport({ maxChannels: 1 });
      // Ignoring TERM makes the session outlive the timeout whether or not sshd delivers the signal (it does not for root).
      const seconds = `3.${randomBytes(4).readUInt32BE()}`;
      const stuck = await outcome(ssh.exec(sh`trap '' TERM; sleep ${seconds}`, { timeoutMs: 300 }));
      expect((stuck as Error).message).to.equal(`host web1: command timed out after 0.3s: trap '' TERM; sleep ${seconds}`);
      const queued = await outcome(ssh.exec(sh`echo queued`, { timeoutMs: 500 }));
      expect((queued as Error).message).to.equal(
        'host web1: command timed out after 0.5s before it could start (waiting for the connection or a free channel): echo queued',
      );
      // The one channel came back only when the stuck command's session had closed: its sleep is gone by then.
      const after = await ssh.exec(sh`pgrep -f ${`^sleep ${seconds}$`} || echo after`);
      expect(after.stdout.toString()).to.equal('after\n');
    });

    it('stops a timed-out command: its process group is gone from the host, root login included', async () => {
      const ssh = transport({ maxChannels: 1 });
      // A unique argument, so the process table check finds this sleep and no other.
      const seconds = `1000.${randomBytes(4).readUInt32BE()}`;
      const error = await outcome(ssh.exec(sh`sleep ${seconds}`, { timeoutMs: 300 }));
      expect((error as Error).message).to.equal(`host web1: command timed out after 0.3s: sleep ${seconds}`);
      // close() waits for the stop sent through a session of its own (TERM to the group, KILL after a grace period).
      await ssh.close();
      // The stop went through a session of its own: two sessions, one command.
      expect(ssh.usage).to.deep.equal({ connections: 1, sessions: 2, commands: 1 });
      const table = await transport().exec(sh`ps -eo args=`);
      expect(table.stdout.toString().split('\n').map((line) => line.trim())).to.not.include(`sleep ${seconds}`);
    });

    it('stops a command that ignores TERM with KILL after the grace period, and frees its channel', async () => {
      const ssh = transport({ maxChannels: 1 });
      const seconds = `1000.${randomBytes(4).readUInt32BE()}`;
      await outcome(ssh.exec(sh`trap '' TERM; sleep ${seconds}`, { timeoutMs: 300 }));
      // The only channel is free again once the stopped command's session has ended.
      expect((await ssh.exec(sh`echo freed`, { timeoutMs: 60_000 })).stdout.toString()).to.equal('freed\n');
      const table = await ssh.exec(sh`ps -eo args=`);
      expect(table.stdout.toString().split('\n').map((line) => line.trim())).to.not.include(`sleep ${seconds}`);
    });

    it('stops the running commands of every connection on stopRemoteCommands (the controller interrupted)', async () => {
      const ssh = transport();
      const seconds = `1000.${randomBytes(4).readUInt32BE()}`;
      const running = outcome(ssh.exec(sh`sleep ${seconds}`));
      await until(async () => (await transport().exec(sh`ps -eo args=`)).stdout.toString().includes(`sleep ${seconds}`));
      await stopRemoteCommands();
      expect(((await running) as Error).message).to.equal('host web1: the connection was closed while the command was running');
      const table = await transport().exec(sh`ps -eo args=`);
      expect(table.stdout.toString().split('\n').map((line) => line.trim())).to.not.include(`sleep ${seconds}`);
    });

    it('never puts secrets in error messages', async () => {
      const token = new Secret('s3cr3t-join-token');
      const error = await outcome(transport().exec(sh`sleep 5 || echo ${token}`, { timeoutMs: 300 }));
      expect((error as Error).message).to.equal('host web1: command timed out after 0.3s: sleep 5 || echo ***');
    });
  });

  describe('atomic writes through a Host on this transport', () => {
    it('validate runs on the temp file before the rename: an accepted file replaces the old one, a refused one leaves it and no temp file', async () => {
      const host = new Host('web1', {}, transport(), { enabled: false, user: 'root' }, sshd.user);
      await host.connect();
      const dir = await mkdtemp(join(scratch, 'write-'));
      const path = join(dir, 'haproxy.cfg');
      await writeFile(path, 'old\n', { mode: 0o644 });
      // The checker sees the complete temp file, with its final mode, beside the target.
      const check = (temp: string) => sh`[ "$(stat -c %a -- ${temp})" = 640 ] && grep -qx good ${temp} || { echo "refused $(basename -- ${temp}):" >&2; cat -- ${temp} >&2; exit 7; }`;
      await host.writeFile(path, 'good\n', { mode: '0640', validate: check });
      expect(await readFile(path, 'utf8')).to.equal('good\n');
      expect((await stat(path)).mode & 0o777).to.equal(0o640);
      expect(await readdir(dir)).to.deep.equal(['haproxy.cfg']);

      const refused = await outcome(host.writeFile(path, new Secret('bad secret line\n'), { mode: '0640', validate: check }));
      expect(refused).to.be.instanceOf(CommandError);
      expect((refused as CommandError).exitCode).to.equal(7);
      expect((refused as CommandError).message).to.match(new RegExp(`^${path} not replaced: the new content failed validation \\(exit 7\\)\\nrefused \\.capstan\\.[0-9a-f]{16}:\\n\\*\\*\\*$`));
      expect(await readFile(path, 'utf8')).to.equal('good\n');
      expect(await readdir(dir)).to.deep.equal(['haproxy.cfg']);
      await host.close();
    });
  });

  describe('host keys', () => {
    it('refuses an unknown host key, naming host, fingerprint and files', async () => {
      const empty = join(scratch, 'empty_known_hosts');
      const error = await outcome(transport({ knownHostsFiles: [empty] }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(
        `host web1 ([127.0.0.1]:${sshd.port}): host key ssh-ed25519 ${fingerprint(await sshd.hostKey())} is not in known_hosts (${empty}); verify it and add it, or run with --accept-new-host-keys`,
      );
    });

    it('with accept-new records the key, after which a plain connect succeeds', async () => {
      const file = join(scratch, 'fresh', 'known_hosts');
      await transport({ knownHostsFiles: [file], acceptNewHostKeys: true }).connect();
      const key = await sshd.hostKey();
      expect(await readFile(file, 'utf8')).to.equal(`[127.0.0.1]:${sshd.port} ssh-ed25519 ${key.toString('base64')}\n`);
      expect((await stat(file)).mode & 0o777).to.equal(0o600);
      expect((await stat(join(scratch, 'fresh'))).mode & 0o777).to.equal(0o700);
      const again = transport({ knownHostsFiles: [file] });
      expect((await again.exec(sh`echo ok`)).stdout.toString()).to.equal('ok\n');
    });

    it('refuses a changed host key even with accept-new', async () => {
      const own = await Sshd.start();
      try {
        const file = join(scratch, 'changing_known_hosts');
        const first = new SshTransport(target({ port: own.port, knownHostsFiles: [file], acceptNewHostKeys: true, identityFiles: [own.clientKeyPath] }));
        await first.connect();
        await first.close();
        const oldKey = await own.hostKey();
        const restarted = await own.restartWithNewHostKey();
        const second = new SshTransport(target({ port: own.port, knownHostsFiles: [file], acceptNewHostKeys: true, identityFiles: [own.clientKeyPath] }));
        const error = await outcome(second.connect());
        await second.close();
        expect(error).to.be.instanceOf(TransportError);
        expect((error as Error).message).to.equal(
          `REMOTE HOST IDENTIFICATION HAS CHANGED for web1 ([127.0.0.1]:${own.port}): known_hosts ${file}:1 has ${fingerprint(oldKey)}, the host offered ${fingerprint(await restarted.hostKey())}`,
        );
        expect((await readFile(file, 'utf8')).trim().split('\n')).to.have.length(1);
        await restarted.stop();
      } finally {
        await own.remove();
      }
    });

    it('refuses a host known by an ed25519 key that now offers only ecdsa, even with accept-new', async () => {
      const own = await Sshd.start();
      try {
        const file = join(scratch, 'type_known_hosts');
        const first = new SshTransport(target({ port: own.port, knownHostsFiles: [file], acceptNewHostKeys: true, identityFiles: [own.clientKeyPath] }));
        await first.connect();
        await first.close();
        const recorded = await readFile(file, 'utf8');
        const oldKey = await own.hostKey();
        const restarted = await own.restartWithNewHostKey('ecdsa');
        const second = new SshTransport(target({ port: own.port, knownHostsFiles: [file], acceptNewHostKeys: true, identityFiles: [own.clientKeyPath] }));
        const error = await outcome(second.connect());
        await second.close();
        expect(error).to.be.instanceOf(TransportError);
        expect((error as Error).message).to.equal(
          `REMOTE HOST IDENTIFICATION HAS CHANGED for web1 ([127.0.0.1]:${own.port}): the host offered ecdsa-sha2-nistp256 ${fingerprint(await restarted.hostKey())}, another key type than known_hosts has for it (ssh-ed25519 ${fingerprint(oldKey)} at ${file}:1); refusing to connect`,
        );
        expect(await readFile(file, 'utf8')).to.equal(recorded);
        await restarted.stop();
      } finally {
        await own.remove();
      }
    });

    it('with accept-new records nothing for an impostor that shows the host key but cannot sign with it', async () => {
      // The impostor offers the real host's public key and signs the key exchange with a key of its own:
      // the client must notice the bad signature before it records anything.
      const shown = ssh2.utils.parseKey(await readFile(sshd.hostKeyPath));
      const own = ssh2.utils.parseKey(ssh2.utils.generateKeyPairSync('ed25519').private);
      if (shown instanceof Error || own instanceof Error) throw new Error('cannot parse test keys');
      (shown as unknown as { sign: (data: Buffer, algo?: string) => Buffer }).sign = (data, algo) => own.sign(data, algo);
      const impostor = new ssh2.Server({ hostKeys: [{ key: shown } as unknown as Buffer] }, (client) => client.on('error', () => {}));
      await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
      try {
        const file = join(scratch, 'impostor_known_hosts');
        const port = (impostor.address() as AddressInfo).port;
        const error = await outcome(transport({ port, knownHostsFiles: [file], acceptNewHostKeys: true }).connect());
        expect(error).to.be.instanceOf(Error);
        expect((error as Error).message).to.contain('signature verification failed');
        expect(existsSync(file), 'known_hosts was written').to.equal(false);
      } finally {
        await new Promise((resolve) => impostor.close(resolve));
      }
    });

    it('with accept-new records nothing when the handshake does not complete (authentication refused)', async () => {
      const stranger = await generateKey(join(scratch, 'stranger_for_hostkey'));
      const file = join(scratch, 'auth_failed_known_hosts');
      const error = await outcome(transport({ identityFiles: [stranger], knownHostsFiles: [file], acceptNewHostKeys: true }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.contain('authentication failed');
      expect(existsSync(file), 'known_hosts was written').to.equal(false);
      // Once the handshake completes the key is recorded.
      await transport({ knownHostsFiles: [file], acceptNewHostKeys: true }).connect();
      expect(await readFile(file, 'utf8')).to.equal(`[127.0.0.1]:${sshd.port} ssh-ed25519 ${(await sshd.hostKey()).toString('base64')}\n`);
    });

    it('refuses accept-new into UserKnownHostsFile=/dev/null before connecting', async () => {
      const before = await sshd.connectionCount();
      const error = await outcome(transport({ knownHostsFiles: ['/dev/null'], acceptNewHostKeys: true }).connect());
      expect(error).to.be.instanceOf(InputError);
      expect((error as Error).message).to.equal('host web1: accept-new cannot record host keys in /dev/null: it is /dev/null, which keeps nothing; refusing to connect');
      expect(await sshd.connectionCount()).to.equal(before);
    });
  });

  describe('connection failures', () => {
    it('rejects every in-flight exec with TransportError when the host dies mid-exec', async () => {
      const own = await Sshd.start();
      try {
        const ssh = new SshTransport(target({ port: own.port, identityFiles: [own.clientKeyPath], acceptNewHostKeys: true, knownHostsFiles: [join(scratch, 'crash_known_hosts')] }));
        await ssh.connect();
        const running = [ssh.exec(sh`sleep 30`), ssh.exec(sh`sleep 30; echo never`)].map(outcome);
        await new Promise((resolve) => setTimeout(resolve, 300));
        await own.crash();
        // Undetected, the lost connection would leave both calls waiting (the test's timeout would fail it).
        const errors = await Promise.all(running);
        for (const error of errors) {
          expect(error).to.be.instanceOf(TransportError);
          expect((error as Error).message).to.match(/^host web1 \(127\.0\.0\.1:\d+\): connection lost/);
        }
        await ssh.close();
      } finally {
        await own.remove();
      }
    });

    it('rejects in-flight execs when the transport is closed', async () => {
      const ssh = transport();
      // outcome() right away: close() rejects the call first, then waits for the host to stop the command.
      const running = outcome(ssh.exec(sh`sleep 5`));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await ssh.close();
      const error = await running;
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.contain('host web1');
    });

    it('retries a refused connection, then fails naming the host', async () => {
      const own = await Sshd.start();
      const port = own.port;
      await own.remove();
      const error = await outcome(transport({ port, connectRetries: 2 }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(`host web1 (127.0.0.1:${port}): connection refused (3 attempts)`);
    });

    it('times out a host that accepts TCP but never speaks SSH, and retries that', async () => {
      const sockets: Socket[] = [];
      const silent = createServer((socket) => sockets.push(socket));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const port = (silent.address() as AddressInfo).port;
      try {
        const error = await outcome(transport({ port, connectTimeoutMs: 300, connectRetries: 1 }).connect());
        expect(error).to.be.instanceOf(TransportError);
        expect((error as Error).message).to.equal(`host web1 (127.0.0.1:${port}): no SSH handshake within 300ms (2 attempts)`);
      } finally {
        silent.close();
        for (const socket of sockets) socket.destroy();
      }
    });

    it('reports a missing identity file as InputError naming file and host', async () => {
      const missing = join(scratch, 'no_such_key');
      const error = await outcome(transport({ identityFiles: [missing] }).connect());
      expect(error).to.be.instanceOf(InputError);
      expect((error as Error).message).to.equal(`host web1: identity file ${missing} does not exist`);
    });

    it('skips an encrypted key without passphrase and says so when nothing else works', async () => {
      const encrypted = await generateKey(join(scratch, 'encrypted_key'), 'ed25519', 'passphrase');
      const error = await outcome(transport({ identityFiles: [encrypted] }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.contain(`${encrypted} (encrypted and no passphrase is available; load it into ssh-agent)`);
      expect((error as Error).message).to.contain('host web1');
    });

    it('uses the next key when an encrypted one comes first', async () => {
      const encrypted = await generateKey(join(scratch, 'encrypted_first'), 'ed25519', 'passphrase');
      const ssh = transport({ identityFiles: [encrypted, sshd.clientKeyPath] });
      expect((await ssh.exec(sh`echo in`)).stdout.toString()).to.equal('in\n');
    });

    it('authenticates through ssh-agent', async () => {
      const agent = await SshAgent.start(scratch, [sshd.clientKeyPath]);
      try {
        // The only key file is one sshd does not accept, so success means the agent's key was used.
        const stranger = await generateKey(join(scratch, 'agent_then_key'));
        const ssh = transport({ agent: agent.socket, identityFiles: [stranger] });
        expect((await ssh.exec(sh`echo via agent`)).stdout.toString()).to.equal('via agent\n');
      } finally {
        await agent.stop();
      }
    });

    it('fails authentication with a key the host does not accept, without retrying', async () => {
      const stranger = await generateKey(join(scratch, 'stranger_key'));
      const before = await sshd.connectionCount();
      const error = await outcome(transport({ identityFiles: [stranger], connectRetries: 3 }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.equal(
        `host web1 (127.0.0.1:${sshd.port}): authentication failed for user ${sshd.user} (tried ${stranger})`,
      );
      expect((await sshd.connectionCount()) - before).to.equal(1);
    });
  });

  describe('ProxyJump', () => {
    it('reaches the target through a jump host whose key is verified too', async () => {
      const before = await sshd.connectionCount();
      const ssh = transport({ name: 'inner', jump: target({ name: 'bastion' }) });
      const results = await Promise.all([ssh.exec(sh`echo one`), ssh.exec(sh`echo two`)]);
      expect(results.map((r) => r.stdout.toString())).to.deep.equal(['one\n', 'two\n']);
      // One connection to the jump host, one tunnelled through it to the target.
      expect((await sshd.connectionCount()) - before).to.equal(2);
    });

    it('refuses an unknown jump host key under the target name', async () => {
      const empty = join(scratch, 'jump_empty_known_hosts');
      const error = await outcome(transport({ name: 'inner', jump: target({ name: 'bastion', knownHostsFiles: [empty] }) }).connect());
      expect(error).to.be.instanceOf(TransportError);
      expect((error as Error).message).to.match(/^host inner \(via jump host bastion\): host bastion \(\[127\.0\.0\.1\]:\d+\): host key ssh-ed25519 SHA256:\S+ is not in known_hosts/);
    });
  });
});
