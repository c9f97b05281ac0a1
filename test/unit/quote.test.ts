import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { asArgument, quote, raw, sh } from '../../runner/quote.js';
import { Secret } from '../../runner/secret.js';

/** Runs `printf '%s\0' ARGS…` through a real shell and returns the arguments it received. */
function roundTrip(shell: string, args: string[]): string[] {
  const command = sh`printf '%s\\0' ${args}`;
  const out = execFileSync(shell, ['-c', command.text]);
  const parts = out.toString('utf8').split('\0');
  parts.pop();
  return parts;
}

const NASTY = [
  '',
  ' ',
  "'",
  "''",
  '"',
  '\\',
  '$(touch /tmp/capstan-pwned)',
  '`touch /tmp/capstan-pwned`',
  '${HOME}',
  '$HOME',
  'a b\tc',
  'line1\nline2',
  ';rm -rf /',
  '&& echo hi',
  '| cat',
  '> /tmp/x',
  '*',
  '?',
  '[a-z]',
  '~',
  '~root',
  '-n',
  '--',
  "it's",
  '\'"\'"',
  '!',
  '#comment',
  'ünïcödé ✓',
  '%s%n',
  '\r\n',
];

describe('sh quoting', () => {
  for (const shell of ['sh', 'dash', 'bash']) {
    it(`round-trips hostile arguments byte for byte through ${shell} -c`, () => {
      expect(roundTrip(shell, NASTY)).to.deep.equal(NASTY);
    });
  }

  it('round-trips 300 random strings of shell metacharacters through dash', () => {
    const alphabet = `'"\\$\`!*?[]{}()<>|&;~# \t\nab-=%^`;
    const cases = Array.from({ length: 300 }, () =>
      [...randomBytes(1 + Math.floor(Math.random() * 24))].map((b) => alphabet[b % alphabet.length]).join(''),
    );
    expect(roundTrip('dash', cases)).to.deep.equal(cases);
  });

  it('never uses bash-only $\'…\' quoting', () => {
    for (const value of NASTY) expect(quote(value)).not.to.match(/^\$'/);
  });

  it('rejects NUL, which no argv can carry', () => {
    expect(() => quote('a\0b')).to.throw(/NUL/);
  });

  it('leaves plain words unquoted and quotes the rest', () => {
    expect(sh`chmod ${'0644'} -- ${'/etc/a b'}`.text).to.equal("chmod 0644 -- '/etc/a b'");
    expect(sh`echo ${"it's"}`.text).to.equal("echo 'it'\\''s'");
    expect(sh`x ${''}`.text).to.equal("x ''");
  });

  it('shows secrets as *** in display and keeps them in text', () => {
    const token = new Secret('abcdef.0123456789abcdef');
    const command = sh`kubeadm join --token ${token} ${'10.0.0.1:6443'}`;
    expect(command.text).to.equal('kubeadm join --token abcdef.0123456789abcdef 10.0.0.1:6443');
    expect(command.display).to.equal('kubeadm join --token *** 10.0.0.1:6443');
    expect(String(command)).to.equal(command.display);
    expect(command.secrets).to.deep.equal([token]);
  });

  it('nests commands and raw fragments without re-quoting them', () => {
    const inner = sh`cat ${'/etc/a b'}`;
    expect(sh`${inner} | ${raw('wc -l')}`.text).to.equal("cat '/etc/a b' | wc -l");
  });

  it('wraps a whole command as one argument for sh -c, keeping secrets hidden in display', () => {
    const command = sh`echo ${new Secret('s3cr3t!')} ${"a'b"}`;
    const wrapped = sh`sh -c ${asArgument(command)}`;
    expect(execFileSync('dash', ['-c', wrapped.text]).toString()).to.equal("s3cr3t! a'b\n");
    expect(wrapped.display).not.to.include('s3cr3t');
  });
});

describe('Secret', () => {
  it('prints as *** through String, templates, JSON and inspect', async () => {
    const { inspect } = await import('node:util');
    const secret = new Secret('hunter2');
    expect(String(secret)).to.equal('***');
    expect(`${secret}`).to.equal('***');
    expect(JSON.stringify({ secret })).to.equal('{"secret":"***"}');
    expect(inspect({ secret })).to.not.include('hunter2');
    expect(secret.reveal()).to.equal('hunter2');
  });
});
