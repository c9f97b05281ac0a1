import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { asArgument, Command, sh } from './quote.js';
import { CapstanError, CommandError, CommandTimeoutError, InputError, TransportError } from './errors.js';
import { redact, Secret } from './secret.js';
import { FACTS_COMMAND, parseFacts, type Facts } from './facts.js';
import type { ExecOptions, ExecResult, Transport } from './transport/types.js';
import { SudoPrompt } from './transport/sudo-prompt.js';
import { isPosixShellAnswer, LOGIN_SHELL_QUERY, nonPosixShellMessage, POSIX_SHELL_PROBE } from './login-shell.js';
import { parseProbeOutput, probeKey, probeScript } from './probe.js';
import type { FileStat, Probe, ProbeAnswer, RunOptions, RunResult, WriteOptions } from './contract.js';
import { parseStat, STAT_FORMAT } from './stat.js';

export interface BecomeSettings {
  enabled: boolean;
  /** Target user, root by default. */
  user: string;
  password?: Secret;
}

/** Exit code our own probe scripts use for "does not exist", chosen to not clash with tools' own codes. */
const MISSING = 44;

/**
 * The script behind every file write, on every transport. Atomic: content goes to a temp file in
 * the same directory, its size and sha256 are checked (a connection that drops mid-transfer gives
 * a short file, which is discarded — never renamed over the target), the optional validate command
 * is run on it, it is fsynced, then renamed over the target and the directory is fsynced. The target
 * is therefore always either the old or the new content, and never content its validator refused.
 *
 * The temp file's name is chosen by the caller (random, so that the validate command can be built
 * with it) and created exclusively, as mktemp does: `dd conv=excl` opens it O_CREAT|O_EXCL, which
 * refuses an existing file or a symlink planted at that name, with umask 077 (mode 0600). It gets
 * its final owner, group and mode while it is still empty, each in one step from 0600: a mode is
 * never widened on the way (a 0644 moment would let anyone open a key file and keep reading it after
 * the mode narrows). Owner before mode, because chown clears setuid/setgid bits.
 *
 * A validate command that exits non-zero makes the script exit 92 with a last stderr line
 * `capstan-validate: exit <code>` after the command's own output (see {@link Host.writeFile}).
 */
export const ATOMIC_WRITE = `set -e
p=$1 mode=$2 owner=$3 group=$4 size=$5 sum=$6 backup=$7 t=$8 validate=$9
d=$(dirname -- "$p")
(umask 077; exec dd if=/dev/null of="$t" conv=excl status=none)
trap 'rm -f -- "$t"' EXIT
trap 'rm -f -- "$t"; exit 129' HUP INT TERM PIPE
if [ -n "$owner" ]; then chown "$owner" -- "$t"; elif [ -e "$p" ]; then chown --reference="$p" -- "$t" 2>/dev/null || true; fi
if [ -n "$group" ]; then chgrp "$group" -- "$t"; elif [ -e "$p" ]; then chgrp --reference="$p" -- "$t" 2>/dev/null || true; fi
if [ -n "$mode" ]; then chmod "$mode" -- "$t"; elif [ -e "$p" ]; then chmod --reference="$p" -- "$t"; else chmod 0644 -- "$t"; fi
cat > "$t"
[ "$(wc -c < "$t")" -eq "$size" ] || { echo "capstan: short write ($(wc -c < "$t") of $size bytes); $p left unchanged" >&2; exit 90; }
[ "$(sha256sum < "$t" | cut -d' ' -f1)" = "$sum" ] || { echo "capstan: checksum mismatch; $p left unchanged" >&2; exit 91; }
if [ -n "$validate" ]; then
  status=0
  sh -c "$validate" capstan-validate < /dev/null || status=$?
  [ "$status" -eq 0 ] || { printf '\\ncapstan-validate: exit %s\\n' "$status" >&2; exit 92; }
fi
if [ "$backup" = 1 ] && [ -e "$p" ]; then cp -p -- "$p" "$p.$(date +%Y%m%d%H%M%S).capstan-backup"; fi
sync -- "$t" 2>/dev/null || sync
mv -f -- "$t" "$p"
trap - EXIT
sync -- "$d" 2>/dev/null || true`;

