import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  encryptionKeyOf,
  ensurePki,
  installedMode,
  installPkiFiles,
  normaliseIp,
  pkiFileNames,
  renderEncryptionConfig,
  renderKubeconfig,
  requestedSans,
  sanChange,
  type CertificateRequest,
  type Pki,
  type PkiParams,
} from '../../tasks/pki.js';
import { Pending } from '../../runner/task.js';
import { isSecret, Secret } from '../../runner/secret.js';
import { describeDrift } from '../../runner/drift.js';
import { localHost, run } from '../helpers/local.js';

const CONTROLLER_IPS = ['10.240.0.10', '10.240.0.11', '10.240.0.12'];
const KUBERNETES_DNS = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster', 'kubernetes.svc.cluster.local'];

function hardWayCertificates(ips: string[] = [...CONTROLLER_IPS, '10.240.0.40', '10.32.0.1', '127.0.0.1']): CertificateRequest[] {
  return [
    { name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', usage: ['server', 'client'], ipAddresses: ips, dnsNames: KUBERNETES_DNS },
    { name: 'service-account', commonName: 'service-accounts', organization: 'Kubernetes', usage: ['client'] },
    { name: 'admin', commonName: 'admin', organization: 'system:masters', usage: ['client'] },
    { name: 'kube-controller-manager', commonName: 'system:kube-controller-manager', organization: 'system:kube-controller-manager', usage: ['client'] },
    { name: 'kube-scheduler', commonName: 'system:kube-scheduler', organization: 'system:kube-scheduler', usage: ['client'] },
  ];
}

function hardWay(dir: string, overrides: Partial<PkiParams> = {}): PkiParams {
  return {
    dir,
    certificates: hardWayCertificates(),
    kubeconfigs: [
      { name: 'admin', certificate: 'admin', server: 'https://127.0.0.1:6443' },
      { name: 'kube-controller-manager', certificate: 'kube-controller-manager', server: 'https://127.0.0.1:6443' },
      { name: 'kube-scheduler', certificate: 'kube-scheduler', server: 'https://127.0.0.1:6443' },
    ],
    encryptionConfig: true,
    ...overrides,
  };
}

/** A smaller PKI (fewer RSA keys to generate) for tests that do not need every certificate. */
function small(dir: string): PkiParams {
  const [kubernetes, , admin] = hardWayCertificates();
  return { dir, certificates: [kubernetes!, admin!], kubeconfigs: [{ name: 'admin', certificate: 'admin', server: 'https://127.0.0.1:6443' }], encryptionConfig: true };
}

const ALL_FILES = [
  'ca.pem',
  'ca-key.pem',
  'kubernetes.pem',
  'kubernetes-key.pem',
  'service-account.pem',
  'service-account-key.pem',
  'admin.pem',
  'admin-key.pem',
  'kube-controller-manager.pem',
  'kube-controller-manager-key.pem',
  'kube-scheduler.pem',
  'kube-scheduler-key.pem',
  'admin.kubeconfig',
  'kube-controller-manager.kubeconfig',
  'kube-scheduler.kubeconfig',
  'encryption-config.yaml',
];

const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8' });

/** Every file in a directory: content, mode and mtime, to prove what changed and what did not. */
function snapshot(dir: string): Record<string, { content: string; mode: number; mtimeMs: number }> {
  const out: Record<string, { content: string; mode: number; mtimeMs: number }> = {};
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const info = statSync(join(dir, name));
    out[name] = { content: readFileSync(join(dir, name), 'utf8'), mode: info.mode & 0o777, mtimeMs: info.mtimeMs };
  }
  return out;
}

function changedFiles(before: ReturnType<typeof snapshot>, after: ReturnType<typeof snapshot>): string[] {
  return Object.keys(after).filter((name) => before[name]?.content !== after[name]!.content).sort();
}

