import { expect } from 'chai';
import { mkdtempSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAB_USER_PASSWORD } from '../../runner/lab/index.js';
import { LAB_PASSWORD, secretsIn, TEST_SECRETS, type LoggedRun } from '../helpers/cli.js';
import { assertNoSecretsLeaked, leaksOf } from '../helpers/secrets-scan.js';

// The scan of every CLI run of the process runs in a root hook (test/helpers/root-hooks.ts), after
// all tests; these test the scanner itself.
describe('secrets scan (the scanner the root hook runs after every test)', () => {
  const run: LoggedRun = { args: ['run', 'p.ts'], code: 0, signal: null, stdout: '', stderr: '', retryDir: '/r', retryFiles: {}, runLogs: {} };

  it("knows the secrets and tells the lab's paths from the lab password", () => {
    expect(LAB_PASSWORD).to.equal(LAB_USER_PASSWORD);
    expect(secretsIn(`sudo password is ${LAB_USER_PASSWORD}\n`)).to.deep.equal([LAB_USER_PASSWORD]);
    expect(secretsIn(`token=${TEST_SECRETS.joinToken}`)).to.deep.equal([TEST_SECRETS.joinToken]);
    expect(secretsIn(`${TEST_SECRETS.fileContent}\n`)).to.deep.equal([TEST_SECRETS.fileContent]);
    // The lab directory (/var/tmp/capstan-lab…) and the user name "capstan" are not the password.
    expect(secretsIn('known_hosts /var/tmp/capstan-lab-7/known_hosts:3 has SHA256:x; user capstan; /var/tmp/capstan-lab/id_ed25519')).to.deep.equal([]);
    expect(secretsIn(`"/var/tmp/capstan-lab/x" and then ${LAB_USER_PASSWORD}`)).to.deep.equal([LAB_USER_PASSWORD]);
  });

  it('reads the run logs and retry files, not only what was printed', () => {
    expect(leaksOf({ ...run, runLogs: { '/runs/x.jsonl': `{"line":"token ${TEST_SECRETS.joinToken}"}\n` } })).to.deep.equal([
      `capstan run p.ts: run log /runs/x.jsonl holds ${JSON.stringify(TEST_SECRETS.joinToken)}`,
    ]);
    expect(leaksOf({ ...run, retryFiles: { '/r/p.retry': `node1\n${LAB_USER_PASSWORD}\n` } })).to.deep.equal([`capstan run p.ts: retry file /r/p.retry holds ${JSON.stringify(LAB_USER_PASSWORD)}`]);
    expect(leaksOf({ ...run, runLogs: { '/runs/x.jsonl': '{"line":"token ***"}\n' } })).to.deep.equal([]);
  });

  it('fails on a hit, keeping the log; under CI, fails on a scan of nothing when secret-handling tests ran; removes a clean log', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capstan-scan-'));
    const log = join(dir, 'runs.jsonl');
    writeFileSync(log, `${JSON.stringify({ ...run, stdout: `password: ${LAB_USER_PASSWORD}\n` })}\n`);
    expect(() => assertNoSecretsLeaked({ handlesSecrets: false, ci: false }, log)).to.throw(`secrets scan: 1 hits in ${log}:\ncapstan run p.ts (stdout): ${JSON.stringify(LAB_USER_PASSWORD)}`);
    expect(existsSync(log)).to.equal(true);
    const empty = join(dir, 'none.jsonl');
    expect(() => assertNoSecretsLeaked({ handlesSecrets: true, ci: true }, empty)).to.throw(`secrets scan: no CLI run recorded in ${empty}`);
    expect(assertNoSecretsLeaked({ handlesSecrets: true, ci: false }, empty).runs).to.equal(0);
    writeFileSync(log, `${JSON.stringify({ ...run, stdout: 'ok\n' })}\n`);
    expect(() => assertNoSecretsLeaked({ handlesSecrets: true, ci: true }, log)).to.throw('secrets scan: no CLI run with -K or the secrets playbook was scanned');
    writeFileSync(log, `${JSON.stringify({ ...run, args: ['run', 'secrets.ts', '-K'], stdout: 'ok\n' })}\n`);
    expect(assertNoSecretsLeaked({ handlesSecrets: true, ci: true }, log)).to.include({ runs: 1, withSecrets: 1, bytes: 3 });
    expect(existsSync(log)).to.equal(false);
  });
});
