import 'reflect-metadata'; // @peculiar/x509 (through tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate as NodeCertificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { defineTask, isSecret, Pending, Secret, sh, type ApplyContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireAbsolutePath, requireString } from './validate.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/*
 * Key algorithm: RSA 2048 with SHA-256 signatures, as the hard way's cfssl CSRs ask for
 * ("key": {"algo": "rsa", "size": 2048}). ECDSA P-256 would be smaller and faster to generate, and
 * Go (etcd, Kubernetes), OpenSSL (nginx) and Python's ssl/cryptography all accept it; RSA is chosen
 * because it is what the seed produces, it is the one kind every Kubernetes component and older
 * client accepts for every role (the service-account signing key included), and generation time
 * (a few hundred ms per key, once) does not matter for a PKI that is only generated once.
 * Private keys are written as PKCS#8 PEM ("BEGIN PRIVATE KEY"), which all those consumers read.
 */
const KEY_ALGORITHM = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
const CA_VALIDITY_DAYS = 3650;
const DAY_MS = 86_400_000;
/** Certificates start a little in the past, so hosts whose clocks lag a bit accept them (cfssl backdates too). */
const BACKDATE_MS = 5 * 60_000;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const ENCRYPTION_CONFIG = 'encryption-config.yaml';
const DEFAULT_CLUSTER = 'kubernetes-the-hard-way';

/* ------------------------------------------------------------------ parameters and value */

/** One certificate signed by the PKI's CA: `<name>.pem` and `<name>-key.pem`. */
export interface CertificateRequest {
  /** File stem: 'kubernetes' → kubernetes.pem + kubernetes-key.pem (the seed's names). */
  name: string;
  /** 'kubernetes', 'admin', 'system:kube-controller-manager', 'system:kube-scheduler', 'service-accounts'. */
  commonName: string;
  /** 'system:masters', 'Kubernetes', … (the O of the subject: Kubernetes reads it as the group). */
  organization?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Extended key usage: TLS server, TLS client, or both. */
  usage: ('server' | 'client')[];
  /** Default 365; must be more than renewBeforeDays. */
  validityDays?: number;
}

/** A kubeconfig with the CA and a client certificate embedded (`kubectl config … --embed-certs=true`). */
export interface KubeconfigRequest {
  /** File stem: 'admin' → admin.kubeconfig. */
  name: string;
  /** Name of one of the certificates (its CN becomes the kubeconfig's user). */
  certificate: string;
  /** API server URL, e.g. https://127.0.0.1:6443. */
  server: string;
  /** Cluster name in the kubeconfig; default 'kubernetes-the-hard-way'. */
  cluster?: string;
}

export interface PkiParams {
  /** Local state directory on the machine running capstan (0700; every file in it 0600). */
  dir: string;
  /** Default 'Kubernetes'. */
  caCommonName?: string;
  certificates: CertificateRequest[];
  kubeconfigs?: KubeconfigRequest[];
  /** encryption-config.yaml (aescbc, a random 32-byte key kept across runs, identity fallback). */
  encryptionConfig?: boolean;
  /** Re-issue a certificate (or the CA) expiring within this many days; default 30. */
  renewBeforeDays?: number;
}

/**
 * The generated PKI: file name → content. Certificates are strings; private keys, kubeconfigs
 * (they embed a key) and the encryption config are Secrets.
 */
export interface Pki {
  dir: string;
  files: Record<string, string | Secret>;
}

const certFile = (name: string) => `${name}.pem`;
const keyFile = (name: string) => `${name}-key.pem`;
const kubeconfigFile = (name: string) => `${name}.kubeconfig`;

/** Every file the PKI owns, in the order they are generated and listed. */
export function pkiFileNames(p: Pick<PkiParams, 'certificates' | 'kubeconfigs' | 'encryptionConfig'>): string[] {
  return [
    'ca.pem',
    'ca-key.pem',
    ...p.certificates.flatMap((c) => [certFile(c.name), keyFile(c.name)]),
    ...(p.kubeconfigs ?? []).map((k) => kubeconfigFile(k.name)),
    ...(p.encryptionConfig ? [ENCRYPTION_CONFIG] : []),
  ];
}

const isPrivate = (file: string) => file.endsWith('-key.pem') || file.endsWith('.kubeconfig') || file === ENCRYPTION_CONFIG;

