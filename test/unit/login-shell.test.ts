import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { isPosixShellAnswer, LOGIN_SHELL_QUERY, nonPosixShellMessage, POSIX_SHELL_PROBE } from '../../runner/login-shell.js';

describe('login shell check', () => {
  for (const shell of ['dash', 'bash']) {
    it(`${shell} answers the probe as a POSIX shell`, () => {
      const out = execFileSync(shell, ['-c', POSIX_SHELL_PROBE.text]).toString();
      expect(isPosixShellAnswer(0, out), out).to.equal(true);
    });
  }

  it('a start-up file that prints a line does not count against the shell', () => {
    const out = execFileSync('bash', ['-c', `echo 'Welcome!'; ${POSIX_SHELL_PROBE.text}`]).toString();
    expect(isPosixShellAnswer(0, out)).to.equal(true);
  });

  it('rejects a failed probe, a wrong arithmetic result and a quote read the fish way', () => {
    // fish: `$((…))` is a command substitution of `6 * 7`, an error; nothing printed, exit 127.
    expect(isPosixShellAnswer(127, '')).to.equal(false);
    expect(isPosixShellAnswer(0, "capstan-posix-shell|$((6 * 7))|it's \\' \\\\ $HOME !\n")).to.equal(false);
    // fish reads \' inside single quotes as a quote and \\ as one backslash.
    expect(isPosixShellAnswer(0, "capstan-posix-shell|42|it's ' \\ $HOME !\n")).to.equal(false);
    const out = execFileSync('dash', ['-c', POSIX_SHELL_PROBE.text]).toString();
    expect(isPosixShellAnswer(1, out)).to.equal(false);
  });

  it('the shell query is the same words in every shell and names the shell', () => {
    const result = spawnSync('dash', ['-c', LOGIN_SHELL_QUERY.text], { env: { SHELL: '/usr/bin/fish' } });
    expect(result.stdout.toString()).to.equal('/usr/bin/fish\n');
    expect(nonPosixShellMessage('node1', 'ops', '/usr/bin/fish\n')).to.equal(
      'host node1: the login shell of user ops is not a POSIX shell (login shell: /usr/bin/fish); Capstan sends commands as POSIX sh text, ' +
        'which fish and csh/tcsh read differently. Give ops a POSIX login shell (chsh -s /bin/bash ops) or connect as another user',
    );
    expect(nonPosixShellMessage('node1', 'ops', '')).to.include('(login shell: unknown (it did not print its path))');
    expect(nonPosixShellMessage('node1', 'ops', 'This account is currently not available.\n')).to.include('(login shell: unknown');
  });
});
