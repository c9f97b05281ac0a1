/**
 * Parsers of certificate lifetimes. Fixtures: test/fixtures/certs/check-expiration-1.34.txt is the
 * shape of kubeadm 1.33/1.34's `kubeadm certs check-expiration` as users post it (cmd/kubeadm/app/cmd/
 * certs.go: tabwriter minwidth 10 padding 3, `%-8v` for EXTERNALLY MANAGED so `no` carries 6 trailing
 * blanks, "Jan 02, 2006 15:04 MST", ShortHumanDuration); check-expiration-expiring.txt adds the rows
 * certs.go prints for an expired (`<invalid>`), an externally managed and a missing (`!MISSING!`)
 * certificate. openssl's `-enddate` line is OpenSSL's ASN1_TIME_print (day padded with a blank).
 * The hard way's files are made here with the real openssl, and read by the real command.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InputError } from '../../runner/errors.js';
import {
  expiringWithin,
  formatExpiry,
  parseCheckExpiration,
  parseOpensslEndDate,
  parseShortHumanDuration,
  certificateTable,
  shortHumanDuration,
} from '../../tasks/certs-parse.js';
import { apiserverEndpoint, expiryWarningText, listeningPorts, parseReadCertificates, readCertificates, readCertificatesCommand } from '../../tasks/certs.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/certs/${name}`, import.meta.url), 'utf8');
const DAY = 86_400;

describe('certificate lifetimes (tasks/certs-parse.ts)', () => {
  it('parses kubeadm 1.34 check-expiration: 11 certificates with their CA, 3 CAs', () => {
    const parsed = parseCheckExpiration(fixture('check-expiration-1.34.txt'));
    expect(parsed.certificates.map((c) => `${c.name} ${c.authority} ${c.residual} ${c.externallyManaged}`)).to.deep.equal([
      'admin.conf ca 360d false', 'apiserver ca 360d false', 'apiserver-etcd-client etcd-ca 360d false', 'apiserver-kubelet-client ca 360d false',
      'controller-manager.conf ca 360d false', 'etcd-healthcheck-client etcd-ca 360d false', 'etcd-peer etcd-ca 360d false', 'etcd-server etcd-ca 360d false',
      'front-proxy-client front-proxy-ca 360d false', 'scheduler.conf ca 360d false', 'super-admin.conf ca 360d false',
    ]);
    expect(parsed.certificates[1]!.expires!.toISOString()).to.equal('2026-08-19T09:03:00.000Z');
    expect(parsed.certificates[1]!.residualSeconds).to.equal(360 * DAY);
    expect(parsed.authorities.map((c) => `${c.name} ${c.authority} ${c.residual} ${c.expires!.toISOString()}`)).to.deep.equal([
      'ca undefined 9y 2035-08-17T09:03:00.000Z', 'etcd-ca undefined 9y 2035-08-17T09:03:00.000Z', 'front-proxy-ca undefined 9y 2035-08-17T09:03:00.000Z',
    ]);
  });

  it('expired, externally managed and missing rows; only renewable leaves count as expiring', () => {
    const parsed = parseCheckExpiration(fixture('check-expiration-expiring.txt'));
    expect(parsed.certificates.map((c) => [c.name, c.missing, c.externallyManaged, c.residualSeconds])).to.deep.equal([
      ['admin.conf', false, false, -1],
      ['apiserver', false, true, 16 * DAY],
      ['apiserver-etcd-client', false, false, 23 * 3600],
      ['front-proxy-client', true, false, undefined],
      ['scheduler.conf', false, false, 30 * DAY],
    ]);
    expect(parsed.authorities.map((c) => [c.name, c.missing, c.externallyManaged])).to.deep.equal([['ca', false, true], ['etcd-ca', true, false]]);
    // 30d is 30 days or more: not within 30 days. The external apiserver and the missing one: kubeadm cannot renew them.
    expect(expiringWithin(parsed.certificates, 30).map((c) => c.name)).to.deep.equal(['admin.conf', 'apiserver-etcd-client']);
    expect(expiringWithin(parsed.certificates, 31).map((c) => c.name)).to.deep.equal(['admin.conf', 'apiserver-etcd-client', 'scheduler.conf']);
    expect(expiringWithin(parsed.authorities, 3650)).to.deep.equal([]);
  });

  it('refuses output it cannot read instead of guessing', () => {
    expect(() => parseCheckExpiration('error: open /etc/kubernetes/pki/ca.crt: no such file or directory\n')).to.throw(/no certificate table/);
    const garbled = fixture('check-expiration-1.34.txt').replace('Aug 19, 2026 09:03 UTC   360d', 'someday   360d');
    expect(() => parseCheckExpiration(garbled)).to.throw(/unexpected EXPIRES 'someday'/);
    expect(() => parseShortHumanDuration('3 days')).to.throw(/not a kubeadm residual time/);
  });

  it('ShortHumanDuration both ways, and kubeadm\'s date format', () => {
    expect([-5, -1, 0, 59, 60, 3599, 3600, DAY - 1, DAY, 364 * DAY + 3600, 365 * DAY, 3650 * DAY].map(shortHumanDuration)).to.deep.equal(
      ['<invalid>', '0s', '0s', '59s', '1m', '59m', '1h', '23h', '1d', '364d', '1y', '10y'],
    );
    expect(['59s', '1m', '23h', '364d', '9y', '<invalid>'].map(parseShortHumanDuration)).to.deep.equal([59, 60, 23 * 3600, 364 * DAY, 9 * 365 * DAY, -1]);
    expect(formatExpiry(new Date('2027-12-03T07:05:59Z'))).to.equal('Dec 03, 2027 07:05 UTC');
  });

  it('parses openssl -enddate (blank-padded day)', () => {
    expect(parseOpensslEndDate('notAfter=Dec  3 07:32:09 2027 GMT\n').toISOString()).to.equal('2027-12-03T07:32:09.000Z');
    expect(parseOpensslEndDate('notAfter=Nov 27 17:35:31 2028 GMT').toISOString()).to.equal('2028-11-27T17:35:31.000Z');
    expect(() => parseOpensslEndDate('Could not open file or uri for loading certificate')).to.throw(/unexpected openssl -enddate output/);
  });

  it('one table of every host: kubeadm rows, CAs, kubelet client certificates, notes on what expires', () => {
    const cp = parseReadCertificates('cp1', `## now\n${Date.UTC(2026, 11, 4, 10, 15) / 1000}\n## kubeadm\n${fixture('check-expiration-expiring.txt')}## kubelet\nnotAfter=Dec 10 10:15:00 2026 GMT\n`);
    const worker = parseReadCertificates('w1', `## now\n${Date.UTC(2026, 11, 4, 10, 15) / 1000}\n## kubelet\nnotAfter=Dec  4 10:15:00 2027 GMT\n`);
    expect(worker).to.deep.equal({ host: 'w1', kubeletClient: { name: 'kubelet-client', expires: new Date('2027-12-04T10:15:00Z'), residualSeconds: 365 * DAY, residual: '1y', externallyManaged: false, missing: false } });
    const table = certificateTable([cp, worker], 30);
    expect(table.columns).to.deep.equal(['HOST', 'CERTIFICATE', 'EXPIRES', 'RESIDUAL TIME', 'CERTIFICATE AUTHORITY', 'NOTE']);
    expect(table.rows).to.deep.equal([
      ['cp1', 'admin.conf', 'Dec 01, 2026 10:15 UTC', '<invalid>', 'ca', 'expires within 30 days: kubeadm certs renew'],
      ['cp1', 'apiserver', 'Dec 20, 2026 10:15 UTC', '16d', 'ca', 'externally managed'],
      ['cp1', 'apiserver-etcd-client', 'Dec 05, 2026 08:00 UTC', '23h', 'etcd-ca', 'expires within 30 days: kubeadm certs renew'],
      ['cp1', 'front-proxy-client', '', '', '', 'missing'],
      ['cp1', 'scheduler.conf', 'Jan 03, 2027 10:15 UTC', '30d', 'ca', ''],
      ['cp1', 'ca', 'Dec 20, 2026 10:15 UTC', '16d', '', 'CA expires within 30 days: kubeadm does not renew CAs'],
      ['cp1', 'etcd-ca', '', '', '', 'missing'],
      ['cp1', 'kubelet-client', 'Dec 10, 2026 10:15 UTC', '6d', 'ca', 'expires within 30 days: the kubelet rotates it; is rotation failing?'],
      ['w1', 'kubelet-client', 'Dec 04, 2027 10:15 UTC', '1y', 'ca', ''],
    ]);
  });

  it('a failed kubeadm and an unreadable clock are errors, not empty tables', () => {
    expect(() => parseReadCertificates('cp1', '## now\n1764800000\n## kubeadm\nerror: something\n## kubeadm failed 1\n')).to.throw('kubeadm certs check-expiration failed (exit 1): error: something');
    expect(() => parseReadCertificates('cp1', '## now\nbusybox date\n')).to.throw(/could not read the host's clock/);
  });

  it('the API server endpoint from its manifest, and listening ports from ss -Hltn', () => {
    const manifest = '    - kube-apiserver\n    - --advertise-address=10.4.0.2\n    - --secure-port=6443\n';
    expect(apiserverEndpoint(manifest)).to.deep.equal({ address: '10.4.0.2', port: 6443 });
    expect(apiserverEndpoint('- --advertise-address=10.4.0.2\n')).to.deep.equal({ address: '10.4.0.2', port: 6443 });
    expect(() => apiserverEndpoint('- kube-apiserver\n')).to.throw(/no --advertise-address/);
    const ss = 'LISTEN 0      4096       127.0.0.1:2379       0.0.0.0:*\nLISTEN 0      4096               *:6443             *:*\nLISTEN 0      128           [::]:22            [::]:*\n';
    expect(listeningPorts(ss, [6443, 2379, 10257, 10259])).to.deep.equal([6443, 2379]);
  });
});

describe('the preflight warning (tasks/certs.ts)', () => {
  it('names what expires, says when lifetimes could not be read, and is silent otherwise', () => {
    const parsed = parseCheckExpiration(readFileSync(new URL('../fixtures/certs/check-expiration-expiring.txt', import.meta.url), 'utf8'));
    expect(expiryWarningText({ expiring: expiringWithin(parsed.certificates, 30) }, 30)).to.equal(
      'WARNING: admin.conf (<invalid>), apiserver-etcd-client (23h) expire within 30 days: renew with capstan run playbooks/certs.ts -e renew=true',
    );
    expect(expiryWarningText({ expiring: expiringWithin(parsed.certificates, 1) }, 1)).to.equal(
      'WARNING: admin.conf (<invalid>), apiserver-etcd-client (23h) expire within 1 day: renew with capstan run playbooks/certs.ts -e renew=true',
    );
    expect(expiryWarningText({ expiring: [] }, 30)).to.equal(undefined);
    expect(expiryWarningText({ expiring: [], unreadable: 'kubeadm certs check-expiration failed (exit 1): boom' }, 30)).to.equal(
      "WARNING: could not read the kubeadm certificates' lifetimes: kubeadm certs check-expiration failed (exit 1): boom",
    );
  });
});

describe('the hard way\'s certificate files (readCertificatesCommand, run by a local shell on openssl-made files)', () => {
  const run = promisify(execFile);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capstan-certs-'));
    const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
    await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '3650', '-subj', '/CN=Kubernetes');
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'admin-key.pem', '-out', 'admin.csr', '-subj', '/O=system:masters/CN=admin');
    await openssl('x509', '-req', '-in', 'admin.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'admin.pem', '-days', '20');
    const b64 = async (file: string) => (await readFile(join(dir, file))).toString('base64');
    // kubectl config set-credentials --embed-certs: the certificate and the key side by side, as the yaml package writes them.
    await writeFile(join(dir, 'admin.kubeconfig'), `apiVersion: v1\nkind: Config\nusers:\n  - name: admin\n    user:\n      client-certificate-data: ${await b64('admin.pem')}\n      client-key-data: ${await b64('admin-key.pem')}\n`);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads each file and each kubeconfig\'s client certificate in one command, never a key, and names what is missing', async () => {
    const command = readCertificatesCommand({ files: [`${dir}/ca.pem`, `${dir}/admin.pem`, `${dir}/gone.pem`], kubeconfigs: [`${dir}/admin.kubeconfig`] });
    const { stdout } = await run('sh', ['-c', command.text]);
    const keyBody = (await readFile(join(dir, 'admin-key.pem'), 'utf8')).split('\n')[1]!;
    expect(stdout).not.to.include(keyBody);
    expect(stdout).not.to.include(Buffer.from(await readFile(join(dir, 'admin-key.pem'))).toString('base64').slice(0, 40));
    const parsed = parseReadCertificates('controller-0', stdout);
    expect(parsed.kubeadm).to.equal(undefined);
    // Residual times against the host's clock, read in the same command: 20 days, less the seconds this test took.
    const days = (c: { residualSeconds?: number }) => (c.residualSeconds === undefined ? '-' : Math.round(c.residualSeconds / DAY));
    expect(parsed.files!.map((c) => [c.name, c.authority ?? '-', c.missing, days(c)])).to.deep.equal([
      [`${dir}/ca.pem`, '-', false, 3650],
      [`${dir}/admin.pem`, 'Kubernetes', false, 20],
      [`${dir}/gone.pem`, '-', true, '-'],
      [`${dir}/admin.kubeconfig`, 'Kubernetes', false, 20],
    ]);
    const table = certificateTable([parsed], 30);
    expect(table.rows.map((row) => [row[1], row[4], row[5]])).to.deep.equal([
      [`${dir}/ca.pem`, '', ''],
      [`${dir}/admin.pem`, 'Kubernetes', 'expires within 30 days: hard-way.ts re-issues it in its last 30 days'],
      [`${dir}/gone.pem`, '', 'missing'],
      [`${dir}/admin.kubeconfig`, 'Kubernetes', 'expires within 30 days: hard-way.ts re-issues it in its last 30 days'],
    ]);
    expect(certificateTable([parsed], 10).rows.map((row) => row[5])).to.deep.equal(['', '', 'missing', '']);
  });

  it('a file openssl cannot read is an error naming it, not a row made up', async () => {
    await writeFile(join(dir, 'broken.pem'), 'not a certificate\n');
    const { stdout } = await run('sh', ['-c', readCertificatesCommand({ files: [`${dir}/broken.pem`] }).text]);
    expect(() => parseReadCertificates('controller-0', stdout)).to.throw(`could not read the certificate ${dir}/broken.pem:`);
  });

  it('refuses relative or blank-holding paths before any host is contacted', () => {
    expect(() => readCertificates({ files: ['ca.pem'] })).to.throw(InputError, /certificate paths must be absolute, without blanks: "ca.pem"/);
    expect(() => readCertificates({ kubeconfigs: ['/var/lib/kubernetes/my admin.kubeconfig'] })).to.throw(InputError, /without blanks/);
  });
});