/** ATOMIC_WRITE's exit code when the validate command refused the content. */
const VALIDATION_REFUSED = 92;
/** ATOMIC_WRITE's last stderr line after a refusal: the validate command's own exit code. */
const REFUSAL_LINE = /\ncapstan-validate: exit (\d+)\n*$/;

/**
 * A fresh temp file name in `path`'s directory, for ATOMIC_WRITE: random (64 bits), so nobody can
 * claim it first, and known here, so that a validate command can name it.
 */
export function tempPathBeside(path: string): string {
  const dir = posix.dirname(path);
  return `${dir === '/' ? '' : dir}/.capstan.${randomBytes(8).toString('hex')}`;
}

/**
 * One inventory host with its connection. Everything that touches the host goes through here, so
 * privilege escalation, timeouts, secret redaction and atomic writes are written once.
 */
export class Host {
  #facts?: Promise<Facts>;
  #sudoNeedsPassword?: Promise<boolean>;
  #loginShellChecked?: Promise<void>;
  /** Answers of the last batched probe, by probe key; emptied whenever something on the host changes. */
  #probed = new Map<string, ProbeAnswer>();

  constructor(
    readonly name: string,
    readonly vars: Record<string, unknown>,
    readonly transport: Transport,
    readonly become: BecomeSettings,
    /** The login user (for deciding whether sudo is needed). */
    readonly loginUser: string,
    readonly commandTimeoutMs = 600_000,
  ) {}

