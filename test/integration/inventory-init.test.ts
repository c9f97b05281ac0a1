import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LabState } from '../../runner/lab/index.js';
import { capstan, recapOf } from '../helpers/cli.js';
import { skipUnlessLabSupported, withLab } from '../helpers/lab.js';

describe('capstan inventory init → capstan run --check on lab hosts, with no edit of the file', function () {
  this.timeout(600_000);
  let lab: LabState;
  let dir: string;

  before(async function () {
    skipUnlessLabSupported(this);
    lab = await withLab(1);
    dir = mkdtempSync(join(tmpdir(), 'capstan-inventory-init-lab-'));
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('single-node on one fresh host: the check runs on cp-1 and fails nowhere', async () => {
    const file = join(dir, 'mine.yaml');
    const init = await capstan(['inventory', 'init', '--topology', 'single-node', '--control-plane', lab.hosts[0]!.address, '--user', 'root', '-o', file]);
    expect(init.code, init.stderr).to.equal(0);
    // How the user reaches the lab host (the lab's key and known_hosts) is the user's SSH setup, not the inventory's.
    const ssh = ['-e', `ansible_ssh_private_key_file=${lab.keyPath}`, '-e', `capstan_known_hosts_file=${lab.knownHostsPath}`];
    const check = await capstan(['run', 'playbooks/single-node.ts', '-i', file, '--check', '--json', ...ssh]);
    expect(check.code, check.stderr + check.stdout.slice(-3000)).to.equal(0);
    const recap = recapOf(check.stdout);
    expect(Object.keys(recap)).to.deep.equal(['cp-1']);
    expect(recap['cp-1']).to.include({ failed: 0, unreachable: false });
    expect(recap['cp-1']!.changed).to.be.greaterThan(0); // a fresh host: the check finds work to do
  });
});
