import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, Client, ClientChannel, ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';
import { CommandTimeoutError, InputError, TransportError } from '../errors.js';
import type { Command } from '../quote.js';
import { knownKeyTypes, recordHostKey, verifyHostKey, whyCannotKeep, type HostKeyCheck } from './known-hosts.js';
import { markCommand, newCommandId, STOP_GRACE_SECONDS, stopCommand } from './remote-stop.js';
import type { ExecOptions, ExecResult, SshTarget, Transport, TransportUsage } from './types.js';

/** Unanswered keepalives before the connection counts as dead; OpenSSH's ServerAliveCountMax default. */
const KEEPALIVE_COUNT_MAX = 3;

/** OpenSSH's default identity names: it tries them silently when absent, so a missing one is not an error. */
const DEFAULT_IDENTITY_NAMES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_dsa'];

/** Host key algorithms by the key type stored in known_hosts (an RSA key is offered under three algorithms). */
const HOST_KEY_ALGORITHMS: Record<string, ServerHostKeyAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** Socket errors worth another attempt: the host may be booting or briefly overloaded. */
const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/**
 * SSH_OPEN_CONNECT_FAILED, a temporary refusal: for a tunnel, the jump host could not reach the target
 * (yet); for a session, sshd had no free session ("open failed", logged as "no more sessions").
 */
const OPEN_CONNECT_FAILED = 2;

/** Session-open retries after "open failed"; with the capped backoff they span about three seconds. */
const SESSION_OPEN_RETRIES = 10;

/** How long a stop may take beyond its grace period before the controller stops waiting for it. */
const STOP_EXTRA_MS = 10_000;

/** Transports with a connection, for stopping every running command when the controller is interrupted. */
const liveTransports = new Set<SshTransport>();

/**
 * Stops every command running on every SSH connection of this process (TERM to its process group on
 * the host, KILL after the grace period) and waits until the hosts have done so, or given up. For the
 * controller's SIGTERM or second Ctrl-C: without it a root login's command runs on after we exit.
 */
export async function stopRemoteCommands(): Promise<void> {
  await Promise.all([...liveTransports].map((transport) => transport.stopRunning()));
}

/** Connection errors that another attempt may cure; everything else (auth, host keys, bad input) is final. */
const retryable = new WeakSet<Error>();

type Ssh2Error = Error & { level?: string; code?: string; reason?: number };

/** One live SSH connection and the commands currently running on it. */
interface Connection {
  client: Client;
  /** Rejects each running exec; called with the reason when the connection ends under them. */
  inFlight: Set<(error: TransportError) => void>;
  isClosed: boolean;
  /** Set by close(), so running commands are told the connection was closed on purpose, not lost. */
  closing: boolean;
  closed: Promise<void>;
}

/** The authentication methods built from the target, plus what was skipped and why (for the failure message). */
interface Identities {
  methods: AnyAuthMethod[];
  tried: string[];
  skipped: string[];
}

/**
 * Jump-host connections are shared by every target behind the same bastion: fifty hosts behind one
 * ProxyJump would otherwise open fifty connections to it and trip its sshd MaxStartups throttle.
 */
const sharedJumps = new Map<string, { transport: SshTransport; users: number }>();

function jumpKey(target: SshTarget): string {
  const chain: string[] = [];
  for (let hop: SshTarget | undefined = target; hop; hop = hop.jump) chain.push(`${hop.user}@${hop.host}:${hop.port}`);
  return chain.join(' via ');
}

/**
 * The SSH transport: one ssh2 connection per host, opened on first use and reused by every `exec`,
 * with at most `target.maxChannels` sessions open at once (sshd refuses more than MaxSessions, 10).
 * Host keys are checked against known_hosts before any credential is sent.
 *
 * @example
 * const transport = new SshTransport(target);
 * const result = await transport.exec(sh`uname -r`, { timeoutMs: 10_000 });
 * await transport.close();
 */
export class SshTransport implements Transport {
  readonly #target: SshTarget;
  readonly #channels: LimitFunction;
  #connecting: Promise<Connection> | undefined;
  #current: Connection | undefined;
  #jump: { transport: SshTransport; key: string } | undefined;
  /** Commands whose channel is open, so they can be stopped on close or interrupt. */
  readonly #running = new Set<ExecCall>();
  /** Stops under way (their own sessions), awaited by close(). */
  readonly #stopping = new Set<Promise<void>>();
  readonly #usage: TransportUsage = { connections: 0, sessions: 0, commands: 0 };

