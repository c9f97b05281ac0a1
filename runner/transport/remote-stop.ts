import { randomBytes } from 'node:crypto';
import { Command, sh } from '../quote.js';

/**
 * The environment variable that marks the processes of one remote command. sshd starts every exec in
 * a session of its own (setsid), so the login shell that runs the command leads its process group; the
 * mark says which group is which command's, for a stop sent later through another session.
 */
export const COMMAND_MARK = 'CAPSTAN_COMMAND';

/** Seconds between TERM and KILL when a command is stopped: time for traps to clean up (temp files). */
export const STOP_GRACE_SECONDS = 5;

/** A fresh mark value: 16 random hex digits, unique per command. */
export function newCommandId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * `command` with its processes marked as `id` (an exported variable every child inherits). The mark
 * is a line of its own before the command, so any command text keeps its meaning; `display` is unchanged.
 */
export function markCommand(command: Command, id: string): Command {
  return new Command(`export ${COMMAND_MARK}=${id}\n${command.text}`, command.display, command.secrets);
}

/**
 * Stops the process groups of one marked command: TERM, then KILL for what is left after the grace
 * period. Only groups whose leader carries the mark are signalled, so a group that merely contains a
 * marked process (a daemon that a command started, then moved to a session of its own, carries the
 * mark too) is stopped only if it leads a group of its own, and no unrelated group is ever touched.
 * The leader's process group is the third field after the `(comm)` of /proc/PID/stat (no ps needed).
 * Run through `sh -c` so dash's `kill -SIG -PGID` is the one used, whatever the login shell.
 */
const STOP_SCRIPT = `id=$1 grace=$2
leaders() {
  for f in $(grep -laxzF "${COMMAND_MARK}=$id" /proc/[0-9]*/environ 2>/dev/null); do
    p=\${f#/proc/}; p=\${p%/environ}
    read -r stat < "/proc/$p/stat" 2>/dev/null || continue
    set -- \${stat##*) }
    [ "$3" = "$p" ] && echo "$p"
  done
}
groups=$(leaders)
[ -n "$groups" ] || exit 0
for g in $groups; do kill -TERM -"$g" 2>/dev/null; done
i=0
while [ "$i" -lt $((grace * 10)) ]; do
  alive=
  for g in $groups; do kill -0 -"$g" 2>/dev/null && alive=1; done
  [ -n "$alive" ] || exit 0
  sleep 0.1
  i=$((i + 1))
done
for g in $groups; do kill -KILL -"$g" 2>/dev/null; done
exit 0`;

/** The command that stops the marked command `id` (see STOP_SCRIPT). */
export function stopCommand(id: string, graceSeconds = STOP_GRACE_SECONDS): Command {
  return sh`sh -c ${STOP_SCRIPT} capstan-stop ${id} ${graceSeconds}`;
}
