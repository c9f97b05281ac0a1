import { expect } from 'chai';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { LAB_USER_PASSWORD } from '../../runner/lab/index.js';
import { skipOutsideCi } from '../helpers/skip.js';
import { ALL_TEST_SECRETS, CLI_OUTPUT_LOG, LAB_PASSWORD, secretsIn, TEST_SECRETS, type LoggedRun } from '../helpers/cli.js';

/**
 * Runs last (mocha loads files in name order, integration after unit): every `capstan` run that any
 * test of this process made through test/helpers/cli.ts was logged with its stdout, stderr and the
 * retry files and run logs it left; none of them may contain a known test secret — the lab user's sudo password,
 * the Secret file content and the join token of test/fixtures/playbooks/faults/secrets.ts.
 */
/** Every known test secret in what one logged run printed or left in its retry files and run logs. */
function leaksOf(run: LoggedRun): string[] {
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

describe('zz: secrets scan of everything the suite\'s CLI runs printed or wrote', () => {
  it('the scan knows the secrets and tells the lab\'s paths from the lab password', () => {
    expect(LAB_PASSWORD).to.equal(LAB_USER_PASSWORD);
    expect(secretsIn(`sudo password is ${LAB_USER_PASSWORD}\n`)).to.deep.equal([LAB_USER_PASSWORD]);
    expect(secretsIn(`token=${TEST_SECRETS.joinToken}`)).to.deep.equal([TEST_SECRETS.joinToken]);
    expect(secretsIn(`${TEST_SECRETS.fileContent}\n`)).to.deep.equal([TEST_SECRETS.fileContent]);
    // The lab directory (/var/tmp/capstan-lab…) and the user name "capstan" are not the password.
    expect(secretsIn('known_hosts /var/tmp/capstan-lab-7/known_hosts:3 has SHA256:x; user capstan; /var/tmp/capstan-lab/id_ed25519')).to.deep.equal([]);
    expect(secretsIn(`"/var/tmp/capstan-lab/x" and then ${LAB_USER_PASSWORD}`)).to.deep.equal([LAB_USER_PASSWORD]);
  });

  it('the scan reads the run logs, not only what was printed', () => {
    const run: LoggedRun = { args: ['run', 'p.ts'], code: 0, signal: null, stdout: '', stderr: '', retryDir: '/r', retryFiles: {}, runLogs: { '/runs/x.jsonl': `{"line":"token ${TEST_SECRETS.joinToken}"}\n` } };
    expect(leaksOf(run)).to.deep.equal([`capstan run p.ts: run log /runs/x.jsonl holds ${JSON.stringify(TEST_SECRETS.joinToken)}`]);
    expect(leaksOf({ ...run, runLogs: { '/runs/x.jsonl': '{"line":"token ***"}\n' } })).to.deep.equal([]);
  });

  it('no CLI run of this test process printed a secret or wrote one to a retry file or a run log', function () {
    if (!existsSync(CLI_OUTPUT_LOG)) skipOutsideCi(this, `no CLI run of this process was logged to ${CLI_OUTPUT_LOG} (this file alone)`);
    const runs = readFileSync(CLI_OUTPUT_LOG, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as LoggedRun);
    const hits = runs.flatMap(leaksOf);
    const bytes = runs.reduce((n, run) => n + [run.stdout, run.stderr, ...Object.values(run.retryFiles ?? {}), ...Object.values(run.runLogs ?? {})].reduce((m, t) => m + t.length, 0), 0);
    const withSecrets = runs.filter((run) => run.args.includes('-K') || run.args.some((a) => a.includes('secrets'))).length;
    const logs = runs.reduce((n, run) => n + Object.keys(run.runLogs ?? {}).length, 0);
    console.log(`      scanned ${runs.length} CLI runs (${withSecrets} with -K or the secrets playbook) and ${logs} run logs, ${(bytes / 1024).toFixed(0)} KiB, for ${ALL_TEST_SECRETS.length} secrets: ${hits.length} hits`);
    // A scan of nothing proves nothing: the log must hold runs with output, and the whole suite (CI)
    // runs the ones that handle secrets.
    expect(runs.length, `no CLI run recorded in ${CLI_OUTPUT_LOG}`).to.be.greaterThan(0);
    expect(bytes, 'the CLI runs printed nothing to scan').to.be.greaterThan(0);
    if (process.env.CI) expect(withSecrets, 'no CLI run with -K or the secrets playbook was scanned').to.be.greaterThan(0);
    expect(hits, hits.join('\n')).to.deep.equal([]);
    rmSync(CLI_OUTPUT_LOG, { force: true }); // tens of MB (--json carries whole-file diffs); kept only when the scan fails
  });
});