  /**
   * Opens the connection (idempotent). On first contact over a transport that runs commands through the
   * login shell, checks that shell is POSIX: a host whose user logs in to fish or csh fails here with
   * a TransportError naming the host and the shell, before any command whose quoting it would misread.
   */
  async connect(): Promise<void> {
    await this.transport.connect();
    if (this.transport.usesLoginShell === false) return;
    this.#loginShellChecked ??= this.#checkLoginShell().catch((error: unknown) => {
      this.#loginShellChecked = undefined; // a lost connection is retried; a non-POSIX shell fails again
      throw error;
    });
    await this.#loginShellChecked;
  }

  async #checkLoginShell(): Promise<void> {
    const probe = await this.transport.exec(POSIX_SHELL_PROBE, { timeoutMs: 30_000, markProcesses: false });
    if (isPosixShellAnswer(probe.code, probe.stdout.toString('utf8'))) return;
    const shell = await this.transport.exec(LOGIN_SHELL_QUERY, { timeoutMs: 30_000, markProcesses: false });
    throw new TransportError(nonPosixShellMessage(this.name, this.loginUser, shell.code === 0 ? shell.stdout.toString('utf8') : ''), { host: this.name });
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /**
   * Drops the connection and connects again, retrying until `timeoutMs` (after a reboot the host
   * refuses or ignores connections for a while). Facts are gathered afresh on next use.
   */
  async reconnect(timeoutMs = 300_000, intervalMs = 2_000): Promise<void> {
    await this.transport.close().catch(() => undefined);
    this.#facts = undefined;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.transport.connect();
        await this.transport.exec(sh`true`, { timeoutMs: 10_000 });
        return;
      } catch (error) {
        await this.transport.close().catch(() => undefined);
        if (!(error instanceof TransportError || error instanceof CommandTimeoutError) || Date.now() + intervalMs > deadline) {
          throw new TransportError(`${this.name} did not come back within ${Math.round(timeoutMs / 1000)} s: ${error instanceof Error ? error.message : String(error)}`, { host: this.name, cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    }
  }

  /** Facts, gathered on first use and kept for the run. */
  facts(): Promise<Facts> {
    this.#facts ??= this.exec(FACTS_COMMAND, { become: false }).then((result) => parseFacts(result.stdout));
    return this.#facts;
  }

  /**
   * Makes every read in `probes` in one round trip and keeps the answers for `cached`. Reads that
   * are already cached are not repeated. A batch that fails is ignored: each task then reads for itself.
   */
  async prefetch(probes: readonly Probe[]): Promise<void> {
    const wanted = [...new Map(probes.map((p) => [probeKey(p), p])).values()].filter((p) => !this.#probed.has(probeKey(p)));
    if (wanted.length === 0) return;
    const result = await this.exec(probeScript(wanted));
    if (result.code !== 0) return;
    for (const [index, answer] of parseProbeOutput(result.stdout, wanted)) this.#probed.set(probeKey(wanted[index]!), answer);
  }

  /** A prefetched answer, or undefined when the read must be made now. */
  cached(probe: Probe): ProbeAnswer | undefined {
    return this.#probed.get(probeKey(probe));
  }

  /** Forgets prefetched answers: called before anything on the host changes. */
  invalidate(): void {
    this.#probed.clear();
  }

  /** Runs a command; a non-zero exit is returned, not thrown. Transport failures throw TransportError. */
  async exec(command: Command, options: RunOptions = {}): Promise<RunResult> {
    const { wrapped, input } = await this.#escalate(command, options);
    const secrets = [...command.secrets, ...(this.become.password ? [this.become.password] : [])];
    if (options.stdin instanceof Secret) secrets.push(options.stdin);
    let result: ExecResult;
    try {
      result = await this.transport.exec(wrapped, { ...input, timeoutMs: options.timeoutMs ?? this.commandTimeoutMs });
    } catch (error) {
      if (error instanceof CapstanError) {
        error.host ??= this.name;
        throw error;
      }
      throw new TransportError(redact(String(error), secrets), { host: this.name, cause: error });
    }
    return {
      code: result.code,
      stdout: redact(result.stdout.toString('utf8'), secrets),
      stderr: redact(result.stderr.toString('utf8'), secrets),
      bytes: result.stdout,
    };
  }

  /** Runs a command that must succeed; throws CommandError with its stderr otherwise. */
  async run(command: Command, options: RunOptions = {}): Promise<RunResult> {
    const result = await this.exec(command, options);
    if (result.code !== 0) {
      const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-5).join('\n');
      throw new CommandError(
        `command failed (${result.code === null ? 'killed by a signal' : `exit ${result.code}`}): ${command.display}${detail ? `\n${detail}` : ''}`,
        command.display,
        result.code,
        result.stderr,
        { host: this.name },
      );
    }
    return result;
  }

  /** The file's bytes, or null when it does not exist. */
  async readFile(path: string): Promise<Buffer | null> {
    const result = await this.exec(sh`if [ -e ${path} ]; then exec cat -- ${path}; else exit ${MISSING}; fi`);
    if (result.code === MISSING) return null;
    if (result.code !== 0) throw new CommandError(`cannot read ${path}: ${result.stderr.trim()}`, `cat ${path}`, result.code, result.stderr, { host: this.name });
    return result.bytes;
  }

  async readText(path: string): Promise<string | null> {
    const bytes = await this.readFile(path);
    return bytes === null ? null : bytes.toString('utf8');
  }

  /** lstat: a symlink is reported as such, not followed. */
  async stat(path: string): Promise<FileStat | null> {
    const result = await this.exec(
      sh`if [ -e ${path} ] || [ -L ${path} ]; then exec stat -c ${STAT_FORMAT} -- ${path}; else exit ${MISSING}; fi`,
    );
    if (result.code === MISSING) return null;
    if (result.code !== 0) throw new CommandError(`cannot stat ${path}: ${result.stderr.trim()}`, `stat ${path}`, result.code, result.stderr, { host: this.name });
    return parseStat(result.stdout);
  }

  /**
   * Writes a whole file atomically (see ATOMIC_WRITE). Secret content is sent on stdin, never in argv,
   * and is redacted from anything the write prints. With `options.validate`, the command it builds for
   * the temp file runs before the rename; when it refuses the content (non-zero exit) the target is
   * untouched, the temp file removed, and this throws a CommandError with the path, the command's exit
   * code and its stderr (or stdout when stderr is empty).
   */
  async writeFile(path: string, content: string | Buffer | Secret, options: WriteOptions = {}): Promise<void> {
    const bytes = content instanceof Secret ? Buffer.from(content.reveal()) : Buffer.from(content);
    const sum = createHash('sha256').update(bytes).digest('hex');
    const temp = tempPathBeside(path);
    const validate = options.validate?.(temp);
    const command = sh`sh -c ${ATOMIC_WRITE} capstan-write ${path} ${options.mode ?? ''} ${options.owner ?? ''} ${options.group ?? ''} ${bytes.length} ${sum} ${options.backup ? '1' : '0'} ${temp} ${validate ? asArgument(validate) : ''}`;
    const secrets = content instanceof Secret ? [...command.secrets, content] : command.secrets;
    const result = await this.exec(new Command(command.text, `write ${path}`, secrets), { stdin: bytes });
    const refusal = validate && result.code === VALIDATION_REFUSED ? REFUSAL_LINE.exec(result.stderr) : null;
    if (validate && refusal) {
      const code = Number(refusal[1]);
      const stderr = result.stderr.slice(0, refusal.index).trim();
      const output = stderr || result.stdout.trim();
      throw new CommandError(
        `${path} not replaced: the new content failed validation (exit ${code})${output ? `\n${output}` : ''}`,
        validate.display,
        code,
        stderr,
        { host: this.name },
      );
    }
    if (result.code !== 0) {
      throw new CommandError(`cannot write ${path}: ${result.stderr.trim() || `exit ${result.code}`}`, `write ${path}`, result.code, result.stderr, { host: this.name });
    }
  }

  /** Wraps a command in sudo when becoming another user, deciding once whether sudo wants a password. */
  async #escalate(command: Command, options: RunOptions): Promise<{ wrapped: Command; input: Pick<ExecOptions, 'stdin' | 'dialogue'> }> {
    const stdin = options.stdin instanceof Secret ? options.stdin.reveal() : options.stdin;
    const plain = stdin === undefined ? {} : { stdin };
    const wanted = options.become ?? this.become.enabled;
    if (!wanted || this.loginUser === this.become.user) return { wrapped: command, input: plain };
    if (!(await this.#needsPassword())) {
      return { wrapped: sh`sudo -n -H -u ${this.become.user} -- sh -c ${asArgument(command)}`, input: plain };
    }
    const password = this.become.password;
    if (!password) {
      throw new InputError(`sudo on ${this.name} asks for a password: pass -K (--ask-become-pass) or set ansible_become_password`, { host: this.name });
    }
    // The password goes out only when sudo prints this command's random prompt, and stdin only once the
    // command runs: sudo that does not ask (credentials cached since the check, NOPASSWD for this command)
    // would otherwise hand the password line to the command as its input.
    const dialogue = new SudoPrompt(password.reveal(), stdin);
    const inner = asArgument(new Command(`${dialogue.readyCommand}; ${command.text}`, command.display, command.secrets));
    const text = sh`sudo -S -p ${dialogue.prompt} -H -u ${this.become.user} -- sh -c ${inner}`.text;
    const display = sh`sudo -S -p ${'[capstan-sudo-prompt]'} -H -u ${this.become.user} -- sh -c ${asArgument(command)}`.display;
    return { wrapped: new Command(text, display, command.secrets), input: { dialogue } };
  }

  #needsPassword(): Promise<boolean> {
    this.#sudoNeedsPassword ??= this.transport
      .exec(sh`sudo -n true`, { timeoutMs: 30_000 })
      .then((result) => result.code !== 0);
    return this.#sudoNeedsPassword;
  }
}
