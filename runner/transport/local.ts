import { spawn } from 'node:child_process';
import type { Command } from '../quote.js';
import { CommandTimeoutError, TransportError } from '../errors.js';
import type { ExecOptions, ExecResult, Transport, TransportUsage } from './types.js';

/** Runs commands on the controller itself through /bin/sh (`ansible_connection: local`). */
export class LocalTransport implements Transport {
  readonly usesLoginShell = false;
  /** No connection; each command is a /bin/sh process, counted as a session. */
  readonly usage: TransportUsage = { connections: 0, sessions: 0, commands: 0 };

  constructor(private readonly name: string) {}

  async connect(): Promise<void> {}

  exec(command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      this.usage.sessions++;
      this.usage.commands++;
      const child = spawn('/bin/sh', ['-c', command.text], { stdio: ['pipe', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let timer: NodeJS.Timeout | undefined;
      if (options.timeoutMs) {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new CommandTimeoutError(`command timed out after ${options.timeoutMs! / 1000}s: ${command.display}`, { host: this.name }));
        }, options.timeoutMs);
      }
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      const dialogue = options.dialogue;
      child.stderr.on('data', (chunk: Buffer) => stderr.push(dialogue ? dialogue.stderr(chunk) : chunk));
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new TransportError(`cannot run /bin/sh: ${error.message}`, { host: this.name }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (dialogue) stderr.push(dialogue.end());
        const result: ExecResult = { stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), code };
        if (signal) result.signal = signal;
        resolve(result);
      });
      // A command that does not read its stdin closes the pipe early: that is not an error.
      child.stdin.on('error', () => {});
      if (dialogue) dialogue.start({ write: (data) => child.stdin.write(data), end: (data) => child.stdin.end(data) });
      else child.stdin.end(options.stdin ?? '');
    });
  }

  async close(): Promise<void> {}
}
