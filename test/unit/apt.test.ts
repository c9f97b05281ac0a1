import { expect } from 'chai';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  aptSourcePaths,
  aptUpdate,
  dockerRepo,
  dpkgQueryCommand,
  ensureAptKey,
  ensureAptRepo,
  ensureAptSource,
  ensurePackages,
  kubernetesRepo,
  normaliseFingerprint,
  packagesDrift,
  parseDpkgQuery,
  parseKeyColons,
  parseKeyProbe,
  parsePackageSpec,
  renderAptSource,
  resolveAptRepo,
  verifyFingerprints,
  type AptRepoParams,
  type AptKeyParams,
} from '../../tasks/apt.js';
import { parseFacts } from '../../runner/facts.js';
import type { HostView, PerHostParams } from '../../runner/task.js';
import { localHost, run } from '../helpers/local.js';
import { useLocalAptRepo } from '../helpers/apt-repo.js';

const FIXTURES = 'test/fixtures/apt';
const host = (facts: string): HostView => ({ name: 'h', vars: {}, facts: parseFacts(facts) });
const BOOKWORM_AMD64 = host('arch=amd64\nosId=debian\ncodename=bookworm\n');
const PI_ARM64 = host('arch=arm64\nosId=debian\ncodename=bookworm\n');
const JAMMY = host('arch=amd64\nosId=ubuntu\ncodename=jammy\n');
const PI_32 = host('arch=armhf\nosId=raspbian\ncodename=bookworm\n');

/** Resolves a per-host parameter object for a host, as the engine does when it binds a task. */
function forHost<P extends object>(params: PerHostParams<P>, view: HostView): P {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, typeof v === 'function' ? (v as (h: HostView) => unknown)(view) : v])) as P;
}

describe('apt keys (pure)', () => {
  it('parses gpg --show-keys --with-colons: primary fingerprints, subkeys, escaped user ids', () => {
    const keys = parseKeyColons(readFileSync(join(FIXTURES, 'show-keys-two.colons'), 'utf8'));
    expect(keys).to.deep.equal([
      {
        fingerprint: 'AC44D60AEE27A83D4EA942F6EB5548C822508881',
        keyId: 'EB5548C822508881',
        userIds: ['Capstan Fixture One <one@capstan.invalid>'],
        subkeyFingerprints: ['F291FEE312425D3E10F539D6EE48CD1433A94AD0'],
      },
      {
        fingerprint: '1CB0909F1F0F1366BE7830A212CAF23CDB616831',
        keyId: '12CAF23CDB616831',
        userIds: ['Capstan: Fixture Two <two@capstan.invalid>'],
        subkeyFingerprints: [],
      },
    ]);
  });

  it('normalises fingerprints as people write them and rejects short key ids', () => {
    expect(normaliseFingerprint('9DC8 5822 9FC7 DD38 854A  E2D8 8D81 803C 0EBF CD88')).to.equal('9DC858229FC7DD38854AE2D88D81803C0EBFCD88');
    expect(normaliseFingerprint('0xde15b14486cd377b9e876e1a234654da9a296436')).to.equal('DE15B14486CD377B9E876E1A234654DA9A296436');
    expect(() => normaliseFingerprint('0EBFCD88')).to.throw(/full key fingerprint/);
  });

  it('requires the primary keys to be exactly the wanted ones (an extra key is a mismatch)', () => {
    const keys = parseKeyColons(readFileSync(join(FIXTURES, 'show-keys-two.colons'), 'utf8'));
    expect(() => verifyFingerprints(keys, ['AC44D60AEE27A83D4EA942F6EB5548C822508881', '1cb0909f1f0f1366be7830a212caf23cdb616831'], 'u')).not.to.throw();
    expect(() => verifyFingerprints(keys, 'AC44D60AEE27A83D4EA942F6EB5548C822508881', 'https://x/key')).to.throw(
      'key fingerprint mismatch for https://x/key: expected AC44D60AEE27A83D4EA942F6EB5548C822508881, the key is 1CB0909F1F0F1366BE7830A212CAF23CDB616831, AC44D60AEE27A83D4EA942F6EB5548C822508881; nothing written',
    );
    // A subkey's fingerprint does not stand for the key.
    expect(() => verifyFingerprints(keys.slice(0, 1), 'F291FEE312425D3E10F539D6EE48CD1433A94AD0', 'u')).to.throw(/mismatch/);
    expect(() => verifyFingerprints([], 'F291FEE312425D3E10F539D6EE48CD1433A94AD0', 'u')).to.throw('u holds no OpenPGP public key');
  });

  it('parses the key probe output', () => {
    const colons = readFileSync(join(FIXTURES, 'show-keys-two.colons'), 'utf8');
    const probe = parseKeyProbe(`sha256=${'a'.repeat(64)}\ncurrent=${'b'.repeat(64)}\nmode=600\nbase64=${Buffer.from('key bytes').toString('base64')}\ncolons:\n${colons}`);
    expect(probe.sha256).to.equal('a'.repeat(64));
    expect(probe.bytes.toString()).to.equal('key bytes');
    expect(probe.current).to.deep.equal({ sha256: 'b'.repeat(64), mode: '0600' });
    expect(probe.keys.map((k) => k.fingerprint)).to.deep.equal(['AC44D60AEE27A83D4EA942F6EB5548C822508881', '1CB0909F1F0F1366BE7830A212CAF23CDB616831']);
    expect(parseKeyProbe(`sha256=${'a'.repeat(64)}\nbase64=\ncolons:\n`).current).to.equal(null);
  });

  it('validates key parameters when the playbook loads', () => {
    expect(() => ensureAptKey({ url: 'ftp://x/key', keyring: '/etc/apt/keyrings/x.gpg' })).to.throw(/url must be an http\(s\) URL/);
    expect(() => ensureAptKey({ url: 'https://x/key', keyring: '/etc/apt/keyrings/x.asc' })).to.throw(/must end in \.gpg/);
    expect(() => ensureAptKey({ url: 'https://x/key', keyring: 'keyrings/x.gpg' })).to.throw(/absolute path/);
    expect(() => ensureAptKey({ url: 'https://x/key', keyring: '/etc/apt/keyrings/x.gpg', fingerprint: '0EBFCD88' })).to.throw(/full key fingerprint/);
    expect(ensureAptKey({ url: 'https://x/key', keyring: '/etc/apt/keyrings/x.gpg' }).static!.id).to.equal('apt-key:/etc/apt/keyrings/x.gpg');
  });
});

