import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../runner/errors.js';
import { resolveSshConfig } from '../../runner/transport/ssh-config.js';

const HOME = homedir();

const CONFIG = `
# Specific hosts first, defaults last, as ssh_config(5) recommends.
Host web1
  HostName 10.0.0.5
  User admin
  Port 2222
  IdentityFile ~/.ssh/web1_key

Host db?
  hostname %h.db.internal
  IdentityFile ~/.ssh/%r@%h:%p
  ProxyJump ops@bastion.example.com:2200

Host *.prod !skip.prod
  User deploy
  ProxyJump bastion
  UserKnownHostsFile ~/.ssh/known_hosts.prod /etc/ssh/prod_known_hosts
  StrictHostKeyChecking Accept-New

Host noproxy.prod
  ProxyJump none

Host quiet
  UserKnownHostsFile none

Host *
  User fallback
  Port 22
  IdentityFile ~/.ssh/id_ed25519
  IdentityFile %d/keys/100%%
`;

describe('resolveSshConfig', () => {
  it('applies a Host alias: HostName, User, Port, IdentityFile', () => {
    expect(resolveSshConfig('web1', { text: CONFIG })).to.deep.equal({
      hostName: '10.0.0.5',
      user: 'admin',
      port: 2222,
      identityFiles: [join(HOME, '.ssh/web1_key'), join(HOME, '.ssh/id_ed25519'), `${HOME}/keys/100%`],
    });
  });

  it('lets the first value win and accumulates IdentityFile across sections', () => {
    // web1 gets Port 2222 and User admin, not the later `Host *` values.
    const result = resolveSshConfig('web1', { text: `Host *\n  User early\nHost web1\n  User late\n  Port 2200\n` });
    expect(result.user).to.equal('early');
    expect(result.port).to.equal(2200);
  });

  it('matches wildcards and expands %h, %r, %p and %% tokens, with keywords in any case', () => {
    const result = resolveSshConfig('db1', { text: CONFIG });
    expect(result.hostName).to.equal('db1.db.internal');
    expect(result.user).to.equal('fallback');
    expect(result.port).to.equal(22);
    expect(result.proxyJump).to.equal('ops@bastion.example.com:2200');
    expect(result.identityFiles).to.deep.equal([
      join(HOME, '.ssh/fallback@db1.db.internal:22'),
      join(HOME, '.ssh/id_ed25519'),
      `${HOME}/keys/100%`,
    ]);
  });

  it('reads ProxyJump, UserKnownHostsFile and StrictHostKeyChecking, honouring negated patterns', () => {
    expect(resolveSshConfig('api.prod', { text: CONFIG })).to.deep.equal({
      user: 'deploy',
      port: 22,
      proxyJump: 'bastion',
      userKnownHostsFiles: [join(HOME, '.ssh/known_hosts.prod'), '/etc/ssh/prod_known_hosts'],
      strictHostKeyChecking: 'accept-new',
      identityFiles: [join(HOME, '.ssh/id_ed25519'), `${HOME}/keys/100%`],
    });
    const skipped = resolveSshConfig('skip.prod', { text: CONFIG });
    expect(skipped.user).to.equal('fallback');
    expect(skipped.proxyJump).to.equal(undefined);
  });

  it('treats ProxyJump none and UserKnownHostsFile none as "no jump" and "no files"', () => {
    // `Host *.prod` comes first and its ProxyJump wins for noproxy.prod, like ssh -G would show.
    expect(resolveSshConfig('noproxy.prod', { text: CONFIG }).proxyJump).to.equal('bastion');
    expect(resolveSshConfig('x', { text: 'Host x\n  ProxyJump none\n' }).proxyJump).to.equal(undefined);
    expect(resolveSshConfig('quiet', { text: CONFIG }).userKnownHostsFiles).to.deep.equal([]);
  });

  it('uses the local user for %r when no User is set', () => {
    const result = resolveSshConfig('plain', { text: 'Host plain\n  IdentityFile /keys/%r-%n\n' });
    expect(result).to.deep.equal({ identityFiles: [`/keys/${userInfo().username}-plain`] });
  });

  it('rejects a bad Port and unknown tokens with InputError', () => {
    expect(() => resolveSshConfig('x', { text: 'Host x\n  Port http\n' })).to.throw(InputError, /Port http/);
    expect(() => resolveSshConfig('x', { text: 'Host x\n  IdentityFile ~/%Q\n' })).to.throw(InputError, /%Q/);
  });

  describe('from a file', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'capstan-sshcfg-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reads configPath', async () => {
      const configPath = join(dir, 'config');
      await writeFile(configPath, CONFIG);
      expect(resolveSshConfig('web1', { configPath }).hostName).to.equal('10.0.0.5');
    });

    it('gives an empty result when the file does not exist', () => {
      expect(resolveSshConfig('web1', { configPath: join(dir, 'missing') })).to.deep.equal({ identityFiles: [] });
    });

    it('reports an unreadable config as InputError naming it', () => {
      expect(() => resolveSshConfig('web1', { configPath: dir })).to.throw(InputError, dir);
    });
  });
});