/* ------------------------------------------------------------------ validation */

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function validatePki(p: PkiParams): void {
  requireAbsolutePath('dir', p.dir);
  if (p.caCommonName !== undefined) requireString('caCommonName', p.caCommonName);
  const renew = p.renewBeforeDays ?? 30;
  if (!Number.isInteger(renew) || renew < 0) throw new Error(`renewBeforeDays must be a whole number of days, got ${JSON.stringify(p.renewBeforeDays)}`);
  if (renew >= CA_VALIDITY_DAYS) throw new Error(`renewBeforeDays must be less than the CA's ${CA_VALIDITY_DAYS} days`);
  if (!Array.isArray(p.certificates)) throw new Error('certificates must be a list');
  const names = new Set<string>();
  for (const c of p.certificates) {
    if (typeof c?.name !== 'string' || !NAME.test(c.name)) throw new Error(`certificate name must be a file stem like "kubernetes", got ${JSON.stringify(c?.name)}`);
    if (c.name === 'ca' || c.name.endsWith('-key')) throw new Error(`certificate name ${c.name} clashes with the CA's or a key's file name`);
    if (names.has(c.name)) throw new Error(`certificate ${c.name} is listed twice`);
    names.add(c.name);
    requireString(`certificate ${c.name}: commonName`, c.commonName);
    if (c.organization !== undefined) requireString(`certificate ${c.name}: organization`, c.organization);
    for (const dns of c.dnsNames ?? []) {
      if (typeof dns !== 'string' || !/^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(dns)) throw new Error(`certificate ${c.name}: ${JSON.stringify(dns)} is not a DNS name`);
    }
    for (const ip of c.ipAddresses ?? []) {
      if (typeof ip !== 'string' || isIP(ip) === 0) throw new Error(`certificate ${c.name}: ${JSON.stringify(ip)} is not an IP address`);
    }
    if (!Array.isArray(c.usage) || c.usage.length === 0 || !c.usage.every((u) => u === 'server' || u === 'client')) {
      throw new Error(`certificate ${c.name}: usage must list 'server' and/or 'client'`);
    }
    const days = c.validityDays ?? 365;
    if (!Number.isInteger(days) || days <= renew || days > CA_VALIDITY_DAYS) {
      throw new Error(`certificate ${c.name}: validityDays must be a whole number above renewBeforeDays (${renew}) and at most ${CA_VALIDITY_DAYS}, got ${days}`);
    }
  }
  const kubeconfigs = new Set<string>();
  for (const k of p.kubeconfigs ?? []) {
    if (typeof k?.name !== 'string' || !NAME.test(k.name)) throw new Error(`kubeconfig name must be a file stem like "admin", got ${JSON.stringify(k?.name)}`);
    if (kubeconfigs.has(k.name)) throw new Error(`kubeconfig ${k.name} is listed twice`);
    kubeconfigs.add(k.name);
    if (!names.has(k.certificate)) throw new Error(`kubeconfig ${k.name}: certificate ${JSON.stringify(k.certificate)} is not one of the certificates`);
    if (typeof k.server !== 'string' || !/^https:\/\/[^\s/]+(\/\S*)?$/.test(k.server)) throw new Error(`kubeconfig ${k.name}: server must be an https:// URL, got ${JSON.stringify(k.server)}`);
    if (k.cluster !== undefined) requireString(`kubeconfig ${k.name}: cluster`, k.cluster);
  }
}

/* ------------------------------------------------------------------ pure helpers (unit tested) */

/** An IP address in one spelling (IPv6 compressed and lower case), so SAN sets compare equal. */
export function normaliseIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

/** The SANs a request asks for, as `DNS:x` / `IP:y`, sorted. */
export function requestedSans(c: Pick<CertificateRequest, 'dnsNames' | 'ipAddresses'>): string[] {
  return [...new Set([...(c.dnsNames ?? []).map((d) => `DNS:${d}`), ...(c.ipAddresses ?? []).map((ip) => `IP:${normaliseIp(ip)}`)])].sort();
}

/** "SANs changed (+IP:10.0.0.9, -IP:10.0.0.5)" or null when the sets are equal (pure). */
export function sanChange(current: string[], wanted: string[]): string | null {
  const added = wanted.filter((s) => !current.includes(s));
  const removed = current.filter((s) => !wanted.includes(s));
  if (added.length === 0 && removed.length === 0) return null;
  return `SANs changed (${[...added.map((s) => `+${s}`), ...removed.map((s) => `-${s}`)].join(', ')})`;
}

const subjectText = (cn: string, o: string | undefined) => (o === undefined ? `CN=${cn}` : `O=${o}, CN=${cn}`);
const usageText = (usage: readonly string[]) => [...new Set(usage)].sort().join('+');
const day = (date: Date) => date.toISOString().slice(0, 10);

