import { spawn } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { quote } from '../../runner/quote.js';
import { CLI_OUTPUT_LOG, newRunsDir, readFilesIn, type LoggedRun } from './cli.js';

const BIN = fileURLToPath(new URL('../../runner/bin.mjs', import.meta.url));

/** What a run on a terminal printed (stdout and stderr together, as a terminal shows them), its exit code and its run logs (name → content). */
export interface TerminalResult {
  code: number | null;
  output: string;
  runLogs: Record<string, string>;
}

/**
 * Runs the real `capstan` CLI on a pseudo-terminal (util-linux `script`), as an operator at a
 * terminal would, and types `reply` (then Enter) once `prompt` has been printed. The output is
 * logged for the suite's secrets scan like every other CLI run.
 */
export async function capstanOnTerminal(args: string[], typing: { prompt: string; reply: string }, env: Record<string, string> = {}): Promise<TerminalResult> {
  const command = [process.execPath, BIN, ...args].map((word) => quote(word)).join(' ');
  const runsDir = newRunsDir();
  const child = spawn('script', ['-q', '-e', '-f', '-c', command, '/dev/null'], { env: { ...process.env, TERM: 'dumb', CAPSTAN_RUNS_DIR: runsDir, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let typed = false;
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    if (!typed && output.includes(typing.prompt)) {
      typed = true;
      child.stdin.write(`${typing.reply}\n`);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exit) => resolve(exit));
  });
  child.stdin.destroy();
  // A terminal ends lines with \r\n (and the echo of a typed Enter may add a \r): plain \n here.
  const normalized = output.replace(/\r+\n/g, '\n');
  const logged: LoggedRun = { args, code, signal: null, stdout: normalized, stderr: '', retryDir: '', retryFiles: {}, runLogs: readFilesIn(runsDir) };
  rmSync(runsDir, { recursive: true, force: true });
  appendFileSync(CLI_OUTPUT_LOG, `${JSON.stringify(logged)}\n`);
  return { code, output: normalized, runLogs: logged.runLogs };
}