describe('apt repositories (pure)', () => {
  it('renders the seeds\' one-line entries exactly', () => {
    const k8s = forHost<AptRepoParams>(kubernetesRepo('1.34.2').repo, BOOKWORM_AMD64);
    expect(renderAptSource(resolveAptRepo(k8s, BOOKWORM_AMD64))).to.equal(
      'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /\n',
    );
    const docker = forHost<AptRepoParams>(dockerRepo().repo, PI_ARM64);
    expect(renderAptSource(resolveAptRepo(docker, PI_ARM64))).to.equal(
      'deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable\n',
    );
    const ubuntu = forHost<AptRepoParams>(dockerRepo().repo, JAMMY);
    expect(renderAptSource(resolveAptRepo(ubuntu, JAMMY))).to.equal(
      'deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu jammy stable\n',
    );
  });

  it('renders deb822 entries exactly (no Components for a flat repository)', () => {
    const k8s = forHost<AptRepoParams>(kubernetesRepo('1.34.2', { format: 'deb822' }).repo, BOOKWORM_AMD64);
    expect(renderAptSource(resolveAptRepo(k8s, BOOKWORM_AMD64), k8s.format)).to.equal(
      'Types: deb\nURIs: https://pkgs.k8s.io/core:/stable:/v1.34/deb/\nSuites: /\nSigned-By: /etc/apt/keyrings/kubernetes-apt-keyring.gpg\n',
    );
    const docker = forHost<AptRepoParams>(dockerRepo({ format: 'deb822' }).repo, BOOKWORM_AMD64);
    expect(renderAptSource(resolveAptRepo(docker, BOOKWORM_AMD64), 'deb822')).to.equal(
      'Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm\nComponents: stable\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/docker.gpg\n',
    );
    expect(aptSourcePaths('docker', 'deb822')).to.deep.equal({ path: '/etc/apt/sources.list.d/docker.sources', other: '/etc/apt/sources.list.d/docker.list' });
    expect(aptSourcePaths('docker')).to.deep.equal({ path: '/etc/apt/sources.list.d/docker.list', other: '/etc/apt/sources.list.d/docker.sources' });
  });

  it('takes arch from dpkg --print-architecture and suite from the codename, unless given', () => {
    const params: AptRepoParams = { name: 'x', uri: 'http://r/debian', components: ['main'], keyring: '/k.gpg' };
    expect(resolveAptRepo(params, PI_ARM64)).to.deep.equal({ uri: 'http://r/debian', suite: 'bookworm', components: ['main'], keyring: '/k.gpg', arch: 'arm64' });
    expect(resolveAptRepo({ ...params, suite: 'trixie', arch: 'amd64,arm64' }, PI_ARM64)).to.include({ suite: 'trixie', arch: 'amd64,arm64' });
    expect(renderAptSource(resolveAptRepo({ ...params, arch: 'amd64,arm64' }, PI_ARM64))).to.equal('deb [arch=amd64,arm64 signed-by=/k.gpg] http://r/debian bookworm main\n');
    expect(resolveAptRepo({ ...params, arch: null }, PI_ARM64).arch).to.equal(null);
    expect(() => resolveAptRepo(params, host('arch=amd64\n'))).to.throw(/no codename fact/);
  });

  it('derives the pkgs.k8s.io minor from a semver version', () => {
    const k8s = kubernetesRepo('1.34.2');
    expect(k8s.key).to.deep.equal({
      url: 'https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key',
      keyring: '/etc/apt/keyrings/kubernetes-apt-keyring.gpg',
      fingerprint: 'DE15B14486CD377B9E876E1A234654DA9A296436',
    });
  });

  it('picks Docker\'s distribution per host', () => {
    const key = (view: HostView) => forHost<AptKeyParams>(dockerRepo().key, view);
    expect(key(BOOKWORM_AMD64)).to.deep.equal({ url: 'https://download.docker.com/linux/debian/gpg', keyring: '/etc/apt/keyrings/docker.gpg', fingerprint: '9DC858229FC7DD38854AE2D88D81803C0EBFCD88' });
    expect(key(JAMMY).url).to.equal('https://download.docker.com/linux/ubuntu/gpg');
    expect(key(PI_32).url).to.equal('https://download.docker.com/linux/raspbian/gpg');
    expect(forHost<AptRepoParams>(dockerRepo({ distro: 'ubuntu' }).repo, BOOKWORM_AMD64).uri).to.equal('https://download.docker.com/linux/ubuntu');
    const [keyTask, repoTask] = ensureAptSource(dockerRepo());
    expect(keyTask!.bind(PI_ARM64).id).to.equal('apt-key:/etc/apt/keyrings/docker.gpg');
    expect(repoTask!.bind(PI_ARM64).id).to.equal('apt-repo:docker');
  });

  it('validates repository parameters when the playbook loads', () => {
    const base = { name: 'x', uri: 'https://r/', keyring: '/etc/apt/keyrings/x.gpg' };
    expect(() => ensureAptRepo({ ...base, suite: '/', components: ['main'] })).to.throw(/flat repository \(suite \/\) has no components/);
    expect(() => ensureAptRepo({ ...base, suite: 'bookworm' })).to.throw(/components are required/);
    expect(() => ensureAptRepo({ ...base, name: 'a b', suite: '/' })).to.throw(/name must be a file name/);
    expect(() => ensureAptRepo({ ...base, suite: '/', arch: 'AMD64' })).to.throw(/arch must be a Debian architecture/);
    expect(() => ensureAptRepo({ ...base, suite: '/', format: 'yaml' as never })).to.throw(/format must be one-line or deb822/);
  });

  it('notifies one shared apt-get update handler from every key and repository task', () => {
    const a = ensureAptRepo({ name: 'a', uri: 'https://r/', suite: '/', keyring: '/etc/apt/keyrings/a.gpg' });
    const b = ensureAptKey({ url: 'https://r/key', keyring: '/etc/apt/keyrings/a.gpg' });
    expect(a.options.notify).to.deep.equal([aptUpdate()]);
    expect(b.options.notify![0]).to.equal(a.options.notify![0]);
    expect(aptUpdate()).to.equal(aptUpdate());
  });
});