/**
 * The kubeconfig `kubectl config set-cluster/set-credentials/set-context --embed-certs=true` and
 * `use-context default` write (the seed's *.kubeconfig), as text (pure).
 */
export function renderKubeconfig(input: { cluster: string; server: string; user: string; caPem: string; certPem: string; keyPem: string }): string {
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  return stringify(
    {
      apiVersion: 'v1',
      clusters: [{ cluster: { 'certificate-authority-data': b64(input.caPem), server: input.server }, name: input.cluster }],
      contexts: [{ context: { cluster: input.cluster, user: input.user }, name: 'default' }],
      'current-context': 'default',
      kind: 'Config',
      preferences: {},
      users: [{ name: input.user, user: { 'client-certificate-data': b64(input.certPem), 'client-key-data': b64(input.keyPem) } }],
    },
    { lineWidth: 0 },
  );
}

/** The seed's encryption-config.yaml: aescbc with `key1`, then identity (reads of data written before encryption). */
export function renderEncryptionConfig(keyBase64: string): string {
  return stringify(
    {
      kind: 'EncryptionConfig',
      apiVersion: 'v1',
      resources: [{ resources: ['secrets'], providers: [{ aescbc: { keys: [{ name: 'key1', secret: keyBase64 }] } }, { identity: {} }] }],
    },
    { lineWidth: 0 },
  );
}

/** The aescbc key of an encryption config, or an error saying what is wrong with it (pure). */
export function encryptionKeyOf(text: string): { key: string } | { error: string } {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (error) {
    return { error: `not YAML: ${(error as Error).message.split('\n')[0]}` };
  }
  const resources = (doc as { resources?: { providers?: { aescbc?: { keys?: { secret?: unknown }[] } }[] }[] } | null)?.resources;
  const secret = resources?.flatMap((r) => r.providers ?? []).find((p) => p.aescbc)?.aescbc?.keys?.[0]?.secret;
  if (typeof secret !== 'string') return { error: 'no aescbc key in it' };
  if (Buffer.from(secret, 'base64').length !== 32) return { error: 'its aescbc key is not 32 bytes of base64' };
  return { key: secret };
}

/* ------------------------------------------------------------------ reading the state directory */

interface LocalFile {
  text: string;
  mode: number;
}

interface ParsedCertificate {
  pem: string;
  node: NodeCertificate;
  commonName: string;
  organization: string | undefined;
  sans: string[];
  usage: string[];
  isCa: boolean;
  notAfter: Date;
}

async function readLocal(path: string): Promise<LocalFile | null> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    if (!info.isFile()) throw new Error(`${path} is not a regular file`);
    return { text, mode: info.mode & 0o7777 };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function parseCertificate(pem: string): ParsedCertificate | null {
  try {
    const cert = new x509.X509Certificate(pem);
    const node = new NodeCertificate(pem);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const sans = (san?.names.toJSON() ?? [])
      .map((n) => (n.type === 'dns' ? `DNS:${n.value}` : n.type === 'ip' ? `IP:${normaliseIp(n.value)}` : `${n.type}:${n.value}`))
      .sort();
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
    const usage = [...(eku.includes(x509.ExtendedKeyUsage.serverAuth) ? ['server'] : []), ...(eku.includes(x509.ExtendedKeyUsage.clientAuth) ? ['client'] : [])];
    return {
      pem,
      node,
      commonName: cert.subjectName.getField('CN')[0] ?? '',
      organization: cert.subjectName.getField('O')[0],
      sans,
      usage,
      isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca === true,
      notAfter: cert.notAfter,
    };
  } catch {
    return null;
  }
}

function parseKey(pem: string): KeyObject | null {
  try {
    const key = createPrivateKey(pem);
    return key.asymmetricKeyType === 'rsa' ? key : null; // what this PKI generates and signs with
  } catch {
    return null;
  }
}

/** What is wrong with one file and what will be done about it; no reason: the file is fine. */
interface Verdict {
  file: string;
  reason?: string;
  /** What apply writes: 'new CA', 'new certificate', 'new key', …; or 'mode 0600' for a mode fix only. */
  desired?: string;
}

interface Assessment {
  dirMissing: boolean;
  dirMode: number | null;
  verdicts: Verdict[];
  files: Map<string, LocalFile | null>;
  /** The CA is (re)generated: every certificate is re-issued. */
  newCa: boolean;
}

