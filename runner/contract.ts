/**
 * The contract between tasks and hosts: what a command returns, how it is run, what a file looks
 * like, how it is written, and the reads a task declares. Types only, so that the host, the probe
 * batcher, the task context and every task family depend on this file and not on one another.
 */
import type { Command } from './quote.js';
import type { Secret } from './secret.js';

/** Output of a command on a host, decoded, with secrets already redacted from stdout/stderr text. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The raw bytes of stdout (for binary file reads); not redacted. */
  bytes: Buffer;
}

export interface RunOptions {
  stdin?: string | Buffer | Secret;
  timeoutMs?: number;
  /** Run as root through sudo when the login user is not root. Defaults to the host's become setting. */
  become?: boolean;
}

export interface FileStat {
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Octal permission bits, four digits: "0644". */
  mode: string;
  owner: string;
  group: string;
  size: number;
}

export interface WriteOptions {
  /** "0644"; default: keep the existing file's mode, or 0644 for a new file. */
  mode?: string;
  /** Default: keep the existing file's owner, or the (become) user for a new file. */
  owner?: string;
  group?: string;
  /** Copy the current file to `<path>.<timestamp>.capstan-backup` first. */
  backup?: boolean;
  /**
   * A check of the new content before it replaces the file (Ansible's `validate`): called with the
   * path of the temp file, it gives the command to run on the host (as the write's user, root when
   * becoming) once that file holds the whole content with its final mode and owner, just before the
   * rename. A non-zero exit removes the temp file, leaves the target as it was, and fails the write
   * with a CommandError naming the path, the exit code and the command's stderr (or its stdout when
   * stderr is empty). Capstan never puts the content in the error, and Secret content is redacted
   * from the command's output.
   *
   * @example const options: WriteOptions = { mode: '0644', validate: (path) => sh`haproxy -c -f ${path}` };
   */
  validate?: (path: string) => Command;
}

/**
 * A read a task's check will make, declared up front so the engine can make the reads of all of a
 * host's tasks in ONE round trip (a converged run then costs about one round trip per host).
 */
export type Probe = { kind: 'read'; path: string } | { kind: 'stat'; path: string } | { kind: 'exec'; command: Command };

export type ProbeAnswer =
  | { kind: 'read'; content: Buffer | null }
  | { kind: 'stat'; stat: FileStat | null }
  | { kind: 'exec'; result: RunResult };
