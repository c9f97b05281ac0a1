import type { Command } from '../quote.js';

/** What one remote (or local) command produced. `code` is null when it was killed by a signal. */
export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  code: number | null;
  signal?: string;
}

export interface ExecOptions {
  /** Bytes written to the command's standard input, then EOF. */
  stdin?: string | Buffer;
  /**
   * Stop the command after this many milliseconds: the call rejects with CommandTimeoutError at once, and
   * the command's process group on the host gets TERM, then KILL after a grace period (SSH transport).
   */
  timeoutMs?: number;
  /**
   * False sends the text exactly as given, without the line that marks the command's processes so they
   * can be stopped: for the login-shell probes, sent before the shell is known to read POSIX sh.
   */
  markProcesses?: boolean;
  /**
   * Writes the command's stdin in answer to what it prints on stderr, instead of `stdin` (which is then
   * ignored): a sudo password sent only when sudo asks for it (runner/transport/sudo-prompt.ts).
   */
  dialogue?: StdinDialogue;
}

/** The running command's standard input, as a dialogue sees it. */
export interface CommandInput {
  write(data: Buffer): void;
  /** Writes `data` (if any), then EOF. */
  end(data?: Buffer): void;
}

/**
 * Decides what goes to a command's stdin from what the command prints on stderr. The transport calls
 * `start` as soon as the command runs, passes every stderr chunk through `stderr` (whose return value
 * is what the caller gets as the command's stderr) and appends `end()` when the command has finished.
 */
export interface StdinDialogue {
  start(input: CommandInput): void;
  stderr(chunk: Buffer): Buffer;
  end(): Buffer;
}

/**
 * What a transport has cost the host so far: counted, so the recap and the bench can say it. On SSH
 * every session is an sshd session (PAM, a logind session on a systemd host): the cost that grows
 * with the number of commands.
 */
export interface TransportUsage {
  /** Connections opened (SSH: TCP + key exchange + authentication; a reconnect counts again). */
  connections: number;
  /** Sessions opened: one per command, and one per remote stop of a timed-out command. */
  sessions: number;
  /** Commands sent, each a round trip to the host and back. */
  commands: number;
}

/**
 * The whole transport surface. File reads/writes, sudo and facts are built on top of `exec`
 * once, in runner/host.ts, so every transport gets the same atomic write and the same quoting.
 * `exec` runs `command.text` with `sh -c` semantics on the target (sshd runs it through the
 * login shell; the local transport through /bin/sh).
 */
export interface Transport {
  /**
   * False when commands run through /bin/sh itself (the local transport) rather than through the login
   * user's shell, as sshd runs them: Host checks that a login shell is POSIX only where one is used.
   */
  readonly usesLoginShell?: boolean;
  /** Opens the connection (idempotent). Rejects with TransportError naming the host. */
  connect(): Promise<void>;
  exec(command: Command, options?: ExecOptions): Promise<ExecResult>;
  close(): Promise<void>;
  /** Counted since the transport was made. */
  readonly usage: Readonly<TransportUsage>;
}

/** Connection settings for one host, merged from inventory vars, ~/.ssh/config and CLI flags. */
export interface SshTarget {
  /** Inventory name, used in every message. */
  name: string;
  /** Address to connect to (ansible_host, else ssh config HostName, else the name). */
  host: string;
  port: number;
  user: string;
  /** Private key files to try, in order (ansible_ssh_private_key_file, ssh config IdentityFile, ~/.ssh/id_*). */
  identityFiles: string[];
  /** Path of an ssh-agent socket (SSH_AUTH_SOCK) when present. */
  agent?: string;
  /** Optional jump host chain, already resolved (ProxyJump). */
  jump?: SshTarget;
  /** known_hosts files to read; the first one is where accepted new keys are written. */
  knownHostsFiles: string[];
  /** Accept and record an unknown host key (never a changed one). */
  acceptNewHostKeys: boolean;
  connectTimeoutMs: number;
  connectRetries: number;
  keepaliveIntervalMs: number;
  /** Concurrent channels on this one connection; below sshd's MaxSessions (10). */
  maxChannels: number;
}