/** Reads the state directory and says, file by file, what is missing or invalid and why. Reads only. */
async function assess(p: PkiParams, now: Date): Promise<Assessment> {
  const renewBefore = (p.renewBeforeDays ?? 30) * DAY_MS;
  const expiring = (cert: ParsedCertificate) => cert.notAfter.getTime() - now.getTime() < renewBefore;
  const expiry = (cert: ParsedCertificate) => `${cert.notAfter.getTime() <= now.getTime() ? 'expired' : 'expires'} ${day(cert.notAfter)}`;
  const dirInfo = await stat(p.dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (dirInfo && !dirInfo.isDirectory()) throw new Error(`${p.dir} exists and is not a directory`);
  const files = new Map<string, LocalFile | null>();
  for (const name of pkiFileNames(p)) files.set(name, dirInfo ? await readLocal(join(p.dir, name)) : null);
  const verdicts: Verdict[] = [];

  // The CA: any problem means a new CA (key and certificate), which re-issues everything.
  const caCommonName = p.caCommonName ?? 'Kubernetes';
  const caFile = files.get('ca.pem') ?? null;
  const caKeyFile = files.get('ca-key.pem') ?? null;
  const ca = caFile ? parseCertificate(caFile.text) : null;
  const caKey = caKeyFile ? parseKey(caKeyFile.text) : null;
  let caReason: string | undefined;
  if (!caFile) caReason = 'missing';
  else if (!ca) caReason = 'unreadable';
  else if (!ca.isCa) caReason = 'not a CA certificate';
  else if (ca.commonName !== caCommonName) caReason = `subject changed (CN=${ca.commonName} → CN=${caCommonName})`;
  else if (!caKeyFile) caReason = 'its key ca-key.pem is missing';
  else if (!caKey || !ca.node.checkPrivateKey(caKey)) caReason = 'key does not match';
  else if (expiring(ca)) caReason = expiry(ca);
  const newCa = caReason !== undefined;
  if (newCa) {
    verdicts.push({ file: 'ca.pem', reason: caReason, desired: 'new CA' });
    verdicts.push({ file: 'ca-key.pem', reason: !caKeyFile ? 'missing' : !caKey ? 'unreadable' : `replaced with the CA (ca.pem: ${caReason})`, desired: 'new key' });
  }

  const reissued = new Set<string>();
  for (const c of p.certificates) {
    const certText = files.get(certFile(c.name)) ?? null;
    const keyText = files.get(keyFile(c.name)) ?? null;
    const key = keyText ? parseKey(keyText.text) : null;
    if (!keyText || !key) verdicts.push({ file: keyFile(c.name), reason: keyText ? 'unreadable (not an RSA private key)' : 'missing', desired: 'new key' });
    const cert = certText ? parseCertificate(certText.text) : null;
    const reasons: string[] = [];
    if (!certText) reasons.push('missing');
    else if (!cert) reasons.push('unreadable');
    else {
      if (newCa) reasons.push('the CA is re-issued');
      else if (!ca || cert.node.issuer !== ca.node.subject || !cert.node.verify(ca.node.publicKey)) reasons.push('not signed by the CA');
      if (!key) reasons.push(`its key ${keyFile(c.name)} is ${keyText ? 'unreadable' : 'missing'}`);
      else if (!cert.node.checkPrivateKey(key)) reasons.push('key does not match');
      const wantedSubject = subjectText(c.commonName, c.organization);
      const currentSubject = subjectText(cert.commonName, cert.organization);
      if (currentSubject !== wantedSubject) reasons.push(`subject changed (${currentSubject} → ${wantedSubject})`);
      const sans = sanChange(cert.sans, requestedSans(c));
      if (sans) reasons.push(sans);
      if (usageText(cert.usage) !== usageText(c.usage)) reasons.push(`usage changed (${usageText(cert.usage) || 'none'} → ${usageText(c.usage)})`);
      if (expiring(cert)) reasons.push(expiry(cert));
    }
    if (reasons.length > 0) {
      reissued.add(c.name);
      verdicts.push({ file: certFile(c.name), reason: reasons.join('; '), desired: 'new certificate' });
    }
  }

  for (const k of p.kubeconfigs ?? []) {
    const file = kubeconfigFile(k.name);
    const current = files.get(file) ?? null;
    let reason: string | undefined;
    if (!current) reason = 'missing';
    else if (newCa) reason = 'the CA is re-issued';
    else if (reissued.has(k.certificate)) reason = `its certificate ${certFile(k.certificate)} is re-issued`;
    else if (current.text !== desiredKubeconfig(p, k, files)) reason = kubeconfigDifference(current.text, k);
    if (reason) verdicts.push({ file, reason, desired: 'new kubeconfig' });
  }

  if (p.encryptionConfig) {
    const current = files.get(ENCRYPTION_CONFIG) ?? null;
    if (!current) verdicts.push({ file: ENCRYPTION_CONFIG, reason: 'missing', desired: 'new aescbc key' });
    else {
      const parsed = encryptionKeyOf(current.text);
      // Never replaced: its key encrypts the Secrets stored in etcd, which a new key could not read.
      if ('error' in parsed) throw new Error(`${join(p.dir, ENCRYPTION_CONFIG)} exists but ${parsed.error}; it is never regenerated (its key encrypts Secrets in etcd): repair it, or remove it if nothing was encrypted with it`);
    }
  }

  // Files that are fine but too open.
  const replaced = new Set(verdicts.map((v) => v.file));
  for (const [file, local] of files) {
    if (local && !replaced.has(file) && local.mode !== FILE_MODE) verdicts.push({ file, reason: `mode ${octal(local.mode)}`, desired: `mode ${octal(FILE_MODE)}` });
  }
  return { dirMissing: !dirInfo, dirMode: dirInfo ? dirInfo.mode & 0o7777 : null, verdicts, files, newCa };
}

const octal = (mode: number) => mode.toString(8).padStart(4, '0');

function desiredKubeconfig(p: PkiParams, k: KubeconfigRequest, files: Map<string, LocalFile | null>): string | null {
  const request = p.certificates.find((c) => c.name === k.certificate)!;
  const caPem = files.get('ca.pem')?.text;
  const certPem = files.get(certFile(k.certificate))?.text;
  const keyPem = files.get(keyFile(k.certificate))?.text;
  if (caPem === undefined || certPem === undefined || keyPem === undefined) return null;
  return renderKubeconfig({ cluster: k.cluster ?? DEFAULT_CLUSTER, server: k.server, user: request.commonName, caPem, certPem, keyPem });
}

/** Why an existing kubeconfig is not the one wanted, without showing any of its (secret) data. */
function kubeconfigDifference(text: string, k: KubeconfigRequest): string {
  try {
    const doc = parse(text) as { clusters?: { cluster?: { server?: unknown }; name?: unknown }[] } | null;
    const server = doc?.clusters?.[0]?.cluster?.server;
    if (server !== k.server) return `server changed (${String(server)} → ${k.server})`;
    const cluster = doc?.clusters?.[0]?.name;
    if (cluster !== (k.cluster ?? DEFAULT_CLUSTER)) return `cluster name changed (${String(cluster)} → ${k.cluster ?? DEFAULT_CLUSTER})`;
  } catch {
    return 'unreadable';
  }
  return 'does not embed the current certificates';
}

/* ------------------------------------------------------------------ generation */

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return `${x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY')}\n`;
}