describe('pki: pure helpers', () => {
  it('normaliseIp writes IPv6 one way and leaves IPv4 alone', () => {
    expect(normaliseIp('0:0:0:0:0:0:0:1')).to.equal('::1');
    expect(normaliseIp('FD00:0::0A')).to.equal('fd00::a');
    expect(normaliseIp('10.32.0.1')).to.equal('10.32.0.1');
  });

  it('requestedSans and sanChange compare SAN sets, reporting what is added and removed', () => {
    const sans = requestedSans({ dnsNames: ['kubernetes'], ipAddresses: ['127.0.0.1', '0:0::1'] });
    expect(sans).to.deep.equal(['DNS:kubernetes', 'IP:127.0.0.1', 'IP:::1']);
    expect(sanChange(sans, [...sans].reverse())).to.equal(null);
    expect(sanChange(['DNS:a', 'IP:10.0.0.5'], ['DNS:a', 'IP:10.0.0.9'])).to.equal('SANs changed (+IP:10.0.0.9, -IP:10.0.0.5)');
  });

  it('renderKubeconfig writes what kubectl config --embed-certs=true writes', () => {
    const text = renderKubeconfig({ cluster: 'kubernetes-the-hard-way', server: 'https://127.0.0.1:6443', user: 'admin', caPem: 'CA\n', certPem: 'CERT\n', keyPem: 'KEY\n' });
    expect(text).to.equal(
      [
        'apiVersion: v1',
        'clusters:',
        '  - cluster:',
        '      certificate-authority-data: Q0EK',
        '      server: https://127.0.0.1:6443',
        '    name: kubernetes-the-hard-way',
        'contexts:',
        '  - context:',
        '      cluster: kubernetes-the-hard-way',
        '      user: admin',
        '    name: default',
        'current-context: default',
        'kind: Config',
        'preferences: {}',
        'users:',
        '  - name: admin',
        '    user:',
        '      client-certificate-data: Q0VSVAo=',
        '      client-key-data: S0VZCg==',
        '',
      ].join('\n'),
    );
  });

  it('renderEncryptionConfig is the seed EncryptionConfig, and encryptionKeyOf reads its key back', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const text = renderEncryptionConfig(key);
    expect(text).to.equal(
      [
        'kind: EncryptionConfig',
        'apiVersion: v1',
        'resources:',
        '  - resources:',
        '      - secrets',
        '    providers:',
        '      - aescbc:',
        '          keys:',
        '            - name: key1',
        `              secret: ${key}`,
        '      - identity: {}',
        '',
      ].join('\n'),
    );
    expect(encryptionKeyOf(text)).to.deep.equal({ key });
    expect(encryptionKeyOf('kind: EncryptionConfig\n')).to.deep.equal({ error: 'no aescbc key in it' });
    expect(encryptionKeyOf(renderEncryptionConfig('c2hvcnQ='))).to.deep.equal({ error: 'its aescbc key is not 32 bytes of base64' });
  });

  it('pkiFileNames lists the CA, each certificate with its key, kubeconfigs and the encryption config', () => {
    expect(pkiFileNames(hardWay('/x'))).to.deep.equal(ALL_FILES);
  });

  it('installedMode: keys, kubeconfigs and the encryption config 0600, certificates 0644', () => {
    expect(['ca.pem', 'ca-key.pem', 'admin.kubeconfig', 'encryption-config.yaml'].map(installedMode)).to.deep.equal(['0644', '0600', '0600', '0600']);
  });

  it('rejects bad parameters when the task is made', () => {
    const bad = (overrides: Partial<PkiParams>) => () => ensurePki(hardWay('/tmp/pki', overrides));
    expect(bad({ dir: 'relative' })).to.throw(/dir must be an absolute path/);
    expect(bad({ certificates: [{ name: 'a', commonName: 'a', usage: ['client'], ipAddresses: ['10.0.0.300'] }], kubeconfigs: [] })).to.throw(/"10.0.0.300" is not an IP address/);
    expect(bad({ certificates: [{ name: 'ca', commonName: 'a', usage: ['client'] }], kubeconfigs: [] })).to.throw(/clashes/);
    expect(bad({ certificates: [{ name: 'a', commonName: 'a', usage: [] }], kubeconfigs: [] })).to.throw(/usage must list/);
    expect(bad({ certificates: [{ name: 'a', commonName: 'a', usage: ['client'], validityDays: 20 }], kubeconfigs: [] })).to.throw(/validityDays must be a whole number above renewBeforeDays \(30\)/);
    expect(bad({ kubeconfigs: [{ name: 'x', certificate: 'nope', server: 'https://a:6443' }] })).to.throw(/certificate "nope" is not one of the certificates/);
    expect(bad({ kubeconfigs: [{ name: 'x', certificate: 'admin', server: 'http://a:6443' }] })).to.throw(/server must be an https:\/\/ URL/);
  });
});

