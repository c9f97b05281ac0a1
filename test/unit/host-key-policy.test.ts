import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConnectionInputs, sshTarget, type ConnectionSettings } from '../../runner/connect.js';
import { InputError } from '../../runner/errors.js';
import type { InventoryHost } from '../../runner/inventory/index.js';
import { capstan } from '../helpers/cli.js';

/**
 * Issue 19 item 6: accept-new must not be pointed at a known_hosts that keeps nothing (every run would
 * accept any key), and StrictHostKeyChecking=no in an inventory or ssh config is reported, not obeyed.
 */
describe('host key policy from inventory, ssh config and flags', () => {
  let dir: string;
  let sshConfig: string;
  let knownHosts: string;
  const host = (name: string, vars: Record<string, unknown>): InventoryHost => ({ name, vars: { ansible_host: '127.0.0.1', ansible_port: 1, ...vars }, groups: ['all'] });
  const settings = (extra: Partial<ConnectionSettings> = {}): ConnectionSettings => ({ acceptNewHostKeys: false, sshConfigPath: sshConfig, ...extra });
  const refusal = (hosts: InventoryHost[], extra: Partial<ConnectionSettings> = {}): Error => {
    try {
      checkConnectionInputs(hosts, settings(extra));
    } catch (error) {
      return error as Error;
    }
    throw new Error('checkConnectionInputs did not refuse');
  };
  const TAIL = '. It would accept any key on every run; point UserKnownHostsFile at a file Capstan can write, or add the key to known_hosts yourself';

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'capstan-hkp-'));
    sshConfig = join(dir, 'ssh_config');
    knownHosts = join(dir, 'known_hosts');
    writeFileSync(sshConfig, '');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('accept-new with a known_hosts that cannot keep the key', () => {
    it('--accept-new-host-keys with UserKnownHostsFile=/dev/null in ansible_ssh_common_args: InputError naming host and file', () => {
      const error = refusal([host('web1', { ansible_ssh_common_args: '-o UserKnownHostsFile=/dev/null' })], { acceptNewHostKeys: true });
      expect(error).to.be.instanceOf(InputError);
      expect(error.message).to.equal(`host web1: accept-new (--accept-new-host-keys) cannot record a new host key in /dev/null: it is /dev/null, which keeps nothing${TAIL}`);
    });

    it('StrictHostKeyChecking=accept-new in the inventory args turns accept-new on, and is refused with /dev/null', () => {
      const web1 = host('web1', { ansible_ssh_common_args: '-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/dev/null' });
      expect(sshTarget(web1, settings()).acceptNewHostKeys).to.equal(true);
      expect(refusal([web1]).message).to.equal(
        `host web1: StrictHostKeyChecking=accept-new (ansible_ssh_common_args) cannot record a new host key in /dev/null: it is /dev/null, which keeps nothing${TAIL}`,
      );
    });

    it('StrictHostKeyChecking accept-new and UserKnownHostsFile /dev/null in ssh config are refused', () => {
      writeFileSync(sshConfig, 'Host 127.0.0.1\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile /dev/null\n');
      expect(refusal([host('web1', {})]).message).to.equal(
        `host web1: StrictHostKeyChecking=accept-new (${sshConfig}) cannot record a new host key in /dev/null: it is /dev/null, which keeps nothing${TAIL}`,
      );
    });

    it('refuses a known_hosts whose directory cannot be created (a file on its path)', () => {
      writeFileSync(join(dir, 'plain'), '');
      const file = join(dir, 'plain', 'ssh', 'known_hosts');
      expect(refusal([host('web1', { capstan_known_hosts_file: file })], { acceptNewHostKeys: true }).message).to.equal(
        `host web1: accept-new (--accept-new-host-keys) cannot record a new host key in ${file}: a directory on its path is a file${TAIL}`,
      );
    });

    it('accepts accept-new with a file it can write, and /dev/null without accept-new', () => {
      expect(checkConnectionInputs([host('web1', { capstan_known_hosts_file: join(dir, 'new', 'known_hosts') })], settings({ acceptNewHostKeys: true }))).to.deep.equal([]);
      expect(checkConnectionInputs([host('web1', { ansible_ssh_common_args: '-o UserKnownHostsFile=/dev/null' })], settings())).to.deep.equal([]);
    });
  });

  describe('StrictHostKeyChecking=no', () => {
    it('is not honoured: keys are still verified (accept-new stays off), with one warning naming every host', () => {
      const hosts = [
        host('web1', { ansible_ssh_common_args: '-o StrictHostKeyChecking=no', capstan_known_hosts_file: knownHosts }),
        host('web2', { ansible_ssh_common_args: "-o 'StrictHostKeyChecking=no' -o StrictHostKeyChecking=accept-new", capstan_known_hosts_file: knownHosts }),
        host('web3', { capstan_known_hosts_file: knownHosts }),
      ];
      expect(hosts.map((each) => sshTarget(each, settings()).acceptNewHostKeys)).to.deep.equal([false, false, false]);
      expect(checkConnectionInputs(hosts, settings())).to.deep.equal([
        'StrictHostKeyChecking=no (ansible_ssh_common_args) is not honoured for web1, web2: Capstan verifies their host keys against known_hosts all the same (an unknown key is refused unless --accept-new-host-keys, a changed key always)',
      ]);
    });

    it('is reported from ssh config too', () => {
      writeFileSync(sshConfig, 'Host *\n  StrictHostKeyChecking no\n');
      expect(checkConnectionInputs([host('web1', { capstan_known_hosts_file: knownHosts })], settings())).to.deep.equal([
        `StrictHostKeyChecking=no (${sshConfig}) is not honoured for web1: Capstan verifies their host keys against known_hosts all the same (an unknown key is refused unless --accept-new-host-keys, a changed key always)`,
      ]);
    });
  });

  describe('capstan CLI', () => {
    const write = (name: string, text: string): string => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    };
    // HOME points at the scratch directory, so the operator's ~/.ssh does not leak into the run.
    const env = (): Record<string, string> => ({ HOME: dir, CAPSTAN_RETRY_DIR: join(dir, 'retry') });

    it('exec with accept-new and UserKnownHostsFile=/dev/null exits 1 before contacting the host', async function () {
      this.timeout(30_000);
      const inventory = write('inv.ini', '[web]\nweb1 ansible_host=127.0.0.1 ansible_port=1 ansible_ssh_common_args="-o UserKnownHostsFile=/dev/null"\n');
      const result = await capstan(['exec', '-i', inventory, '--accept-new-host-keys', 'all', '--', 'true'], { env: env() });
      expect(result.code, result.stderr).to.equal(1);
      expect(result.stderr).to.equal(`capstan: host web1: accept-new (--accept-new-host-keys) cannot record a new host key in /dev/null: it is /dev/null, which keeps nothing${TAIL}\n`);
      expect(result.stdout).to.equal('');
    });

    it('run warns about StrictHostKeyChecking=no once per run, not per host or task', async function () {
      this.timeout(60_000);
      const inventory = write(
        'inv.yaml',
        [
          'all:',
          '  vars:',
          '    ansible_host: 127.0.0.1',
          '    ansible_port: 1',
          '    ansible_ssh_common_args: -o StrictHostKeyChecking=no',
          '  hosts:',
          '    web1:',
          '    web2:',
          '  children:',
          '    web:',
          '      hosts:',
          '        web1:',
          '        web2:',
          '',
        ].join('\n'),
      );
      const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory], { env: env() });
      const warnings = result.stderr.split('\n').filter((line) => line.includes('StrictHostKeyChecking'));
      expect(warnings, result.stderr).to.deep.equal([
        'capstan: warning: StrictHostKeyChecking=no (ansible_ssh_common_args) is not honoured for web1, web2: Capstan verifies their host keys against known_hosts all the same (an unknown key is refused unless --accept-new-host-keys, a changed key always)',
      ]);
    });
  });
});
