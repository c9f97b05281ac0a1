/**
 * Test support for "the hard way" (seed 003) on lab hosts: the STAND-IN control-plane binaries
 * (test doubles: the real kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
 * cannot be downloaded here), built as single-file executables so a playbook installs them exactly
 * as the seed does (download, sha256, 0755 into /usr/local/bin); a tiny HTTP file server on
 * 127.0.0.1 for the controller machine to download them from; and a test PKI made with openssl
 * (the seed's file names). See test/lab/README.md for what the stand-ins reproduce.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';

const exec = promisify(execFile);

/** The stand-ins' Python sources. */
export const STANDIN_DIR = join(dirname(fileURLToPath(import.meta.url)), 'standins');

/** Debian packages the hard-way stand-ins need on a host (the interpreter and the modules they import). */
export const HARDWAY_HOST_PACKAGES: string[] = ['python3', 'python3-yaml', 'python3-cryptography'];

export interface StandInBinary {
  name: 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl';
  path: string;
  sha256: string;
}

/** Which module each executable runs, and the modules zipped with it. */
const BINARIES: { name: StandInBinary['name']; main: string; modules: string[] }[] = [
  { name: 'kube-apiserver', main: 'import hardway_apiserver\nhardway_apiserver.main()\n', modules: ['hardway_apiserver.py', 'hardway_common.py', 'standin_servers.py', 'standin_common.py'] },
  { name: 'kube-controller-manager', main: 'import hardway_components\nhardway_components.main("kube-controller-manager")\n', modules: ['hardway_components.py', 'hardway_common.py', 'standin_servers.py', 'standin_common.py'] },
  { name: 'kube-scheduler', main: 'import hardway_components\nhardway_components.main("kube-scheduler")\n', modules: ['hardway_components.py', 'hardway_common.py', 'standin_servers.py', 'standin_common.py'] },
  { name: 'kubectl', main: 'import kubectl\nkubectl.main()\n', modules: ['kubectl.py', 'pflag.py', 'standin_common.py'] },
];

/** The version the binaries report unless built with another (the other stand-ins' default). */
export const HARDWAY_DEFAULT_VERSION = 'v1.34.1';

/**
 * A ZIP archive (stored, no compression) of `files`, with fixed timestamps so the same sources
 * always give the same bytes (and the same sha256). Pure.
 */