describe('ensurePki on the local machine', function () {
  this.timeout(60_000);
  let local: ReturnType<typeof localHost>;
  let dir: string;
  beforeEach(() => {
    local = localHost();
    dir = join(local.dir, 'pki');
  });
  afterEach(() => local.cleanup());

  it('check mode on nothing reports every file missing and writes nothing', async () => {
    const outcome = await run(local, ensurePki(hardWay(dir)), true);
    expect(outcome.status).to.equal('changed');
    expect(outcome.value).to.be.instanceOf(Pending);
    expect(outcome.drift.map(describeDrift)).to.deep.equal([
      `${dir}: absent → directory 0700`,
      'ca.pem: missing → new CA',
      'ca-key.pem: missing → new key',
      'kubernetes-key.pem: missing → new key',
      'kubernetes.pem: missing → new certificate',
      'service-account-key.pem: missing → new key',
      'service-account.pem: missing → new certificate',
      'admin-key.pem: missing → new key',
      'admin.pem: missing → new certificate',
      'kube-controller-manager-key.pem: missing → new key',
      'kube-controller-manager.pem: missing → new certificate',
      'kube-scheduler-key.pem: missing → new key',
      'kube-scheduler.pem: missing → new certificate',
      'admin.kubeconfig: missing → new kubeconfig',
      'kube-controller-manager.kubeconfig: missing → new kubeconfig',
      'kube-scheduler.kubeconfig: missing → new kubeconfig',
      'encryption-config.yaml: missing → new aescbc key',
    ]);
    expect(existsSync(dir)).to.equal(false);
  });

  it('generates a PKI that openssl verifies, with the hard way subjects, SANs and usages, 0600 files in a 0700 dir', async () => {
    const outcome = await run(local, ensurePki(hardWay(dir)));
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(readdirSync(dir).sort()).to.deep.equal([...ALL_FILES].sort());
    expect(statSync(dir).mode & 0o777).to.equal(0o700);
    for (const name of ALL_FILES) expect(statSync(join(dir, name)).mode & 0o777, name).to.equal(0o600);

    for (const name of ['kubernetes', 'service-account', 'admin', 'kube-controller-manager', 'kube-scheduler']) {
      expect(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, `${name}.pem`))).to.equal(`${join(dir, `${name}.pem`)}: OK\n`);
      // The key is the certificate's: same public key.
      expect(openssl('pkey', '-in', join(dir, `${name}-key.pem`), '-pubout')).to.equal(openssl('x509', '-in', join(dir, `${name}.pem`), '-noout', '-pubkey'));
    }
    const x = (name: string, ...args: string[]) => openssl('x509', '-in', join(dir, `${name}.pem`), '-noout', ...args);
    expect(x('ca', '-subject')).to.equal('subject=CN = Kubernetes\n');
    expect(x('ca', '-ext', 'basicConstraints')).to.match(/CA:TRUE/);
    expect(x('kubernetes', '-subject')).to.equal('subject=O = Kubernetes, CN = kubernetes\n');
    expect(x('kubernetes', '-ext', 'subjectAltName')).to.equal(
      'X509v3 Subject Alternative Name: \n' +
        '    DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster, DNS:kubernetes.svc.cluster.local, ' +
        'IP Address:10.240.0.10, IP Address:10.240.0.11, IP Address:10.240.0.12, IP Address:10.240.0.40, IP Address:10.32.0.1, IP Address:127.0.0.1\n',
    );
    expect(x('kubernetes', '-ext', 'extendedKeyUsage')).to.equal('X509v3 Extended Key Usage: \n    TLS Web Server Authentication, TLS Web Client Authentication\n');
    expect(x('admin', '-subject')).to.equal('subject=O = system:masters, CN = admin\n');
    expect(x('admin', '-ext', 'extendedKeyUsage')).to.equal('X509v3 Extended Key Usage: \n    TLS Web Client Authentication\n');
    expect(x('kube-controller-manager', '-subject')).to.equal('subject=O = system:kube-controller-manager, CN = system:kube-controller-manager\n');
    expect(x('kube-scheduler', '-subject')).to.equal('subject=O = system:kube-scheduler, CN = system:kube-scheduler\n');
    expect(x('service-account', '-subject')).to.equal('subject=O = Kubernetes, CN = service-accounts\n');
    expect(openssl('rsa', '-in', join(dir, 'kubernetes-key.pem'), '-noout', '-text').split('\n')[0]).to.equal('Private-Key: (2048 bit, 2 primes)');
    const days = (Date.parse(x('admin', '-enddate').replace('notAfter=', '')) - Date.now()) / 86_400_000;
    expect(days).to.be.within(364.9, 365.1);

    // Kubeconfigs embed the CA and the component's own certificate and key, user = its CN.
    const kubeconfig = parse(readFileSync(join(dir, 'kube-scheduler.kubeconfig'), 'utf8'));
    const b64 = (name: string) => Buffer.from(readFileSync(join(dir, name), 'utf8')).toString('base64');
    expect(kubeconfig).to.deep.equal({
      apiVersion: 'v1',
      clusters: [{ cluster: { 'certificate-authority-data': b64('ca.pem'), server: 'https://127.0.0.1:6443' }, name: 'kubernetes-the-hard-way' }],
      contexts: [{ context: { cluster: 'kubernetes-the-hard-way', user: 'system:kube-scheduler' }, name: 'default' }],
      'current-context': 'default',
      kind: 'Config',
      preferences: {},
      users: [{ name: 'system:kube-scheduler', user: { 'client-certificate-data': b64('kube-scheduler.pem'), 'client-key-data': b64('kube-scheduler-key.pem') } }],
    });
    const key = encryptionKeyOf(readFileSync(join(dir, 'encryption-config.yaml'), 'utf8'));
    expect(key).to.have.property('key');

    // The value: every file, private ones as Secrets.
    const pki = outcome.value as Pki;
    expect(pki.dir).to.equal(dir);
    expect(Object.keys(pki.files)).to.deep.equal(ALL_FILES);
    expect(pki.files['ca.pem']).to.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'));
    for (const name of ['ca-key.pem', 'kubernetes-key.pem', 'admin.kubeconfig', 'encryption-config.yaml']) {
      expect(isSecret(pki.files[name]), name).to.equal(true);
      expect((pki.files[name] as Secret).reveal()).to.equal(readFileSync(join(dir, name), 'utf8'));
    }
    expect(JSON.stringify(pki)).not.to.match(/PRIVATE KEY/);

    // A second run changes nothing and still gives the value.
    const before = snapshot(dir);
    const second = await run(local, ensurePki(hardWay(dir)));
    expect(second.status).to.equal('ok');
    expect(second.drift).to.deep.equal([]);
    expect(Object.keys((second.value as Pki).files)).to.deep.equal(ALL_FILES);
    expect(snapshot(dir)).to.deep.equal(before);
  });

  it('a changed SAN re-issues only that certificate, keeping its key, and says why', async () => {
    await run(local, ensurePki(hardWay(dir)));
    const before = snapshot(dir);
    const moved = hardWay(dir, { certificates: hardWayCertificates([...CONTROLLER_IPS, '10.240.0.41', '10.32.0.1', '127.0.0.1']) });
    const check = await run(local, ensurePki(moved), true);
    expect(check.drift.map(describeDrift)).to.deep.equal(['kubernetes.pem: SANs changed (+IP:10.240.0.41, -IP:10.240.0.40) → new certificate']);
    expect(snapshot(dir)).to.deep.equal(before); // check mode wrote nothing
    const outcome = await run(local, ensurePki(moved));
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(changedFiles(before, snapshot(dir))).to.deep.equal(['kubernetes.pem']);
    expect(openssl('x509', '-in', join(dir, 'kubernetes.pem'), '-noout', '-ext', 'subjectAltName')).to.contain('IP Address:10.240.0.41, IP Address:10.32.0.1');
    expect(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'kubernetes.pem'))).to.match(/: OK\n$/);
    expect((await run(local, ensurePki(moved))).status).to.equal('ok');
  });

  it('re-issues a client certificate whose subject changed, and the kubeconfig that embeds it', async () => {
    await run(local, ensurePki(hardWay(dir)));
    const before = snapshot(dir);
    const params = hardWay(dir);
    params.certificates = params.certificates.map((c) => (c.name === 'admin' ? { ...c, organization: 'cluster-admins' } : c));
    const outcome = await run(local, ensurePki(params));
    expect(outcome.drift.map(describeDrift)).to.deep.equal([
      'admin.pem: subject changed (O=system:masters, CN=admin → O=cluster-admins, CN=admin) → new certificate',
      'admin.kubeconfig: its certificate admin.pem is re-issued → new kubeconfig',
    ]);
    expect(changedFiles(before, snapshot(dir))).to.deep.equal(['admin.kubeconfig', 'admin.pem']);
    const users = parse(readFileSync(join(dir, 'admin.kubeconfig'), 'utf8')).users;
    expect(users[0].user['client-certificate-data']).to.equal(Buffer.from(readFileSync(join(dir, 'admin.pem'))).toString('base64'));
  });

  it('a kubeconfig whose server changed is rewritten, certificates untouched', async () => {
    await run(local, ensurePki(hardWay(dir)));
    const before = snapshot(dir);
    const params = hardWay(dir);
    params.kubeconfigs = params.kubeconfigs!.map((k) => (k.name === 'admin' ? { ...k, server: 'https://10.240.0.40:6443' } : k));
    const outcome = await run(local, ensurePki(params));
    expect(outcome.drift.map(describeDrift)).to.deep.equal(['admin.kubeconfig: server changed (https://127.0.0.1:6443 → https://10.240.0.40:6443) → new kubeconfig']);
    expect(changedFiles(before, snapshot(dir))).to.deep.equal(['admin.kubeconfig']);
  });

  it('re-issues a certificate that expires within renewBeforeDays', async () => {
    await run(local, ensurePki(hardWay(dir, { renewBeforeDays: 10, certificates: hardWayCertificates().map((c) => ({ ...c, validityDays: 20 })) })));
    const before = snapshot(dir);
    const expiry = (name: string) => new Date(Date.parse(openssl('x509', '-in', join(dir, name), '-noout', '-enddate').replace('notAfter=', ''))).toISOString().slice(0, 10);
    const soon = expiry('admin.pem');
    expect((Date.parse(soon) - Date.now()) / 86_400_000).to.be.within(18, 20);
    const outcome = await run(local, ensurePki(hardWay(dir)));
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([
      `kubernetes.pem: expires ${soon} → new certificate`,
      `service-account.pem: expires ${soon} → new certificate`,
      `admin.pem: expires ${soon} → new certificate`,
      `kube-controller-manager.pem: expires ${soon} → new certificate`,
      `kube-scheduler.pem: expires ${soon} → new certificate`,
      'admin.kubeconfig: its certificate admin.pem is re-issued → new kubeconfig',
      'kube-controller-manager.kubeconfig: its certificate kube-controller-manager.pem is re-issued → new kubeconfig',
      'kube-scheduler.kubeconfig: its certificate kube-scheduler.pem is re-issued → new kubeconfig',
    ]);
    const after = snapshot(dir);
    // Keys, the CA and the encryption config stay; certificates are valid for a year again.
    expect(changedFiles(before, after)).to.deep.equal(
      ['admin.kubeconfig', 'admin.pem', 'kube-controller-manager.kubeconfig', 'kube-controller-manager.pem', 'kube-scheduler.kubeconfig', 'kube-scheduler.pem', 'kubernetes.pem', 'service-account.pem'],
    );
    expect((Date.parse(expiry('admin.pem')) - Date.now()) / 86_400_000).to.be.above(363);
  });

  it('a new CA re-issues every certificate; the encryption key is kept', async () => {
    await run(local, ensurePki(hardWay(dir)));
    const before = snapshot(dir);
    rmSync(join(dir, 'ca-key.pem'));
    const outcome = await run(local, ensurePki(hardWay(dir)));
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([
      'ca.pem: its key ca-key.pem is missing → new CA',
      'ca-key.pem: missing → new key',
      'kubernetes.pem: the CA is re-issued → new certificate',
      'service-account.pem: the CA is re-issued → new certificate',
      'admin.pem: the CA is re-issued → new certificate',
      'kube-controller-manager.pem: the CA is re-issued → new certificate',
      'kube-scheduler.pem: the CA is re-issued → new certificate',
      'admin.kubeconfig: the CA is re-issued → new kubeconfig',
      'kube-controller-manager.kubeconfig: the CA is re-issued → new kubeconfig',
      'kube-scheduler.kubeconfig: the CA is re-issued → new kubeconfig',
    ]);
    const after = snapshot(dir);
    expect(after['encryption-config.yaml']).to.deep.equal(before['encryption-config.yaml']);
    expect(after['kubernetes-key.pem']).to.deep.equal(before['kubernetes-key.pem']);
    expect(after['ca.pem']!.content).not.to.equal(before['ca.pem']!.content);
    for (const name of ['kubernetes', 'admin', 'service-account']) expect(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, `${name}.pem`))).to.match(/: OK\n$/);
    expect((await run(local, ensurePki(hardWay(dir)))).status).to.equal('ok');
  });

  it('replaces a certificate not signed by the CA or not matching its key', async () => {
    await run(local, ensurePki(small(dir)));
    const other = join(local.dir, 'other');
    await run(local, ensurePki({ ...small(other), kubeconfigs: [], encryptionConfig: false }));
    writeFileSync(join(dir, 'kubernetes.pem'), readFileSync(join(other, 'kubernetes.pem')));
    writeFileSync(join(dir, 'admin-key.pem'), readFileSync(join(other, 'admin-key.pem')));
    const check = await run(local, ensurePki(small(dir)), true);
    expect(check.drift.map(describeDrift)).to.deep.equal([
      'kubernetes.pem: not signed by the CA; key does not match → new certificate',
      'admin.pem: key does not match → new certificate',
      'admin.kubeconfig: its certificate admin.pem is re-issued → new kubeconfig',
    ]);
    const outcome = await run(local, ensurePki(small(dir)));
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'kubernetes.pem'))).to.match(/: OK\n$/);
    expect(openssl('pkey', '-in', join(dir, 'admin-key.pem'), '-pubout')).to.equal(openssl('x509', '-in', join(dir, 'admin.pem'), '-noout', '-pubkey'));
  });

  it('tightens file and directory modes without regenerating anything', async () => {
    await run(local, ensurePki(small(dir)));
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'admin-key.pem'), 0o644);
    const before = snapshot(dir);
    const outcome = await run(local, ensurePki(small(dir)));
    expect(outcome.drift.map(describeDrift)).to.deep.equal([`${dir}: mode 0755 → mode 0700`, 'admin-key.pem: mode 0644 → mode 0600']);
    expect(changedFiles(before, snapshot(dir))).to.deep.equal([]);
    expect(statSync(dir).mode & 0o777).to.equal(0o700);
    expect(statSync(join(dir, 'admin-key.pem')).mode & 0o777).to.equal(0o600);
  });

  it('never regenerates an existing encryption key; a broken one is an error that leaves it alone', async () => {
    await run(local, ensurePki(small(dir)));
    const config = readFileSync(join(dir, 'encryption-config.yaml'), 'utf8');
    rmSync(join(dir, 'ca.pem'));
    await run(local, ensurePki(small(dir)));
    expect(readFileSync(join(dir, 'encryption-config.yaml'), 'utf8')).to.equal(config);
    writeFileSync(join(dir, 'encryption-config.yaml'), 'kind: EncryptionConfig\n', { mode: 0o600 });
    const outcome = await run(local, ensurePki(small(dir)));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.match(/encryption-config.yaml exists but no aescbc key in it; it is never regenerated/);
    expect(readFileSync(join(dir, 'encryption-config.yaml'), 'utf8')).to.equal('kind: EncryptionConfig\n');
  });

  it('shows no private key, kubeconfig or encryption key in any drift or message', async () => {
    await run(local, ensurePki(small(dir)));
    const secrets = ['ca-key.pem', 'kubernetes-key.pem', 'admin.kubeconfig', 'encryption-config.yaml'].map((name) => readFileSync(join(dir, name), 'utf8'));
    const encryptionKey = (encryptionKeyOf(secrets[3]!) as { key: string }).key;
    rmSync(join(dir, 'ca.pem'));
    writeFileSync(join(dir, 'admin.kubeconfig'), 'garbage', { mode: 0o600 });
    const outcomes = [await run(local, ensurePki(small(dir)), true), await run(local, ensurePki(small(dir)))];
    expect(outcomes[1]!.status).to.equal('changed');
    // What is printed: drift and messages (the value's certificates are public; its secrets print as ***).
    expect(JSON.stringify(outcomes.map((o) => [o.drift, o.message]))).not.to.contain('BEGIN');
    const printed = JSON.stringify(outcomes);
    expect(printed).not.to.contain('PRIVATE KEY');
    expect(printed).not.to.contain(encryptionKey);
    for (const secret of secrets) {
      const line = secret.split('\n').find((l) => l.length > 40)!;
      expect(printed).not.to.contain(line);
    }
  });

  it('concurrent applies on several hosts share one PKI', async () => {
    const [a, b] = [localHost(), localHost()];
    try {
      const outcomes = await Promise.all([run(a, ensurePki(small(dir))), run(b, ensurePki(small(dir)))]);
      expect(outcomes.map((o) => o.status)).to.deep.equal(['changed', 'changed']);
      expect((outcomes[0]!.value as Pki).files['ca.pem']).to.equal((outcomes[1]!.value as Pki).files['ca.pem']);
      expect(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'kubernetes.pem'))).to.match(/: OK\n$/);
    } finally {
      a.cleanup();
      b.cleanup();
    }
  });
});

