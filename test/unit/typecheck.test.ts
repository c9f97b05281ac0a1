import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { typecheckPlaybook } from '../../runner/typecheck.js';

const REPO = resolve(import.meta.dirname, '../..');

describe('typecheckPlaybook: a playbook and the files it imports are type-checked before contact, and cached', function () {
  this.timeout(60_000);
  let dir: string;
  let cache: string;
  // A playbook outside any tsconfig.json (the defaults apply) that imports a module of its user's.
  const playbook = () => join(dir, 'site.ts');
  const writeHelper = (content: string) => writeFileSync(join(dir, 'motd.ts'), `export const motd: string = ${content};\n`);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capstan-typecheck-'));
    cache = join(dir, 'cache');
    writeFileSync(
      playbook(),
      [
        `import { playbook } from '${REPO}/runner/index.js';`,
        `import { ensureFile } from '${REPO}/tasks/index.js';`,
        `import { motd } from './motd.js';`,
        '',
        `export default playbook('site', async ({ play }) => {`,
        `  await play('motd', 'all', [ensureFile({ path: '/etc/motd', content: motd })]);`,
        '});',
        '',
      ].join('\n'),
    );
    writeHelper("'hello\\n'");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('compiles on the first check, answers from the cache on the second', async () => {
    const first = await typecheckPlaybook(playbook(), cache);
    expect(first.cached).to.equal(false);
    expect(first.files).to.be.greaterThan(10); // the playbook, its helper, Capstan's runner and tasks, @types/node
    expect(await typecheckPlaybook(playbook(), cache)).to.deep.equal({ cached: true, files: 0 });
  });

  it('an edit of an imported user file invalidates the cache, and its type error is named by file:line:col', async () => {
    writeHelper('42');
    let error: Error | undefined;
    try {
      await typecheckPlaybook(playbook(), cache);
    } catch (caught) {
      error = caught as Error;
    }
    expect(error?.message).to.equal(
      `playbook ${playbook()} does not type-check (no host was contacted):\n  ${join(dir, 'motd.ts')}:1:14: Type 'number' is not assignable to type 'string'. (TS2322)`,
    );
    // A failed check is never cached: the same files fail again.
    let again: Error | undefined;
    await typecheckPlaybook(playbook(), cache).catch((caught: Error) => (again = caught));
    expect(again?.message).to.equal(error?.message);
  });

  it('once fixed, the playbook is checked again and then cached again', async () => {
    writeHelper("'fixed\\n'");
    expect((await typecheckPlaybook(playbook(), cache)).cached).to.equal(false);
    expect((await typecheckPlaybook(playbook(), cache)).cached).to.equal(true);
  });
});
