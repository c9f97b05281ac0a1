import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { LAB_USER, LAB_USER_PASSWORD, type LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, recapOf, eventsOf } from '../helpers/cli.js';
import { hostFactory } from '../../runner/connect.js';
import { sh } from '../../runner/quote.js';
import { Secret } from '../../runner/secret.js';

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

/** Runs a command as root on a lab host and fails the test with its output when it fails. */
async function asRoot(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

describe('become: the sudo password goes only to a sudo that asks for it', function () {
  this.timeout(300_000);
  let lab: LabState;
  const sudoers = '/etc/sudoers.d/zz-capstan-become-test';

  /** A Host for node1, logged in as the lab user, becoming root with the lab user's password. */
  const node1 = () => {
    const address = lab.hosts.find((h) => h.name === 'node1')!.address;
    return hostFactory({ acceptNewHostKeys: false, becomePassword: new Secret(LAB_USER_PASSWORD) })({
      name: 'node1',
      groups: ['all'],
      vars: { ansible_host: address, ansible_user: LAB_USER, ansible_become: true, ansible_ssh_private_key_file: lab.keyPath, capstan_known_hosts_file: lab.knownHostsPath },
    });
  };

  const setSudoers = async (line: string) => {
    await asRoot(lab, 'node1', `printf '%s\\n' '${line}' > ${sudoers}.new && chmod 0440 ${sudoers}.new && visudo -cqf ${sudoers}.new && mv ${sudoers}.new ${sudoers} && rm -rf /run/sudo/ts`);
  };

  before(async () => {
    lab = await withLab(2);
  });
  afterEach(async () => {
    await asRoot(lab, 'node1', `rm -f ${sudoers} ${sudoers}.new; rm -rf /run/sudo/ts`);
  });

  it('cached credentials (timestamp_type=global): stdin reaches the command exactly, the first time and after sudo stopped asking', async () => {
    // Every ssh session has its own parent process, so by default sudo asks every time; a global
    // timestamp makes it stop asking after the first command, as a long-lived session would.
    await setSudoers(`Defaults:${LAB_USER} timestamp_type=global`);
    const host = node1();
    try {
      await host.connect();
      for (const round of [1, 2, 3]) {
        const result = await host.exec(sh`id -u; cat`, { stdin: `input ${round}\n` });
        expect(result.code, result.stderr).to.equal(0);
        expect(result.stdout).to.equal(`0\ninput ${round}\n`);
        expect(result.stderr).to.equal('');
      }
    } finally {
      await host.close();
    }
  });

  it('NOPASSWD for the shell only: the password is never written, the command gets its own stdin', async () => {
    // `sudo -n true` fails (true needs the password), so Capstan has the password ready; sh does not ask.
    await setSudoers(`${LAB_USER} ALL=(ALL) NOPASSWD: /usr/bin/sh, /bin/sh`);
    const host = node1();
    try {
      const result = await host.exec(sh`cat`, { stdin: 'just this\n' });
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.equal('just this\n');
      // Writes send their content on stdin: a password line in front would be a short write or wrong content.
      await host.writeFile('/root/capstan-nopasswd-test', 'exact content\n', { mode: '0600' });
      expect(await asRoot(lab, 'node1', 'stat -c "%U %a" /root/capstan-nopasswd-test && cat /root/capstan-nopasswd-test && rm /root/capstan-nopasswd-test')).to.equal('root 600\nexact content\n');
    } finally {
      await host.close();
    }
  });

  it('a validated write through sudo with a password: the check runs as root on the temp file, and a refusal keeps the old file', async () => {
    const host = node1();
    const path = '/root/capstan-validate-test.conf';
    try {
      await host.writeFile(path, 'good\n', { mode: '0600', validate: (temp) => sh`[ "$(id -u)" = 0 ] && grep -qx good ${temp}` });
      const refused = await host
        .writeFile(path, 'bad\n', { mode: '0600', validate: (temp) => sh`grep -qx good ${temp} || { echo "not good, says $(id -un)" >&2; exit 5; }` })
        .then(() => null, (error: unknown) => error as Error);
      expect(refused?.message).to.equal(`${path} not replaced: the new content failed validation (exit 5)\nnot good, says root`);
      expect(refused?.message).not.to.include(LAB_USER_PASSWORD);
      const left = await asRoot(lab, 'node1', `stat -c "%U %a" ${path}; cat ${path}; ls -A /root | grep -c '^[.]capstan[.]'; rm -f ${path}`);
      expect(left).to.equal('root 600\ngood\n0\n');
    } finally {
      await host.close();
    }
  });

  it('capstan run -K with cached credentials writes exact files', async () => {
    await setSudoers(`Defaults:${LAB_USER} timestamp_type=global`);
    await asRoot(lab, 'node1', 'rm -rf /etc/capstan-demo');
    const inventory = `/tmp/capstan-become-cached-${process.pid}.yaml`;
    const address = lab.hosts.find((h) => h.name === 'node1')!.address;
    writeFileSync(
      inventory,
      `all:\n  vars:\n    ansible_user: ${LAB_USER}\n    ansible_become: true\n    ansible_ssh_private_key_file: ${lab.keyPath}\n    capstan_known_hosts_file: ${lab.knownHostsPath}\n  hosts:\n    node1:\n      ansible_host: ${address}\n`,
    );
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '-K', '--json'], { input: `${LAB_USER_PASSWORD}\n` });
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    expect(recapOf(result.stdout).node1!.failed).to.equal(0);
    expect(await asRoot(lab, 'node1', 'cat /etc/capstan-demo/settings.conf; stat -c "%U %a" /etc/capstan-demo/motd')).to.equal('log_level = info\nroot 644\n');
    expect(result.stdout + result.stderr).not.to.include(LAB_USER_PASSWORD);
  });
});