describe('installPkiFiles on a local host', function () {
  this.timeout(60_000);
  let local: ReturnType<typeof localHost>;
  let pki: Pki;
  const files = ['ca.pem', 'kubernetes.pem', 'kubernetes-key.pem', 'encryption-config.yaml', 'admin.kubeconfig'];
  beforeEach(async () => {
    local = localHost();
    pki = (await run(local, ensurePki(small(join(local.dir, 'pki'))))).value as Pki;
  });
  afterEach(() => local.cleanup());

  it('installs the files owned by root, keys 0600 and certificates 0644, then is unchanged', async () => {
    const dest = join(local.dir, 'var/lib/kubernetes');
    const task = installPkiFiles({ pki, files, dir: dest });
    const outcome = await run(local, task);
    expect(outcome.status, outcome.message).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([`${dest}: absent → directory`, ...files.map((f) => `${dest}/${f}`)]);
    expect(readdirSync(dest).sort()).to.deep.equal([...files].sort());
    for (const file of files) {
      const info = statSync(join(dest, file));
      expect(readFileSync(join(dest, file), 'utf8'), file).to.equal(readFileSync(join(local.dir, 'pki', file), 'utf8'));
      expect((info.mode & 0o777).toString(8), file).to.equal(installedMode(file).slice(1));
      expect([info.uid, info.gid], file).to.deep.equal([0, 0]);
    }
    expect(statSync(dest).mode & 0o777).to.equal(0o755);
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('reports one drift per file, never showing secret content, and fixes a mode alone', async () => {
    const dest = join(local.dir, 'k');
    mkdirSync(dest);
    await run(local, installPkiFiles({ pki, files, dir: dest }));
    writeFileSync(join(dest, 'kubernetes-key.pem'), 'stale key\n');
    writeFileSync(join(dest, 'ca.pem'), 'stale ca\n');
    chmodSync(join(dest, 'admin.kubeconfig'), 0o644);
    const outcome = await run(local, installPkiFiles({ pki, files, dir: dest }));
    expect(outcome.drift.map((d) => d.subject)).to.deep.equal([`${dest}/ca.pem`, `${dest}/kubernetes-key.pem`, `${dest}/admin.kubeconfig`]);
    expect(outcome.drift[0]!.diff).to.contain('-stale ca').and.to.contain('+-----BEGIN CERTIFICATE-----');
    expect(outcome.drift[1]!.diff).to.equal(`--- ${dest}/kubernetes-key.pem\n+++ ${dest}/kubernetes-key.pem\n(secret content differs: not shown)\n`);
    expect(describeDrift(outcome.drift[2]!)).to.equal(`${dest}/admin.kubeconfig: mode 0644 root:root → mode 0600 root:root`);
    expect(JSON.stringify(outcome)).not.to.match(/PRIVATE KEY|stale key/);
    expect(readFileSync(join(dest, 'kubernetes-key.pem'), 'utf8')).to.equal((pki.files['kubernetes-key.pem'] as Secret).reveal());
    expect(statSync(join(dest, 'admin.kubeconfig')).mode & 0o777).to.equal(0o600);
    expect((await run(local, installPkiFiles({ pki, files, dir: dest }))).status).to.equal('ok');
  });

  it('with a Pending PKI (check mode before it exists) every file would change (pending), nothing written', async () => {
    const dest = join(local.dir, 'pending');
    const outcome = await run(local, installPkiFiles({ pki: new Pending('PKI in /x on localhost'), files: ['ca.pem', 'kubernetes-key.pem'], dir: dest }), true);
    expect(outcome.status).to.equal('changed');
    expect(outcome.drift.map(describeDrift)).to.deep.equal([
      `${dest}: absent → directory`,
      `${dest}/ca.pem: from the PKI (pending: PKI in /x on localhost)`,
      `${dest}/kubernetes-key.pem: from the PKI (pending: PKI in /x on localhost)`,
    ]);
    expect(existsSync(dest)).to.equal(false);
  });

  it('fails clearly without a PKI, and rejects files the PKI does not have', async () => {
    const outcome = await run(local, installPkiFiles({ pki: undefined, files: ['ca.pem'], dir: join(local.dir, 'x') }));
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.match(/no PKI to install: the ensurePki play produced none/);
    expect(() => installPkiFiles({ pki, files: ['etcd.pem'], dir: '/var/lib/kubernetes' })).to.throw(/has no etcd.pem/);
    expect(() => installPkiFiles({ pki, files: ['../ca.pem'], dir: '/var/lib/kubernetes' })).to.throw(/is not a PKI file name/);
  });
});