  constructor(target: SshTarget) {
    if (!Number.isInteger(target.maxChannels) || target.maxChannels < 1) {
      throw new InputError(`host ${target.name}: maxChannels must be a positive integer, not ${target.maxChannels}`, {
        host: target.name,
      });
    }
    this.#target = target;
    this.#channels = pLimit(target.maxChannels);
  }

  get usage(): Readonly<TransportUsage> {
    return { ...this.#usage };
  }

  /** Opens the connection, or joins the attempt already under way; resolves at once when connected. */
  async connect(): Promise<void> {
    await this.#connection();
  }

  /**
   * Runs `command.text` on the host and collects its output. A non-zero exit is a result, not an error;
   * the call rejects with TransportError only when the command could not run to completion: timeout,
   * lost connection, channel failure. `timeoutMs` counts from this call, so time spent waiting for the
   * connection or a free channel counts too: a host whose channels are all stuck fails instead of hanging.
   */
  exec(command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    return new Promise<ExecResult>((resolve, reject) => {
      const id = options.markProcesses === false ? undefined : newCommandId();
      const call = new ExecCall(this.#target.name, command, id, resolve, reject);
      if (options.timeoutMs !== undefined) call.startTimer(options.timeoutMs);
      // The slot is held until the channel is closed on both sides, not until the promise settles: a timed-out
      // command still occupies one of sshd's MaxSessions until the server confirms the close.
      this.#channels(() => this.#run(call, options.stdin, options.dialogue)).catch((error: Error) => call.fail(error));
    });
  }

  /**
   * Ends the connection (and releases a shared jump host). Commands still running reject with
   * TransportError. A later `connect` or `exec` opens a new connection.
   */
  async close(): Promise<void> {
    liveTransports.delete(this);
    await this.stopRunning();
    const pending = this.#connecting;
    this.#connecting = undefined;
    this.#current = undefined;
    const connection = await pending?.catch(() => undefined);
    if (connection && !connection.isClosed) {
      connection.closing = true;
      connection.client.end();
      await connection.closed;
    }
    if (this.#jump) {
      const { transport, key } = this.#jump;
      this.#jump = undefined;
      const shared = sharedJumps.get(key);
      if (shared && --shared.users === 0) {
        sharedJumps.delete(key);
        await transport.close();
      }
    }
  }

  /**
   * Stops every command running on this connection: each call rejects at once with TransportError (the
   * connection is being closed), and its process group on the host gets TERM, then KILL after the grace
   * period. Resolves when the stops have finished (or were given up), including those of timed-out commands.
   */
  async stopRunning(): Promise<void> {
    for (const call of this.#running) {
      call.fail(new TransportError(`host ${call.name}: the connection was closed while the command was running`, { host: call.name }));
      call.stop?.();
    }
    while (this.#stopping.size > 0) await Promise.all(this.#stopping);
  }

  /**
   * Stops the marked command `id` through a session of its own on `connection` (see remote-stop.ts),
   * outside the channel limit: the stuck command may hold the last slot. Best effort: a stop that cannot
   * start (connection gone) or does not finish in time is given up.
   */
  #stopGroup(connection: Connection, id: string): void {
    if (connection.isClosed) return;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, STOP_GRACE_SECONDS * 1000 + STOP_EXTRA_MS);
      const finish = (): void => {
        clearTimeout(timer);
        resolve();
      };
      connection.closed.then(finish, finish);
      startSession(connection.client, stopCommand(id).text, () => connection.isClosed, finish, (channel) => {
        this.#usage.sessions++;
        channel.on('close', finish);
        channel.on('error', finish);
        channel.resume();
        channel.stderr.resume();
        channel.end();
      });
    });
    this.#stopping.add(done);
    void done.then(() => this.#stopping.delete(done));
  }