describe('connect: a non-POSIX login shell is refused', function () {
  this.timeout(600_000);
  let lab: LabState;
  let inventory: string;

  before(async () => {
    lab = await withLab(2);
    // fish and tcsh from Debian, and users who log in to them with the lab key.
    await asRoot(
      lab,
      'node2',
      'command -v fish >/dev/null && command -v tcsh >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fish tcsh >/dev/null; }; ' +
        'for u in fishy:/usr/bin/fish cshy:/usr/bin/tcsh; do n=${u%%:*}; id "$n" >/dev/null 2>&1 || useradd --create-home --shell "${u#*:}" "$n"; ' +
        'install -d -m 700 -o "$n" -g "$n" /home/$n/.ssh && install -m 600 -o "$n" -g "$n" /root/.ssh/authorized_keys /home/$n/.ssh/authorized_keys; done',
    );
    const node2 = lab.hosts.find((h) => h.name === 'node2')!.address;
    inventory = `/tmp/capstan-shell-${process.pid}.yaml`;
    writeFileSync(
      inventory,
      `all:\n  vars:\n    ansible_ssh_private_key_file: ${lab.keyPath}\n    capstan_known_hosts_file: ${lab.knownHostsPath}\n  hosts:\n` +
        `    node2:\n      ansible_host: ${node2}\n      ansible_user: ${LAB_USER}\n` +
        `    node2-fish:\n      ansible_host: ${node2}\n      ansible_user: fishy\n` +
        `    node2-tcsh:\n      ansible_host: ${node2}\n      ansible_user: cshy\n`,
    );
  });

  it('fails the fish and tcsh hosts with the host and the shell named, and runs on the POSIX one', async () => {
    const result = await capstan(['exec', '-i', inventory, 'all', '--', 'echo', "it's"]);
    expect(result.code, result.stdout + result.stderr).to.equal(4);
    expect(result.stdout).to.include("node2 | CHANGED | rc=0 >>\nit's\n");
    for (const [name, user, shell] of [['node2-fish', 'fishy', '/usr/bin/fish'], ['node2-tcsh', 'cshy', '/usr/bin/tcsh']]) {
      expect(result.stdout).to.include(
        `${name} | UNREACHABLE | rc=- >>\nhost ${name}: the login shell of user ${user} is not a POSIX shell (login shell: ${shell}); ` +
          `Capstan sends commands as POSIX sh text, which fish and csh/tcsh read differently. Give ${user} a POSIX login shell (chsh -s /bin/bash ${user}) or connect as another user\n`,
      );
    }
  });
});