export function zipStored(files: { name: string; data: Buffer }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  const dosTime = 0; // 00:00:00
  const dosDate = (2020 - 1980) << 9 | 1 << 5 | 1; // 2020-01-01
  for (const file of files) {
    const name = Buffer.from(file.name, 'utf8');
    const crc = crc32(file.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt16LE(dosTime, 10);
    local.writeUInt16LE(dosDate, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(file.data.length, 18);
    local.writeUInt32LE(file.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, name, file.data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x031e, 4); // made by: Unix, 3.0
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(dosTime, 12);
    central.writeUInt16LE(dosDate, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(file.data.length, 20);
    central.writeUInt32LE(file.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + file.data.length;
  }
  const centralSize = centrals.reduce((sum, part) => sum + part.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

/**
 * Builds the hard-way stand-ins into `outDir` as single-file executables: `#!/usr/bin/python3`
 * followed by a ZIP of the modules they need (a Python zipapp; the offsets in a ZIP are relative
 * to its end, so the prefix is harmless), mode 0755. `version` is baked in (what /version and
 * `--version` report, and which flags the binaries know); /etc/standin/version on a host still
 * wins, as for the other stand-ins. Returns each binary with its sha256 (hex), stable for the same
 * sources and version.
 */
export async function buildHardWayBinaries(outDir: string, options: { version?: string } = {}): Promise<StandInBinary[]> {
  const version = options.version ?? HARDWAY_DEFAULT_VERSION;
  if (!/^v\d+\.\d+\.\d+$/.test(version)) throw new Error(`version must look like v1.34.1, got ${JSON.stringify(version)}`);
  await mkdir(outDir, { recursive: true });
  const out: StandInBinary[] = [];
  for (const binary of BINARIES) {
    const files = [
      { name: '__main__.py', data: Buffer.from(`# Capstan lab stand-in (a TEST DOUBLE, never ship it): ${binary.name}\n${binary.main}`) },
      { name: 'standin_build.py', data: Buffer.from(`VERSION = ${JSON.stringify(version)}\nNAME = ${JSON.stringify(binary.name)}\n`) },
      ...(await Promise.all(binary.modules.map(async (module) => ({ name: module, data: await readFile(join(STANDIN_DIR, module)) })))),
    ];
    const data = Buffer.concat([Buffer.from('#!/usr/bin/python3\n'), zipStored(files)]);
    const path = join(outDir, binary.name);
    await writeFile(path, data);
    await chmod(path, 0o755);
    out.push({ name: binary.name, path, sha256: createHash('sha256').update(data).digest('hex') });
  }
  return out;
}

/**
 * Serves `files` over plain HTTP on 127.0.0.1 (a random port) at `<baseUrl>/<name>`: the
 * controller machine downloads from here, then uploads to the hosts. GET and HEAD only; anything
 * else is 404/405.
 */
export async function serveFiles(files: { name: string; path: string }[]): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const byName = new Map(files.map((file) => [`/${encodeURIComponent(file.name)}`, file.path]));
  const server = createServer((req, res) => {
    const path = byName.get((req.url ?? '').split('?')[0]!);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (!path) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    stat(path).then(
      (info) => {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(info.size) });
        if (req.method === 'HEAD') res.end();
        else createReadStream(path).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/* ------------------------------------------------------------------ a test PKI (openssl) */

export interface TestCertificate {
  name: string;
  commonName: string;
  organization?: string;
  ipAddresses?: string[];
  dnsNames?: string[];
}

/**
 * Makes a CA (ca.pem, ca-key.pem) and certificates signed by it (<name>.pem, <name>-key.pem, both
 * server and client auth, as the seed's cfssl "kubernetes" profile) in `dir` with the openssl CLI.
 * Keys are 0600. Returns the directory.
 */
export async function makeTestPki(dir: string, certificates: TestCertificate[]): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const openssl = (args: string[]) => exec('openssl', args, { cwd: dir });
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '30', '-subj', '/O=Kubernetes/CN=Kubernetes',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']);
  await chmod(join(dir, 'ca-key.pem'), 0o600);
  for (const cert of certificates) {
    const subject = `${cert.organization ? `/O=${cert.organization}` : ''}/CN=${cert.commonName}`;
    const sans = [...(cert.dnsNames ?? []).map((n) => `DNS:${n}`), ...(cert.ipAddresses ?? []).map((ip) => `IP:${ip}`)];
    const ext = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
    ].join('\n');
    await writeFile(join(dir, `${cert.name}.ext`), `${ext}\n`);
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${cert.name}-key.pem`, '-out', `${cert.name}.csr`, '-subj', subject]);
    await openssl(['x509', '-req', '-in', `${cert.name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${cert.name}.pem`, '-days', '30', '-extfile', `${cert.name}.ext`]);
    await chmod(join(dir, `${cert.name}-key.pem`), 0o600);
  }
  return dir;
}

/** A kubeconfig with the CA and the client certificate embedded (the seed's `kubectl config set-cluster --embed-certs`). */
export async function makeTestKubeconfig(dir: string, options: { name: string; certificate: string; user: string; server: string }): Promise<string> {
  const b64 = async (file: string) => (await readFile(join(dir, file))).toString('base64');
  const text = [
    'apiVersion: v1',
    'clusters:',
    '- cluster:',
    `    certificate-authority-data: ${await b64('ca.pem')}`,
    `    server: ${options.server}`,
    '  name: kubernetes-the-hard-way',
    'contexts:',
    '- context:',
    '    cluster: kubernetes-the-hard-way',
    `    user: ${options.user}`,
    '  name: default',
    'current-context: default',
    'kind: Config',
    'preferences: {}',
    'users:',
    `- name: ${options.user}`,
    '  user:',
    `    client-certificate-data: ${await b64(`${options.certificate}.pem`)}`,
    `    client-key-data: ${await b64(`${options.certificate}-key.pem`)}`,
    '',
  ].join('\n');
  const path = join(dir, `${options.name}.kubeconfig`);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}
