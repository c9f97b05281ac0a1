import { expect } from 'chai';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { writeLocalFileAtomic } from '../../runner/local-file.js';
import { fetchKubeconfig } from '../../tasks/kubeconfig.js';
import type { ApplyContext } from '../../runner/task.js';

const ADMIN_CONF = `apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: Q0EK
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
contexts:
- name: kubernetes-admin@kubernetes
  context:
    cluster: kubernetes
    user: kubernetes-admin
current-context: kubernetes-admin@kubernetes
`;

describe('controller files: random, exclusive temp names', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-local-file-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('fetchKubeconfig does not follow a symlink planted at the old predictable temp name', async () => {
    const to = join(dir, 'kubeconfig');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'not yours\n', { mode: 0o644 });
    // Another local user who can write to the directory knows Capstan's pid and plants the old name.
    symlinkSync(victim, `${to}.capstan-${process.pid}`);
    const bound = fetchKubeconfig({ to, context: 'lab' }).static!;
    const ctx = { host: { name: 'cp1' }, readText: async () => ADMIN_CONF } as unknown as ApplyContext;
    await bound.apply(ctx, []);
    expect(readFileSync(victim, 'utf8')).to.equal('not yours\n');
    expect(statSync(victim).mode & 0o777).to.equal(0o644);
    expect(lstatSync(`${to}.capstan-${process.pid}`).isSymbolicLink()).to.equal(true);
    const written = parse(readFileSync(to, 'utf8'));
    expect(written['current-context']).to.equal('lab');
    expect(written.clusters).to.deep.equal([{ name: 'lab', cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority-data': 'Q0EK' } }]);
    expect(statSync(to).mode & 0o777).to.equal(0o600);
    // Nothing left behind but the planted link, the victim and the result.
    expect(readdirSync(dir).sort()).to.deep.equal(['kubeconfig', `kubeconfig.capstan-${process.pid}`, 'victim'].sort());
  });

  it('writes the exact content and mode, replaces a symlink at the target instead of writing through it', () => {
    const target = join(dir, 'config');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep\n');
    symlinkSync(victim, target);
    const old = process.umask(0o077);
    try {
      writeLocalFileAtomic(target, 'secret: 1\n', 0o640);
    } finally {
      process.umask(old);
    }
    expect(lstatSync(target).isFile()).to.equal(true);
    expect(readFileSync(target, 'utf8')).to.equal('secret: 1\n');
    expect(statSync(target).mode & 0o777).to.equal(0o640);
    expect(readFileSync(victim, 'utf8')).to.equal('keep\n');
    expect(readdirSync(dir).sort()).to.deep.equal(['config', 'victim']);
  });

  it('repeated writes replace the file and leave no temp directory behind', () => {
    const target = join(dir, 'f');
    for (const content of ['a', 'b', 'c']) {
      writeLocalFileAtomic(target, content);
      expect(readFileSync(target, 'utf8')).to.equal(content);
      expect(readdirSync(dir)).to.deep.equal(['f']);
    }
  });
});