  /**
   * Opens a TCP stream through this host to `host:port` (a ProxyJump hop); the stream serves as the
   * `sock` of the next hop's connection.
   */
  async forward(host: string, port: number): Promise<ClientChannel> {
    const { client } = await this.#connection();
    return new Promise<ClientChannel>((resolve, reject) => {
      const failed = (error: Ssh2Error): void => {
        const failure = new TransportError(`host ${this.#target.name}: cannot open a tunnel to ${host}:${port}: ${error.message}`, {
          host: this.#target.name,
          cause: error,
        });
        if (error.reason === OPEN_CONNECT_FAILED) retryable.add(failure);
        reject(failure);
      };
      try {
        client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => (error ? failed(error) : resolve(channel)));
      } catch (error) {
        // ssh2 throws "Not connected" synchronously when the jump connection ended since it was handed out.
        failed(error as Error);
      }
    });
  }

  get #address(): string {
    return `${this.#target.host}:${this.#target.port}`;
  }

  #connection(): Promise<Connection> {
    // A connection that dropped is replaced on next use, so a host that rebooted can be reached again.
    if (this.#current?.isClosed) {
      this.#current = undefined;
      this.#connecting = undefined;
    }
    if (!this.#connecting) {
      // The identity checks keep a superseded attempt (close() ran meanwhile) from overwriting a newer one.
      const attempt: Promise<Connection> = this.#open().then(
        (connection) => {
          this.#usage.connections++;
          if (this.#connecting === attempt) {
            this.#current = connection;
            liveTransports.add(this);
          }
          return connection;
        },
        (error: unknown) => {
          if (this.#connecting === attempt) this.#connecting = undefined;
          throw error;
        },
      );
      this.#connecting = attempt;
    }
    return this.#connecting;
  }

  async #open(): Promise<Connection> {
    const target = this.#target;
    // accept-new into a file that keeps nothing (/dev/null) would take any key on every run: refuse before connecting.
    if (target.acceptNewHostKeys) {
      const problem = whyCannotKeep(target.knownHostsFiles[0]);
      if (problem !== undefined) {
        throw new InputError(
          `host ${target.name}: accept-new cannot record host keys in ${target.knownHostsFiles[0] ?? 'known_hosts'}: ${problem}; refusing to connect`,
          { host: target.name },
        );
      }
    }
    // Both reads can fail with InputError (missing key file, unreadable known_hosts): no point retrying those.
    const identities = await loadIdentities(target);
    const hostKeyTypes = await knownKeyTypes({ name: target.name, host: target.host, port: target.port, files: target.knownHostsFiles });
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#attempt(identities, hostKeyTypes);
      } catch (error) {
        if (!(error instanceof Error) || !retryable.has(error) || attempt >= target.connectRetries) {
          if (error instanceof Error && retryable.has(error) && attempt > 0) {
            error.message += ` (${attempt + 1} attempts)`;
          }
          throw error;
        }
        await delay(Math.min(250 * 2 ** attempt, 2000));
      }
    }
  }

  async #attempt(identities: Identities, hostKeyTypes: string[]): Promise<Connection> {
    const target = this.#target;
    const sock = target.jump ? await this.#tunnel(target.jump) : undefined;
    return new Promise<Connection>((resolve, reject) => {
      const client = new ssh2.Client();
      let hostKeyError: Error | undefined;
      const hostKeyCheck: HostKeyCheck = {
        name: target.name,
        host: target.host,
        port: target.port,
        files: target.knownHostsFiles,
        acceptNew: target.acceptNewHostKeys,
      };
      // An accepted unknown key, recorded on 'ready': hostVerifier runs before ssh2 checks the server's
      // signature, so only a completed handshake proves the server holds the key it showed.
      let newHostKey: Buffer | undefined;
      const agentProblems: string[] = [];
      let ready = false;
      let failed = false;
      let lastError: Ssh2Error | undefined;
      const fail = (error: Error): void => {
        if (failed) return;
        failed = true;
        client.end();
        reject(error);
      };

      const config: ConnectConfig = {
        host: target.host,
        port: target.port,
        username: target.user,
        readyTimeout: target.connectTimeoutMs,
        keepaliveInterval: target.keepaliveIntervalMs,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
        authHandler: identities.methods,
        algorithms: { serverHostKey: hostKeyAlgorithms(hostKeyTypes) },
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          verifyHostKey(hostKeyCheck, key).then(
            (verdict) => {
              if (verdict === 'new') newHostKey = Buffer.from(key);
              verify(true);
            },
            (error: Error) => {
              hostKeyError = error;
              verify(false);
            },
          );
        },
        ...(sock ? { sock } : {}),
      };

      let resolveClosed = (): void => {};
      const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
      const connection: Connection = { client, inFlight: new Set(), isClosed: false, closing: false, closed };
      // 'end' comes before 'close' when the peer goes away: from then on ssh2 refuses new channels
      // ("Not connected"), so the next command must open a new connection rather than use this one.
      client.on('end', () => {
        connection.isClosed = true;
      });
      client.on('close', () => {
        connection.isClosed = true;
        if (!ready) {
          const error = new TransportError(`host ${target.name} (${this.#address}): connection closed during the SSH handshake`, {
            host: target.name,
          });
          retryable.add(error);
          fail(hostKeyError ?? error);
        } else {
          const reason = connection.closing
            ? `host ${target.name}: the connection was closed while the command was running`
            : `host ${target.name} (${this.#address}): connection lost${lastError ? `: ${lastError.message}` : ''}`;
          const error = new TransportError(reason, { host: target.name, ...(lastError ? { cause: lastError } : {}) });
          for (const rejectExec of connection.inFlight) rejectExec(error);
          connection.inFlight.clear();
        }
        resolveClosed();
      });

      client.on('error', (error: Ssh2Error) => {
        if (ready) {
          // After the handshake an error always precedes 'close', which reports it to the running commands.
          lastError = error;
        } else if (error.level === 'agent') {
          // ssh2 reports an unusable agent and then moves on to the key files: not fatal by itself.
          agentProblems.push(error.message);
        } else {
          fail(this.#connectError(error, hostKeyError, identities, agentProblems));
        }
      });

      client.on('ready', () => {
        if (newHostKey === undefined) {
          ready = true;
          resolve(connection);
          return;
        }
        recordHostKey(hostKeyCheck, newHostKey).then(
          () => {
            ready = true;
            resolve(connection);
          },
          (error: Error) => {
            hostKeyError = error;
            fail(error);
          },
        );
      });

      client.connect(config);
    });
  }

  /** Opens the tunnel through the (shared) jump host; its failures are reported under this host's name. */
  async #tunnel(jump: SshTarget): Promise<ClientChannel> {
    if (!this.#jump) {
      const key = jumpKey(jump);
      let shared = sharedJumps.get(key);
      if (!shared) {
        shared = { transport: new SshTransport(jump), users: 0 };
        sharedJumps.set(key, shared);
      }
      shared.users++;
      this.#jump = { transport: shared.transport, key };
    }
    try {
      return await this.#jump.transport.forward(this.#target.host, this.#target.port);
    } catch (error) {
      // Keep the class: a bad key file for the jump host is still bad input, not an unreachable host.
      const Wrapper = error instanceof InputError ? InputError : TransportError;
      const wrapped = new Wrapper(`host ${this.#target.name} (via jump host ${jump.name}): ${(error as Error).message}`, {
        host: this.#target.name,
        cause: error,
      });
      if (error instanceof Error && retryable.has(error)) retryable.add(wrapped);
      throw wrapped;
    }
  }

  /** Turns an ssh2 connect failure into a TransportError that names the host and says what to do. */
  #connectError(error: Ssh2Error, hostKeyError: Error | undefined, identities: Identities, agentProblems: string[]): Error {
    const target = this.#target;
    if (hostKeyError) return hostKeyError;
    const prefix = `host ${target.name} (${this.#address})`;
    if (error.level === 'client-authentication') {
      const details = [
        `tried ${identities.tried.join(', ')}`,
        ...(identities.skipped.length ? [`skipped ${identities.skipped.join(', ')}`] : []),
        ...agentProblems.map((problem) => `ssh-agent: ${problem}`),
      ];
      return new TransportError(`${prefix}: authentication failed for user ${target.user} (${details.join('; ')})`, {
        host: target.name,
        cause: error,
      });
    }
    let message = error.message;
    if (error.level === 'client-timeout') message = `no SSH handshake within ${target.connectTimeoutMs}ms`;
    else if (error.code === 'ECONNREFUSED') message = 'connection refused';
    const failure = new TransportError(`${prefix}: ${message}`, { host: target.name, cause: error });
    if (error.level === 'client-timeout' || (error.code !== undefined && RETRYABLE_CODES.has(error.code))) retryable.add(failure);
    return failure;
  }

  async #run(call: ExecCall, stdin: ExecOptions['stdin'], dialogue: ExecOptions['dialogue']): Promise<void> {
    // Timed out while queued: give the slot straight back.
    if (call.settled) return;
    let connection: Connection;
    try {
      connection = await this.#connection();
    } catch (error) {
      call.fail(error as Error);
      return;
    }
    if (call.settled) return;
    const { name, command, id } = call;
    connection.inFlight.add(call.fail);
    call.onSettle = () => connection.inFlight.delete(call.fail);
    const text = id === undefined ? command.text : markCommand(command, id).text;
    await new Promise<void>((releaseSlot) => {
      const cannotStart = (error: Error): void => {
        call.fail(new TransportError(`host ${name}: cannot start ${command.display}: ${error.message}`, { host: name, cause: error }));
        releaseSlot();
      };
      startSession(connection.client, text, () => call.settled, cannotStart, (channel) => {
        this.#usage.sessions++;
        this.#usage.commands++;
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        let exit: { code: number | null; signal?: string } | undefined;
        channel.on('data', (chunk: Buffer) => stdout.push(chunk));
        channel.stderr.on('data', (chunk: Buffer) => stderr.push(dialogue ? dialogue.stderr(chunk) : chunk));
        channel.on('exit', (code: number | null, signal?: string) => {
          exit = signal === undefined ? { code } : { code, signal };
        });
        channel.on('error', (channelError: Error) => {
          call.fail(new TransportError(`host ${name}: channel error while running ${command.display}: ${channelError.message}`, { host: name }));
        });
        channel.on('close', () => {
          this.#running.delete(call);
          releaseSlot();
          const status = exit;
          if (dialogue) stderr.push(dialogue.end());
          if (status) call.succeed({ stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), ...status });
          else call.fail(new TransportError(`host ${name}: ${command.display} ended without an exit status`, { host: name }));
        });
        call.channel = channel;
        let stopped = false;
        call.stop = () => {
          if (stopped) return;
          stopped = true;
          stopRemote(channel);
          if (id !== undefined) this.#stopGroup(connection, id);
        };
        this.#running.add(call);
        // The timeout may have fired while the channel was opening; the command has started by now, so stop it.
        if (call.settled) call.stop();
        else if (dialogue) dialogue.start({ write: (data) => channel.write(data), end: (data) => channel.end(data) });
        else channel.end(stdin);
      });
    });
  }
}

