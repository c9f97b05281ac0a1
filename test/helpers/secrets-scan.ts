import { existsSync, readFileSync, rmSync } from 'node:fs';
import { ALL_TEST_SECRETS, CLI_OUTPUT_LOG, secretsIn, type LoggedRun } from './cli.js';

/**
 * The secrets scan: every `capstan` run a test of this process made through test/helpers/cli.ts
 * was logged with its stdout, stderr and the retry files and run logs it left; none of them may
 * hold a known test secret — the lab user's sudo password, the Secret file content and the join
 * token of test/fixtures/playbooks/faults/secrets.ts. It runs once, after every test of the process
 * (test/helpers/root-hooks.ts), whatever the order mocha loaded the files in.
 */

/** Every known test secret in what one logged run printed or left in its retry files and run logs. */
export function leaksOf(run: LoggedRun): string[] {
  const hits: string[] = [];
  const where = `capstan ${run.args.join(' ')}`;
  for (const [stream, text] of [['stdout', run.stdout], ['stderr', run.stderr]] as const) {
    for (const secret of secretsIn(text)) {
      const at = text.indexOf(secret);
      hits.push(`${where} (${stream}): ${JSON.stringify(secret)} in …${text.slice(Math.max(0, at - 80), at + secret.length + 40)}…`);
    }
  }
  for (const [file, text] of Object.entries(run.retryFiles ?? {})) {
    for (const secret of secretsIn(text)) hits.push(`${where}: retry file ${file} holds ${JSON.stringify(secret)}`);
  }
  for (const [file, text] of Object.entries(run.runLogs ?? {})) {
    for (const secret of secretsIn(text)) hits.push(`${where}: run log ${file} holds ${JSON.stringify(secret)}`);
  }
  return hits;
}

/** What one scan of the log found. */
export interface ScanResult {
  runs: number;
  /** Runs given -K or running the secrets playbook: the ones that handle secrets. */
  withSecrets: number;
  runLogs: number;
  bytes: number;
  hits: string[];
}

/** Scans the runs logged in `log` (none when it does not exist). */
export function scanLoggedRuns(log: string = CLI_OUTPUT_LOG): ScanResult {
  const runs = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as LoggedRun) : [];
  const texts = (run: LoggedRun) => [run.stdout, run.stderr, ...Object.values(run.retryFiles ?? {}), ...Object.values(run.runLogs ?? {})];
  return {
    runs: runs.length,
    withSecrets: runs.filter((run) => run.args.includes('-K') || run.args.some((a) => a.includes('secrets'))).length,
    runLogs: runs.reduce((n, run) => n + Object.keys(run.runLogs ?? {}).length, 0),
    bytes: runs.reduce((n, run) => n + texts(run).reduce((m, t) => m + t.length, 0), 0),
    hits: runs.flatMap(leaksOf),
  };
}

/**
 * The scan after the whole process: no hit, ever. A scan of nothing proves nothing, so when the
 * files that run the CLI with secrets (`handlesSecrets`) were part of this process under CI, it
 * must have scanned runs with output, some of them with -K or the secrets playbook. The log (tens
 * of MB: --json carries whole-file diffs) is removed after a clean scan, kept when it fails.
 */
export function assertNoSecretsLeaked(options: { handlesSecrets: boolean; ci: boolean }, log: string = CLI_OUTPUT_LOG): ScanResult {
  const result = scanLoggedRuns(log);
  if (result.hits.length > 0) throw new Error(`secrets scan: ${result.hits.length} hits in ${log}:\n${result.hits.join('\n')}`);
  if (options.ci && options.handlesSecrets) {
    if (result.runs === 0) throw new Error(`secrets scan: no CLI run recorded in ${log}`);
    if (result.bytes === 0) throw new Error('secrets scan: the CLI runs printed nothing to scan');
    if (result.withSecrets === 0) throw new Error('secrets scan: no CLI run with -K or the secrets playbook was scanned');
  }
  rmSync(log, { force: true });
  return result;
}

/** The summary line the hook prints. */
export function describeScan(result: ScanResult): string {
  return `secrets scan: ${result.runs} CLI runs (${result.withSecrets} with -K or the secrets playbook) and ${result.runLogs} run logs, ${(result.bytes / 1024).toFixed(0)} KiB, for ${ALL_TEST_SECRETS.length} secrets: ${result.hits.length} hits`;
}
