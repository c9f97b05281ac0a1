import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { LAB_USER, LAB_USER_PASSWORD, type LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, recapOf, eventsOf } from '../helpers/cli.js';

describe('become: sudo with a password', function () {
  this.timeout(300_000);
  let lab: LabState;
  let inventory: string;

  before(async () => {
    lab = await withLab(2);
    inventory = `/tmp/capstan-become-${process.pid}.yaml`;
    // Log in as the unprivileged lab user, whose sudo asks for a password.
    writeFileSync(
      inventory,
      `all:\n  vars:\n    ansible_user: ${LAB_USER}\n    ansible_become: true\n    ansible_ssh_private_key_file: ${lab.keyPath}\n    capstan_known_hosts_file: ${lab.knownHostsPath}\n  hosts:\n${lab.hosts.map((h) => `    ${h.name}:\n      ansible_host: ${h.address}\n`).join('')}`,
    );
  });

  it('-K reads the password (not echoed, never printed) and writes root-owned files through sudo', async () => {
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '-K', '--json'], { input: `${LAB_USER_PASSWORD}\n` });
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    for (const h of Object.values(recapOf(result.stdout))) expect(h.failed).to.equal(0);
    const owner = await sshToLab(lab, 'node1', 'stat -c "%U:%G %a" /etc/capstan-demo/motd');
    expect(owner.stdout).to.equal('root:root 644\n');
    expect(result.stdout + result.stderr).not.to.include(LAB_USER_PASSWORD);
  });

  it('without a password it fails the hosts with a clear message', async () => {
    const result = await capstan(['exec', '-i', inventory, 'all', '-b', '--', 'id -u']);
    expect(result.code).to.equal(2);
    expect(result.stdout).to.include('sudo on node1 asks for a password: pass -K (--ask-become-pass) or set ansible_become_password');
  });

  it('a wrong password fails without ever showing it', async () => {
    const wrong = 'Wr0ng-pa$$word';
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '-K', '--json'], { input: `${wrong}\n` });
    expect(result.code).to.equal(2);
    const failed = eventsOf(result.stdout).filter((e) => e.type === 'task' && e.status === 'failed');
    expect(failed.length).to.be.greaterThan(0);
    expect(result.stdout + result.stderr).not.to.include(wrong);
  });

  it('ansible_become_password from the inventory works too', async () => {
    const withPassword = inventory.replace('.yaml', '-pw.yaml');
    const { readFileSync } = await import('node:fs');
    writeFileSync(withPassword, readFileSync(inventory, 'utf8').replace('    ansible_become: true\n', `    ansible_become: true\n    ansible_become_password: ${LAB_USER_PASSWORD}\n`));
    const result = await capstan(['exec', '-i', withPassword, 'all', '--', 'id -u']);
    expect(result.code, result.stdout).to.equal(0);
    expect(result.stdout).to.include('node1 | CHANGED | rc=0 >>\n0\n');
    expect(result.stdout).not.to.include(LAB_USER_PASSWORD);
  });
});
