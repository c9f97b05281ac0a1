/**
 * The one place that decides Capstan's exit codes, shared by `run`, `exec` and the CLI's error path.
 * They are Ansible's, so scripts and CI jobs written for ansible-playbook read them the same way.
 */
import { InputError, PlaybookError } from './errors.js';

export const EXIT = {
  ok: 0,
  /** Bad input (arguments, inventory, playbook), found before any host changed. */
  badInput: 1,
  /** A task or command failed on a host, or the run stopped on an error. */
  failed: 2,
  /** A host could not be reached (and none failed otherwise: unreachable wins, as in Ansible). */
  unreachable: 4,
  /** The run was interrupted (Ctrl-C) and stopped cleanly: Ansible's "User interrupted execution". */
  interrupted: 99,
  /** Killed by a second Ctrl-C / SIGTERM while stopping: the shell's 128 + signal number. */
  sigint: 130,
  sigterm: 143,
} as const;

/** What a run or an exec came to, host by host. */
export interface Outcome {
  interrupted?: boolean;
  anyUnreachable: boolean;
  /** A host failed, or the run stopped early (max_fail_percentage, any_errors_fatal). */
  anyFailed: boolean;
  /**
   * The playbook stopped on bad input it found on the hosts (an upgrade's refused target) before
   * anything changed: exit 1, as for bad input found before contacting them.
   */
  refusedUnchanged?: boolean;
}

/** The exit code of a finished run or exec. */
export function exitCodeOf(outcome: Outcome): number {
  if (outcome.interrupted) return EXIT.interrupted;
  if (outcome.anyUnreachable) return EXIT.unreachable;
  if (outcome.refusedUnchanged) return EXIT.badInput;
  return outcome.anyFailed ? EXIT.failed : EXIT.ok;
}

/** The exit code for an error that ended a command before (or instead of) a run's recap. */
export function exitCodeOfError(error: unknown): number {
  if (error instanceof InputError || error instanceof PlaybookError) return EXIT.badInput;
  const code = (error as { code?: string }).code;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return EXIT.badInput;
  return EXIT.failed;
}