/**
 * Opens a session channel running `text` and hands it to `started` synchronously from ssh2's callback:
 * output, exit status and close can arrive in the same read as the reply, so listeners cannot wait for
 * a later tick. An "open failed" refusal is retried briefly: sshd frees a closed session only on its next
 * loop pass, so a channel opened right after another closed can find MaxSessions still full.
 */
function startSession(
  client: Client,
  text: string,
  abandoned: () => boolean,
  failed: (error: Error) => void,
  started: (channel: ClientChannel) => void,
  attempt = 0,
): void {
  try {
    client.exec(text, (error, channel) => {
      if (!error) return started(channel);
      const retry = (error as Ssh2Error).reason === OPEN_CONNECT_FAILED && attempt < SESSION_OPEN_RETRIES && !abandoned();
      if (!retry) return failed(error);
      setTimeout(() => startSession(client, text, abandoned, failed, started, attempt + 1), Math.min(20 * 2 ** attempt, 500));
    });
  } catch (error) {
    // ssh2 throws "Not connected" synchronously when the connection ended since it was handed out.
    failed(error as Error);
  }
}

/** One exec call: settles exactly once, whichever of exit, timeout or connection loss comes first. */
class ExecCall {
  settled = false;
  /** Set once the command runs, so a timeout can stop it. */
  channel: ClientChannel | undefined;
  /** Cleanup run when the call settles (leaving the connection's in-flight set). */
  onSettle: (() => void) | undefined;
  /** Set once the command runs: stops it on the host (its channel, and its process group when marked). */
  stop: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    readonly command: Command,
    /** The mark of the command's processes on the host (remote-stop.ts); undefined when sent unmarked. */
    readonly id: string | undefined,
    private readonly resolve: (result: ExecResult) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  startTimer(timeoutMs: number): void {
    this.#timer = setTimeout(() => {
      const seconds = timeoutMs / 1000;
      const message = this.channel
        ? `host ${this.name}: command timed out after ${seconds}s: ${this.command.display}`
        : `host ${this.name}: command timed out after ${seconds}s before it could start (waiting for the connection or a free channel): ${this.command.display}`;
      this.fail(new CommandTimeoutError(message, { host: this.name }));
      this.stop?.();
    }, timeoutMs);
  }

  succeed(result: ExecResult): void {
    if (this.#finish()) this.resolve(result);
  }

  /** Arrow function: it is stored in the connection's in-flight set and called from there. */
  readonly fail = (error: Error): void => {
    if (this.#finish()) this.reject(error);
  };

  #finish(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.#timer);
    this.onSettle?.();
    return true;
  }
}

