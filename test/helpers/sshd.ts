import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where Debian's openssh-server puts the daemon; `apt-get install -y openssh-server` provides it. */
export const SSHD_PATH = '/usr/sbin/sshd';

/** Whether the integration tests can run here (they skip otherwise). */
export function sshdAvailable(): boolean {
  return existsSync(SSHD_PATH) && existsSync('/usr/bin/ssh-keygen');
}

/** Generates a key pair with ssh-keygen (no passphrase unless given); returns the private key path (the public key is `<path>.pub`). */
export async function generateKey(path: string, type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519', passphrase = ''): Promise<string> {
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-C', 'capstan-test', '-f', path]);
  return path;
}

/** The public key blob of `<path>.pub` (the base64 field, decoded), as a host offers it. */
async function publicKeyBlob(privateKeyPath: string): Promise<Buffer> {
  const line = await readFile(`${privateKeyPath}.pub`, 'utf8');
  return Buffer.from(line.trim().split(/\s+/)[1] ?? '', 'base64');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Every process descended from `pid`, found through /proc (sshd forks one process tree per connection). */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses; the parent pid is the 2nd field after the last ')'.
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(parent, [...(parents.get(parent) ?? []), Number(entry)]);
    } catch {
      // The process exited while we were looking.
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const children = parents.get(queue.shift()!) ?? [];
    found.push(...children);
    queue.push(...children);
  }
  return found;
}

/**
 * Starts sshd so that its sessions see an empty home directory: as root, in a private mount namespace
 * with a tmpfs over `$HOME`. A login runs the user's shell, and bash run by sshd reads `~/.bashrc`; a
 * controller's own rc files (CI machines run `pyenv init` there, whose `rehash` lock, left stale by a
 * killed session, stalled every later command for 60 s) must not decide what a transport test sees.
 * Without root there is no namespace to make, and sshd runs as is. `unshare` execs sshd in its own
 * process (no --fork), so the child's pid is sshd's.
 */
function spawnIsolatedFromHome(argv: string[]): ChildProcess {
  const home = userInfo().homedir;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare') || !existsSync(home)) {
    return spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  }
  const script = 'mount -t tmpfs -o mode=0700 capstan-test-home "$0" && exec "$@"';
  return spawn('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script, home, ...argv], {
    stdio: 'ignore',
  });
}

/** Options for {@link Sshd.start}. */
export interface SshdOptions {
  /** Reuse a port (to restart "the same host" with another key); a free one is picked otherwise. */
  port?: number;
  /** Host key type to generate. */
  hostKeyType?: 'ed25519' | 'ecdsa' | 'rsa';
  /** Directory for keys, config and log; a new temporary one otherwise. */
  dir?: string;
}

/**
 * A real OpenSSH sshd on 127.0.0.1, as a child process with its own host key, authorized client key,
 * config and log in a temporary directory. It logs at VERBOSE so each accepted TCP connection leaves a
 * "Connection from" line, which is how tests count connections.
 */
export class Sshd {
  readonly host = '127.0.0.1';
  readonly user = userInfo().username;

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly hostKeyPath: string,
    readonly clientKeyPath: string,
    readonly logPath: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts sshd and waits until it listens. Generates a client key on first start in `dir`. */
  static async start(options: SshdOptions = {}): Promise<Sshd> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'capstan-sshd-')));
    const port = options.port ?? (await freePort());
    const hostKeyPath = await generateKey(join(dir, `host_key_${Date.now()}`), options.hostKeyType ?? 'ed25519');
    const clientKeyPath = join(dir, 'client_key');
    if (!existsSync(clientKeyPath)) await generateKey(clientKeyPath);
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${clientKeyPath}.pub`), { mode: 0o600 });
    const logPath = join(dir, `sshd-${port}-${Date.now()}.log`);
    const configPath = join(dir, 'sshd_config');
    await writeFile(
      configPath,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKeyPath}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        // The temp dir's permissions are not what StrictModes wants, and PAM needs a system service file.
        'StrictModes no',
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'AllowTcpForwarding yes',
        'MaxSessions 10',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    // As root, sshd insists on its privilege separation directory; the package creates it only in its service unit.
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const child = spawnIsolatedFromHome([SSHD_PATH, '-D', '-f', configPath, '-E', logPath]);
    const sshd = new Sshd(dir, port, hostKeyPath, clientKeyPath, logPath, child);
    await sshd.#waitListening();
    return sshd;
  }

  async #waitListening(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const log = await this.log();
      if (log.includes(`Server listening on 127.0.0.1 port ${this.port}`)) return;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`sshd exited before listening:\n${log}`);
      }
      await delay(50);
    }
    throw new Error(`sshd did not listen on ${this.port} within 10s:\n${await this.log()}`);
  }

  /** The sshd log so far. */
  async log(): Promise<string> {
    return readFile(this.logPath, 'utf8').catch(() => '');
  }

  /** TCP connections sshd has accepted since it started. */
  async connectionCount(): Promise<number> {
    return (await this.log()).split('\n').filter((line) => line.includes('Connection from 127.0.0.1')).length;
  }

  /** The host's public key blob, as it offers it during key exchange. */
  hostKey(): Promise<Buffer> {
    return publicKeyBlob(this.hostKeyPath);
  }

  /** Kills the listener and every session process under it at once, like a crashed or powered-off host. */
  async crash(): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined) return;
    const all = [pid, ...(await descendants(pid))];
    for (const each of all) {
      try {
        process.kill(each, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await this.#exited();
  }

  /** Stops sshd and its sessions. The directory stays (a restart may reuse it); {@link remove} deletes it. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.crash();
  }

  /** Stops this sshd and starts a new one on the same port and directory, with a freshly generated host key. */
  async restartWithNewHostKey(hostKeyType: SshdOptions['hostKeyType'] = 'ed25519'): Promise<Sshd> {
    await this.stop();
    return Sshd.start({ port: this.port, dir: this.dir, hostKeyType });
  }

  /** Stops sshd and deletes its directory. */
  async remove(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  async #exited(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise((resolve) => this.child.once('exit', resolve));
  }
}

/** A throwaway ssh-agent (a child process with its socket in a temp dir) holding the given keys. */
export class SshAgent {
  private constructor(
    readonly socket: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(dir: string, keys: string[]): Promise<SshAgent> {
    const socket = join(dir, `agent-${Date.now()}.sock`);
    const child = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    const agent = new SshAgent(socket, child);
    const deadline = Date.now() + 5000;
    while (!existsSync(socket)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('ssh-agent did not start');
      await delay(20);
    }
    for (const key of keys) await run('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
    return agent;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }
}