describe('apt packages (pure)', () => {
  it('parses package specs with version pins', () => {
    expect(parsePackageSpec('kubelet=1.34.1-1.1')).to.deep.equal({ name: 'kubelet', version: '1.34.1-1.1' });
    expect(parsePackageSpec('containerd.io')).to.deep.equal({ name: 'containerd.io' });
    expect(parsePackageSpec('libc6:arm64')).to.deep.equal({ name: 'libc6:arm64' });
    expect(() => parsePackageSpec('-o')).to.throw(/not a package name/);
    expect(() => parsePackageSpec('kubelet=')).to.throw(/not a package name/);
    expect(() => parsePackageSpec('x;reboot')).to.throw(/not a package name/);
  });

  it('queries dpkg, not apt, with one exact command', () => {
    expect(dpkgQueryCommand(['kubelet', 'libc6:arm64']).text).to.equal("dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' kubelet libc6");
  });

  it('reports what is missing and what is not held, one drift each', () => {
    const dpkg = parseDpkgQuery('kubelet\t1.34.1-1.1\tii \nkubeadm\t1.33.0-1.1\thi \nkubectl\t\tun \nold\t1.0\trc \n');
    expect([...dpkg.keys()]).to.deep.equal(['kubelet', 'kubeadm', 'kubectl', 'old']);
    expect(dpkg.get('kubeadm')).to.deep.equal({ version: '1.33.0-1.1', installed: true, held: true });
    expect(dpkg.get('old')!.installed).to.equal(false);
    const specs = ['kubelet=1.34.1-1.1', 'kubeadm=1.34.1-1.1', 'kubectl=1.34.1-1.1', 'cri-tools'].map(parsePackageSpec);
    expect(packagesDrift(specs, dpkg, { hold: true })).to.deep.equal([
      { subject: 'missing', current: 'kubeadm 1.33.0-1.1, kubectl absent, cri-tools absent', desired: 'kubeadm=1.34.1-1.1, kubectl=1.34.1-1.1, cri-tools' },
      { subject: 'not held', current: 'kubelet, kubectl, cri-tools', desired: 'held' },
    ]);
    expect(packagesDrift(specs.slice(0, 2), dpkg, { hold: false })).to.deep.equal([
      { subject: 'missing', current: 'kubeadm 1.33.0-1.1', desired: 'kubeadm=1.34.1-1.1' },
      { subject: 'held', current: 'kubeadm', desired: 'not held' },
    ]);
    expect(packagesDrift(specs.slice(0, 1), dpkg, {})).to.deep.equal([]);
    expect(packagesDrift(['kubelet', 'old'].map(parsePackageSpec), dpkg, { state: 'absent' })).to.deep.equal([{ subject: 'installed', current: 'kubelet 1.34.1-1.1', desired: 'absent' }]);
  });

  it('validates package parameters when the playbook loads', () => {
    expect(() => ensurePackages([])).to.throw(/non-empty list/);
    expect(() => ensurePackages(['ab', 'ab=1'])).to.throw(/listed twice/);
    expect(() => ensurePackages(['ab=1'], { state: 'absent' })).to.throw(/neither hold nor versions/);
    expect(ensurePackages(['kubectl', 'kubeadm'], { hold: true }).static!.id).to.equal('packages:kubeadm,kubectl');
    expect(ensurePackages(['kubectl', 'kubeadm'], { hold: true }).static!.title).to.equal('packages kubectl, kubeadm (held)');
  });
});

