import { posix } from 'node:path';
import type { FileStat, RunResult, WriteOptions } from '../../runner/contract.js';
import { parseFacts } from '../../runner/facts.js';
import type { Secret } from '../../runner/secret.js';
import type { ApplyContext } from '../../runner/task.js';

/** The temp file name the recording context hands to a write's validate (the real one is random). */
export const RECORDED_TEMP = '.capstan.0123456789abcdef';

export interface RecordedWrite {
  path: string;
  content: string | Buffer | Secret;
  options: WriteOptions;
}

/**
 * An ApplyContext on a host that is only a record: files come from `files`, every command succeeds
 * with empty output, and each change is logged in order as one line — `run <command>`,
 * `exec <command>`, or `write <path> <options>` followed, for a write with validate, by
 * `validate: <the command it builds for the temp file RECORDED_TEMP beside path>`. Tests compare
 * the whole log, so an extra, missing or reordered step fails them.
 */
export function recordingContext(files: Record<string, string> = {}): { ctx: ApplyContext; log: string[]; writes: RecordedWrite[] } {
  const log: string[] = [];
  const writes: RecordedWrite[] = [];
  const ok = (): RunResult => ({ code: 0, stdout: '', stderr: '', bytes: Buffer.alloc(0) });
  const ctx: ApplyContext = {
    host: { name: 'node', vars: {}, facts: parseFacts('hostname=node\narch=amd64\nosId=debian\ncodename=bookworm\n') },
    checkMode: false,
    pendingChanges: [],
    probe: async () => ok(),
    readFile: async (path) => (path in files ? Buffer.from(files[path]!) : null),
    readText: async (path) => files[path] ?? null,
    stat: async (path): Promise<FileStat | null> => (path in files ? { type: 'file', mode: '0644', owner: 'root', group: 'root', size: files[path]!.length } : null),
    run: async (command) => {
      log.push(`run ${command.display}`);
      return ok();
    },
    exec: async (command) => {
      log.push(`exec ${command.display}`);
      return ok();
    },
    writeFile: async (path, content, options = {}) => {
      const { validate, ...rest } = options;
      const shown = Object.entries(rest).map(([key, value]) => `${key}=${String(value)}`).join(' ');
      log.push(`write ${path}${shown ? ` ${shown}` : ''}${validate ? ` validate: ${validate(posix.join(posix.dirname(path), RECORDED_TEMP)).display}` : ''}`);
      writes.push({ path, content, options });
    },
    log: () => undefined,
    reconnect: async () => undefined,
    onHost: async (name) => {
      throw new Error(`no other host ${name} in this recording context`);
    },
  };
  return { ctx, log, writes };
}
