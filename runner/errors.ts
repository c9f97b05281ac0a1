/**
 * One error class per layer. Each carries the host and task it concerns, so the CLI can print
 * "host: task: message" without guessing, and decide the exit code (Ansible's: 1 bad input,
 * 2 a task failed, 4 a host unreachable).
 */
export class CapstanError extends Error {
  host?: string;
  task?: string;
  constructor(message: string, options: { host?: string; task?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    if (options.host !== undefined) this.host = options.host;
    if (options.task !== undefined) this.task = options.task;
  }
}

/** Bad input: inventory, playbook, CLI arguments, task parameters. Exit 1; no host touched. */
export class InputError extends CapstanError {
  /** file:line:column when the input came from a file. */
  location?: string;
  constructor(message: string, options: { location?: string; host?: string; task?: string; cause?: unknown } = {}) {
    super(options.location ? `${options.location}: ${message}` : message, options);
    if (options.location !== undefined) this.location = options.location;
  }
}

/** The host could not be reached or the connection broke. Exit 4. */
export class TransportError extends CapstanError {}

/**
 * A command did not finish within its timeout. The host may be fine (a hung command, not a dead
 * link), so this fails the task, not the connection: it is not a TransportError.
 */
export class CommandTimeoutError extends CapstanError {}

/** A remote command exited non-zero where success was required. */
export class CommandError extends CapstanError {
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    options: { host?: string; task?: string } = {},
  ) {
    super(message, options);
  }
}

/** A task failed (apply error, or drift left after apply: "did not converge"). Exit 2. */
export class TaskError extends CapstanError {}

/**
 * A check's refusal that no change earlier in the run can lift (a second cluster behind a running
 * endpoint, say). `--check` reports it as a failure even while earlier tasks are pending, where
 * other check errors become "would change (check could not run yet)".
 */
export class RefusalError extends CapstanError {}

/** The playbook itself failed (threw, or a play's failure policy stopped the run). */
export class PlaybookError extends CapstanError {}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