describe('apt tasks on this machine', function () {
  this.timeout(60_000);
  const fx = useLocalAptRepo();

  it('ensurePackages check reads dpkg and reports a package dpkg has never heard of as missing, without failing', async () => {
    const outcome = await run(fx.local, ensurePackages(['dpkg', 'capstan-no-such-package']), true);
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift).to.deep.equal([{ subject: 'missing', current: 'capstan-no-such-package absent', desired: 'capstan-no-such-package' }]);
    expect((await run(fx.local, ensurePackages(['dpkg']), true)).status).to.equal('ok');
  });

  it('ensureAptKey downloads on the host, dearmors, verifies the fingerprint, installs 0644, then is ok', async () => {
    const keyring = join(fx.local.dir, 'keyrings/test.gpg');
    const task = ensureAptKey({ url: `${fx.repo.url}/key.asc`, keyring, fingerprint: fx.repo.fingerprint });
    const check = await run(fx.local, task, true);
    expect(check.status, check.message).to.equal('changed');
    expect(check.drift[0]).to.include({ subject: 'keyring', current: 'absent' });
    expect(existsSync(keyring)).to.equal(false);
    const applied = await run(fx.local, task);
    expect(applied.status, applied.message).to.equal('changed');
    // Exactly the binary export of the key: dearmored.
    expect(readFileSync(keyring).equals(readFileSync(join(fx.repo.dir, 'www/key.gpg')))).to.equal(true);
    expect(statSync(keyring).mode & 0o777).to.equal(0o644);
    expect((await run(fx.local, task)).status).to.equal('ok');
    // A binary key at another URL is the same keyring: nothing to do.
    expect((await run(fx.local, ensureAptKey({ url: `${fx.repo.url}/key.gpg`, keyring, fingerprint: fx.repo.fingerprint }))).status).to.equal('ok');
  });

  it('ensureAptKey with the wrong fingerprint fails in check and apply and writes nothing', async () => {
    const keyring = join(fx.local.dir, 'wrong.gpg');
    const task = ensureAptKey({ url: `${fx.repo.url}/key.asc`, keyring, fingerprint: '9DC858229FC7DD38854AE2D88D81803C0EBFCD88' });
    for (const checkMode of [true, false]) {
      const outcome = await run(fx.local, task, checkMode);
      expect(outcome.status).to.equal('failed');
      expect(outcome.message).to.equal(
        `check failed: key fingerprint mismatch for ${fx.repo.url}/key.asc: expected 9DC858229FC7DD38854AE2D88D81803C0EBFCD88, the key is ${fx.repo.fingerprint}; nothing written`,
      );
    }
    expect(existsSync(keyring)).to.equal(false);
  });

  it('ensureAptKey refuses a plain http key URL without a fingerprint when the playbook loads, naming the fix (issue 19)', () => {
    expect(() => ensureAptKey({ url: `${fx.repo.url}/key.asc`, keyring: join(fx.local.dir, 'x.gpg') })).to.throw(
      `the key ${fx.repo.url}/key.asc is fetched over plain http: give its fingerprint (the full fingerprint, as the vendor publishes it), or an https:// URL`,
    );
    // With the fingerprint, or over https, the task is made.
    expect(ensureAptKey({ url: `${fx.repo.url}/key.asc`, keyring: '/etc/apt/keyrings/x.gpg', fingerprint: fx.repo.fingerprint }).static!.id).to.equal('apt-key:/etc/apt/keyrings/x.gpg');
    expect(ensureAptKey({ url: 'https://mirror.lan/key.asc', keyring: '/etc/apt/keyrings/x.gpg' }).static!.id).to.equal('apt-key:/etc/apt/keyrings/x.gpg');
  });

  it('ensureAptKey fails clearly when the URL serves no key', async () => {
    const outcome = await run(fx.local, ensureAptKey({ url: `${fx.repo.url}/flat/Packages`, keyring: join(fx.local.dir, 'x.gpg'), fingerprint: fx.repo.fingerprint }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal(`check failed: could not fetch the key ${fx.repo.url}/flat/Packages on the host: the file at the key URL is not an OpenPGP key`);
    const missing = await run(fx.local, ensureAptKey({ url: `${fx.repo.url}/nope.asc`, keyring: join(fx.local.dir, 'x.gpg'), fingerprint: fx.repo.fingerprint }));
    expect(missing.message).to.equal(`check failed: could not fetch the key ${fx.repo.url}/nope.asc on the host: curl: (22) The requested URL returned error: 404`);
  });

  it('a key change in --check makes the apt-get update handler "would change", until an install would refresh the lists', async () => {
    const keyring = join(fx.local.dir, 'k.gpg');
    const state = { pendingChanges: [] as string[] };
    expect((await run(fx.local, aptUpdate(), true, state)).status).to.equal('ok');
    expect((await run(fx.local, ensureAptKey({ url: `${fx.repo.url}/key.asc`, keyring, fingerprint: fx.repo.fingerprint }), true, state)).status).to.equal('changed');
    const update = await run(fx.local, aptUpdate(), true, state);
    expect(update.status).to.equal('changed');
    expect(update.drift).to.deep.equal([{ subject: 'package lists', current: 'stale (key k.gpg changed)', desired: 'updated' }]);
    expect((await run(fx.local, ensurePackages(['capstan-no-such-package']), true, state)).status).to.equal('changed');
    expect((await run(fx.local, aptUpdate(), true, state)).status).to.equal('ok');
  });
});