/**
 * Closes a stopped command's channel, with a TERM signal request first. Closing the channel alone does
 * not end the command: without a pty, sshd keeps the session (and its MaxSessions place) until the
 * command exits. sshd delivers the signal to the session's process group, and sudo relays TERM to the
 * command it runs; but OpenSSH refuses signals in root login sessions, which is why marked commands are
 * also stopped through a session of their own (#stopGroup). ssh2's public `signal()` refuses once stdin
 * has been ended, which `exec` always does, hence the protocol call.
 */
function stopRemote(channel: ClientChannel): void {
  const internals = channel as unknown as {
    outgoing?: { id?: number };
    _client?: { _protocol?: { signal?: (id: number, signal: string) => void } };
  };
  const id = internals.outgoing?.id;
  try {
    if (id !== undefined) internals._client?._protocol?.signal?.(id, 'TERM');
  } catch {
    // The signal is best effort (the channel may be closing already); the close below still ends our side.
  }
  channel.close();
}

/** Prefers the host key algorithms known_hosts has keys for, like OpenSSH, so a host known by its RSA key is not asked for a fresh ed25519 one. */
function hostKeyAlgorithms(knownTypes: string[]): ServerHostKeyAlgorithm[] {
  const preferred = knownTypes.flatMap((type) => HOST_KEY_ALGORITHMS[type] ?? []);
  const all = Object.values(HOST_KEY_ALGORITHMS).flat();
  return [...new Set([...preferred, ...all])];
}