/** A PEM private key as WebCrypto keys (the public half derived from it), for signing with an existing key. */
async function importKeyPair(pem: string): Promise<CryptoKeyPair> {
  const privateObject = createPrivateKey(pem);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', privateObject.export({ type: 'pkcs8', format: 'der' }), KEY_ALGORITHM, true, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', createPublicKey(privateObject).export({ type: 'spki', format: 'der' }), KEY_ALGORITHM, true, ['verify']);
  return { privateKey, publicKey } as CryptoKeyPair;
}

function subjectName(cn: string, o: string | undefined): x509.JsonName {
  return o === undefined ? [{ CN: [cn] }] : [{ O: [o] }, { CN: [cn] }];
}

async function createCa(commonName: string, now: Date): Promise<{ certPem: string; keyPem: string }> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: subjectName(commonName, undefined),
    keys,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: `${cert.toString('pem')}\n`, keyPem: await privateKeyPem(keys.privateKey) };
}

async function issue(c: CertificateRequest, keys: CryptoKeyPair, caPem: string, caKeyPem: string, now: Date): Promise<string> {
  const ca = new x509.X509Certificate(caPem);
  const caKeys = await importKeyPair(caKeyPem);
  const notAfter = Math.min(now.getTime() + (c.validityDays ?? 365) * DAY_MS, ca.notAfter.getTime());
  const usages = [...(c.usage.includes('server') ? [x509.ExtendedKeyUsage.serverAuth] : []), ...(c.usage.includes('client') ? [x509.ExtendedKeyUsage.clientAuth] : [])];
  const sans: x509.JsonGeneralName[] = [...(c.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })), ...(c.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value }))];
  const cert = await x509.X509CertificateGenerator.create({
    subject: subjectName(c.commonName, c.organization),
    issuer: ca.subjectName,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(notAfter),
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(usages),
      ...(sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return `${cert.toString('pem')}\n`;
}

/** Writes a file atomically with mode 0600: temp file in the same directory, fsync, rename, fsync the directory. */
async function writeAtomic(dir: string, name: string, content: string): Promise<void> {
  const temp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', FILE_MODE);
    try {
      await handle.writeFile(content);
      await handle.chmod(FILE_MODE); // the umask may have narrowed it, never widened; be exact anyway
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(dir, name));
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** One apply per directory at a time in this process, so tasks on several hosts cannot interleave their writes. */
const dirLocks = new Map<string, Promise<void>>();

async function locked<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const key = resolve(dir);
  const before = dirLocks.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  dirLocks.set(key, before.then(() => mine));
  await before;
  try {
    return await work();
  } finally {
    release();
  }
}

/** Generates what the assessment found missing or invalid. Re-assesses first: the state may have changed since check. */
async function converge(ctx: ApplyContext, p: PkiParams): Promise<void> {
  const now = new Date();
  const state = await assess(p, now);
  if (state.dirMissing) await mkdir(p.dir, { recursive: true, mode: DIR_MODE });
  if (state.dirMode !== DIR_MODE) await chmod(p.dir, DIR_MODE);
  const todo = new Map(state.verdicts.map((v) => [v.file, v]));
  const text = (name: string) => state.files.get(name)?.text;
  const written = new Map<string, string>();
  const put = async (name: string, content: string) => {
    await writeAtomic(p.dir, name, content);
    written.set(name, content);
  };
  const current = (name: string) => written.get(name) ?? text(name);

  if (state.newCa) {
    const ca = await createCa(p.caCommonName ?? 'Kubernetes', now);
    // The key first: a run that stops in between leaves a CA that does not match its key, which the next run replaces.
    await put('ca-key.pem', ca.keyPem);
    await put('ca.pem', ca.certPem);
    ctx.log(`generated a new CA (${todo.get('ca.pem')?.reason}), valid until ${day(new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS))}`);
  }
  for (const c of p.certificates) {
    const keyVerdict = todo.get(keyFile(c.name));
    const certVerdict = todo.get(certFile(c.name));
    if (!keyVerdict?.desired?.startsWith('new') && !certVerdict?.desired?.startsWith('new')) continue;
    let keys: CryptoKeyPair;
    if (keyVerdict?.desired === 'new key') {
      keys = await newKeyPair();
      await put(keyFile(c.name), await privateKeyPem(keys.privateKey));
    } else {
      // A valid key is kept: the service-account key, for one, signs tokens that must stay valid.
      keys = await importKeyPair(current(keyFile(c.name))!);
    }
    await put(certFile(c.name), await issue(c, keys, current('ca.pem')!, current('ca-key.pem')!, now));
    ctx.log(`issued ${certFile(c.name)} for ${subjectText(c.commonName, c.organization)} (${certVerdict?.reason ?? `${keyFile(c.name)} ${keyVerdict?.reason}`})`);
  }
  for (const k of p.kubeconfigs ?? []) {
    const request = p.certificates.find((c) => c.name === k.certificate)!;
    const content = renderKubeconfig({
      cluster: k.cluster ?? DEFAULT_CLUSTER,
      server: k.server,
      user: request.commonName,
      caPem: current('ca.pem')!,
      certPem: current(certFile(k.certificate))!,
      keyPem: current(keyFile(k.certificate))!,
    });
    if (content !== text(kubeconfigFile(k.name))) {
      await put(kubeconfigFile(k.name), content);
      ctx.log(`wrote ${kubeconfigFile(k.name)} (server ${k.server}, user ${request.commonName})`);
    }
  }
  if (p.encryptionConfig && todo.get(ENCRYPTION_CONFIG)?.desired === 'new aescbc key') {
    await put(ENCRYPTION_CONFIG, renderEncryptionConfig(randomBytes(32).toString('base64')));
    ctx.log(`generated ${ENCRYPTION_CONFIG} with a new aescbc key`);
  }
  for (const v of state.verdicts) if (v.desired === `mode ${octal(FILE_MODE)}` && !written.has(v.file)) await chmod(join(p.dir, v.file), FILE_MODE);
}

/** Loads the PKI's files; private ones as Secrets. */
async function loadPki(p: PkiParams): Promise<Pki> {
  const files: Record<string, string | Secret> = {};
  for (const name of pkiFileNames(p)) {
    const file = await readLocal(join(p.dir, name));
    if (!file) throw new Error(`${join(p.dir, name)} is missing`);
    files[name] = isPrivate(name) ? new Secret(file.text) : file.text;
  }
  return { dir: p.dir, files };
}

/**
 * Ensures a Kubernetes PKI in a directory on the machine running capstan (the hard way's cfssl
 * step): a CA, certificates signed by it, kubeconfigs embedding them, and encryption-config.yaml.
 * Run it on `'localhost'` (the implicit local host). Files are written atomically, mode 0600 in
 * a 0700 directory.
 *
 * Idempotent: valid files are never regenerated. A certificate is re-issued (and reported, one
 * drift per file with the reason) when it is missing, expires within `renewBeforeDays`, is not
 * signed by the CA, does not match its key, or its subject, SANs or usage changed; its key is kept
 * when valid. A missing or expiring CA means a new CA and every certificate re-issued. The
 * encryption key is never regenerated once it exists (it encrypts Secrets in etcd). --check reads
 * and writes nothing. The value is the {@link Pki}: private keys, kubeconfigs and the encryption
 * config are Secrets, never shown in output or diffs.
 *
 * @example
 * const pki = ensurePki({
 *   dir: `${process.env.HOME}/.capstan/pki/hard-way`,
 *   certificates: [
 *     { name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', usage: ['server', 'client'],
 *       ipAddresses: ['10.240.0.10', '10.32.0.1', '127.0.0.1'], dnsNames: ['kubernetes', 'kubernetes.default'] },
 *     { name: 'admin', commonName: 'admin', organization: 'system:masters', usage: ['client'] },
 *   ],
 *   kubeconfigs: [{ name: 'admin', certificate: 'admin', server: 'https://127.0.0.1:6443' }],
 *   encryptionConfig: true,
 * });
 * const made = await play('PKI', 'localhost', [pki]);
 * await play('certificates', 'controllers', [installPkiFiles({ pki: made.value(pki), files: ['ca.pem', 'kubernetes.pem', 'kubernetes-key.pem'], dir: '/var/lib/kubernetes' })]);
 */
export function ensurePki(params: PerHostParams<PkiParams>, options?: TaskOptions): Task<Pki> {
  return defineTask<PkiParams, Pki>(
    {
      kind: 'pki',
      id: (p) => `pki:${p.dir}`,
      title: (p) => `PKI in ${p.dir}`,
      validate: validatePki,
      async check(_ctx, p) {
        const state = await assess(p, new Date());
        const drift: Drift[] = [];
        if (state.dirMissing) drift.push({ subject: p.dir, current: 'absent', desired: `directory ${octal(DIR_MODE)}` });
        else if (state.dirMode !== DIR_MODE) drift.push({ subject: p.dir, current: `mode ${octal(state.dirMode!)}`, desired: `mode ${octal(DIR_MODE)}` });
        for (const v of state.verdicts) drift.push({ subject: v.file, current: v.reason ?? null, desired: v.desired ?? null });
        return drift;
      },
      apply: (ctx, p) => locked(p.dir, () => converge(ctx, p)),
      result: (_ctx, p) => loadPki(p),
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ installPkiFiles */

export interface InstallPkiFilesParams {
  /** The ensurePki play's value: `pkiPlay.value(pkiTask)`. Pending in --check before the PKI exists. */
  pki: Pki | Pending | undefined;
  /** File names from the PKI: 'ca.pem', 'kubernetes-key.pem', 'admin.kubeconfig', 'encryption-config.yaml', … */
  files: string[];
  /** Directory on the host, e.g. /var/lib/kubernetes (made, 0755 root, when missing). */
  dir: string;
}

/** Mode of an installed PKI file: private keys, kubeconfigs and the encryption config 0600, certificates 0644. */
export function installedMode(file: string): string {
  return isPrivate(file) ? '0600' : '0644';
}

/**
 * Puts files of a generated PKI into a directory on the host (the seed's
 * `sudo mv ca.pem ca-key.pem kubernetes-key.pem … /var/lib/kubernetes/`), owned by root: keys,
 * kubeconfigs and the encryption config 0600, certificates 0644. One drift per file. In --check
 * before the PKI exists (its value is Pending), every file is reported as "would change (pending …)".
 *
 * @example
 * const pki = ensurePki({ dir: `${process.env.HOME}/.capstan/pki/hard-way`, certificates: [], kubeconfigs: [], encryptionConfig: true });
 * const pkiPlay = await play('PKI', 'localhost', [pki]);
 * await play('certificates', 'controllers', [installPkiFiles({ pki: pkiPlay.value(pki), dir: '/var/lib/kubernetes',
 *   files: ['ca.pem', 'ca-key.pem', 'kubernetes.pem', 'kubernetes-key.pem', 'service-account.pem', 'service-account-key.pem', 'encryption-config.yaml'] })]);
 */
export function installPkiFiles(params: PerHostParams<InstallPkiFilesParams>, options?: TaskOptions): Task<void> {
  return defineTask<InstallPkiFilesParams>(
    {
      kind: 'pki-files',
      id: (p) => `pki-files:${p.dir}:${p.files.join(',')}`,
      title: (p) => `PKI files ${p.files.join(', ')} in ${p.dir}`,
      desired: (p) => ({ dir: p.dir, files: p.files }),
      claims: (p) => p.files.map((file) => ({ id: `file:${p.dir}/${file}`, desired: { from: 'pki', file, mode: installedMode(file) } })),
      validate: (p) => {
        requireAbsolutePath('dir', p.dir);
        if (!Array.isArray(p.files) || p.files.length === 0) throw new Error('files must list at least one PKI file');
        for (const file of p.files) if (typeof file !== 'string' || !NAME.test(file)) throw new Error(`${JSON.stringify(file)} is not a PKI file name`);
        if (new Set(p.files).size !== p.files.length) throw new Error('files lists a file twice');
        const pki = p.pki;
        if (pki !== undefined && !(pki instanceof Pending)) {
          if (typeof pki?.files !== 'object' || pki.files === null) throw new Error('pki must be the value of an ensurePki task');
          const missing = p.files.filter((f) => !(f in pki.files));
          if (missing.length > 0) throw new Error(`the PKI in ${pki.dir} has no ${missing.join(', ')} (it has ${Object.keys(pki.files).join(', ')})`);
        }
      },
      probes: (p) => [{ kind: 'stat', path: p.dir }, ...p.files.flatMap((f) => [{ kind: 'stat' as const, path: `${p.dir}/${f}` }, { kind: 'read' as const, path: `${p.dir}/${f}` }])],
      async check(ctx, p) {
        const drift: Drift[] = [];
        const dir = await ctx.stat(p.dir);
        if (dir && dir.type !== 'directory') throw new Error(`${p.dir} exists and is not a directory`);
        if (!dir) drift.push({ subject: p.dir, current: 'absent', desired: 'directory' });
        if (p.pki instanceof Pending) {
          const reason = p.pki.reason;
          return [...drift, ...p.files.map((file) => ({ subject: `${p.dir}/${file}`, desired: 'from the PKI', pending: reason }))];
        }
        if (p.pki === undefined) throw new Error('no PKI to install: the ensurePki play produced none (did it fail, or not run?)');
        for (const file of p.files) {
          const path = `${p.dir}/${file}`;
          const wanted = p.pki.files[file]!;
          const stat = dir ? await ctx.stat(path) : null;
          if (stat && stat.type !== 'file') throw new Error(`${path} exists and is not a regular file`);
          const current = stat ? await ctx.readText(path) : null;
          const wantedText = isSecret(wanted) ? wanted.reveal() : wanted;
          if (current !== wantedText) {
            const secret = isSecret(wanted);
            drift.push({ subject: path, file: path, current: current === null ? null : secret ? new Secret(current) : current, desired: wanted });
            continue;
          }
          const attributes = `mode ${installedMode(file)} root:root`;
          const actual = `mode ${stat!.mode} ${stat!.owner}:${stat!.group}`;
          if (actual !== attributes) drift.push({ subject: path, current: actual, desired: attributes });
        }
        return drift;
      },
      async apply(ctx, p, drift) {
        const pki = p.pki;
        if (pki === undefined || pki instanceof Pending) throw new Error('no PKI to install');
        if (drift.some((d) => d.subject === p.dir)) await ctx.run(sh`install -d -m 0755 -o root -g root -- ${p.dir}`);
        for (const file of p.files) {
          const path = `${p.dir}/${file}`;
          const d = drift.find((x) => x.subject === path);
          if (!d) continue;
          const mode = installedMode(file);
          if (d.file !== undefined) await ctx.writeFile(path, pki.files[file]!, { mode, owner: 'root', group: 'root' });
          else await ctx.run(sh`chmod ${mode} -- ${path} && chown root:root -- ${path}`);
        }
      },
    },
    params,
    options,
  );
}
