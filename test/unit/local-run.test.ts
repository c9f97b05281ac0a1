import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capstan, recapOf } from '../helpers/cli.js';

describe('run with ansible_connection=local (INI inventory, -e, --limit)', function () {
  this.timeout(60_000);
  let dir: string;
  let inventory: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capstan-local-'));
    inventory = join(dir, 'hosts.ini');
    writeFileSync(inventory, '[web]\nweb1 ansible_connection=local\nweb2 ansible_connection=local\n\n[web:vars]\ngroup_label=web\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('applies with per-host values, then reports changed=0', async () => {
    const first = await capstan(['run', 'test/fixtures/playbooks/local.ts', '-i', inventory, '-e', `dir=${dir}`, '--json']);
    expect(first.code, first.stderr).to.equal(0);
    expect(readFileSync(join(dir, 'web1.txt'), 'utf8')).to.equal('web1 in web\n');
    expect(readFileSync(join(dir, 'web2.txt'), 'utf8')).to.equal('web2 in web\n');
    expect(readFileSync(join(dir, 'shared.conf'), 'utf8')).to.equal('shared = yes\n');
    const recap = recapOf(first.stdout);
    // Both hosts edit the same local shared.conf: exactly one of them finds it missing.
    expect(recap.web1!.changed + recap.web2!.changed).to.be.oneOf([3, 4]);
    const second = await capstan(['run', 'test/fixtures/playbooks/local.ts', '-i', inventory, '-e', `dir=${dir}`, '--json']);
    expect(recapOf(second.stdout)).to.deep.equal({
      web1: { ok: 2, changed: 0, failed: 0, skipped: 0, unreachable: false },
      web2: { ok: 2, changed: 0, failed: 0, skipped: 0, unreachable: false },
    });
  });

  it('--limit narrows the hosts', async () => {
    const result = await capstan(['run', 'test/fixtures/playbooks/local.ts', '-i', inventory, '-e', `dir=${dir}`, '--limit', 'web2', '--json']);
    expect(Object.keys(recapOf(result.stdout))).to.deep.equal(['web2']);
  });

  it('a playbook error at planning names the playbook and exits 1', async () => {
    const result = await capstan(['run', 'test/fixtures/playbooks/local.ts', '-i', inventory]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal('capstan: playbook "local" threw while planning (before any host was contacted): pass -e dir=/some/dir\n');
  });
});