function isDefaultIdentity(file: string): boolean {
  return DEFAULT_IDENTITY_NAMES.some((name) => file === join(homedir(), '.ssh', name));
}

/**
 * Builds the authentication methods in order: ssh-agent, then each readable, unencrypted key file.
 * A key file that was named explicitly but does not exist is an InputError; encrypted or unreadable
 * keys are skipped and listed in the failure message should nothing else work.
 */
async function loadIdentities(target: SshTarget): Promise<Identities> {
  const identities: Identities = { methods: [], tried: [], skipped: [] };
  if (target.agent) {
    identities.methods.push({ type: 'agent', username: target.user, agent: target.agent });
    identities.tried.push(`ssh-agent (${target.agent})`);
  }
  for (const file of target.identityFiles) {
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (isDefaultIdentity(file)) continue;
        throw new InputError(`host ${target.name}: identity file ${file} does not exist`, { host: target.name });
      }
      identities.skipped.push(`${file} (unreadable: ${code ?? (error as Error).message})`);
      continue;
    }
    const key = ssh2.utils.parseKey(data);
    if (key instanceof Error) {
      const encrypted = /encrypted/i.test(key.message);
      identities.skipped.push(
        encrypted ? `${file} (encrypted and no passphrase is available; load it into ssh-agent)` : `${file} (${key.message})`,
      );
      continue;
    }
    if (!key.isPrivateKey()) {
      identities.skipped.push(`${file} (not a private key)`);
      continue;
    }
    identities.methods.push({ type: 'publickey', username: target.user, key });
    identities.tried.push(file);
  }
  if (identities.methods.length === 0) {
    const skipped = identities.skipped.length ? `: skipped ${identities.skipped.join(', ')}` : '';
    throw new TransportError(
      `host ${target.name} (${target.host}:${target.port}): no usable credentials for user ${target.user} (no ssh-agent, no readable key file)${skipped}`,
      { host: target.name },
    );
  }
  return identities;
}

