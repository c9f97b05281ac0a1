import { Command, sh } from './quote.js';

/** Quoted as one argument by `sh`: a quote, a backslash before a quote (an escape inside fish's single quotes), two backslashes, `$`, `!`. */
const QUOTING_SAMPLE = String.raw`it's \' \\ $HOME !`;

/** The line POSIX_SHELL_PROBE prints under sh, dash, bash, zsh, ksh or busybox sh. */
const POSIX_ANSWER = `capstan-posix-shell|42|${QUOTING_SAMPLE}`;

/**
 * The first command sent to a host over SSH. sshd runs every command through the login user's shell,
 * and every command Capstan builds is POSIX sh text (runner/quote.ts): under fish, csh or tcsh its
 * quoting means something else (fish reads `\'` inside single quotes, csh expands `!` and refuses
 * `$((…))`), so a command could run with other arguments than the ones written. This one only prints,
 * through arithmetic expansion and a `'\''` quote, a line that a POSIX shell alone gets right.
 */
export const POSIX_SHELL_PROBE: Command = sh`printf '%s|%s|%s\\n' capstan-posix-shell "$((6 * 7))" ${QUOTING_SAMPLE}`;

/**
 * Asks for the login shell's path in words every shell (sh, fish, csh, tcsh) reads alike, for the
 * message when POSIX_SHELL_PROBE was not answered right. sshd sets SHELL to the user's login shell.
 */
export const LOGIN_SHELL_QUERY = new Command('echo $SHELL', 'echo $SHELL');

/**
 * True when the probe's output shows a POSIX shell ran it. A line printed by a shell start-up file
 * (a .bashrc that echoes) does not count against the shell: the answer must be one of the lines.
 */
export function isPosixShellAnswer(code: number | null, stdout: string): boolean {
  return code === 0 && stdout.split(/\r?\n/).includes(POSIX_ANSWER);
}

/**
 * The message for a host whose login shell is not POSIX. `shellOutput` is what LOGIN_SHELL_QUERY
 * printed (the shell's path, or nothing when even that failed, as under nologin).
 */
export function nonPosixShellMessage(host: string, user: string, shellOutput: string): string {
  const shell = shellOutput.trim().split(/\s+/)[0] ?? '';
  const which = /^\/[\w./+-]+$/.test(shell) ? shell : 'unknown (it did not print its path)';
  return (
    `host ${host}: the login shell of user ${user} is not a POSIX shell (login shell: ${which}); ` +
    `Capstan sends commands as POSIX sh text, which fish and csh/tcsh read differently. ` +
    `Give ${user} a POSIX login shell (chsh -s /bin/bash ${user}) or connect as another user`
  );
}
