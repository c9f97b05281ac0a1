import { assertNoSecretsLeaked, describeScan } from './secrets-scan.js';

/** Test files whose CLI runs handle secrets (-K, the secrets playbook): with them in the run, CI wants a scan of something. */
const SECRET_HANDLING_FILES = ['test/integration/security.test.ts', 'test/integration/become.test.ts'];

function filesOf(suite: Mocha.Suite): string[] {
  return [...(suite.file ? [suite.file] : []), ...suite.suites.flatMap(filesOf)];
}

/**
 * Mocha root hooks (loaded by .mocharc.cjs): the secrets scan runs after every test of the process,
 * not in a file named to sort last.
 */
export const mochaHooks = {
  afterAll(this: Mocha.Context): void {
    const root = this.test?.parent;
    const files = root ? filesOf(root) : [];
    const handlesSecrets = SECRET_HANDLING_FILES.some((file) => files.some((ran) => ran.endsWith(file)));
    const result = assertNoSecretsLeaked({ handlesSecrets, ci: Boolean(process.env.CI) });
    if (result.runs > 0) console.log(`\n  ${describeScan(result)}`);
  },
};
