import { execFile } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize, sep } from 'node:path';
import { promisify } from 'node:util';
import { parseKeyColons } from '../../tasks/apt.js';
import { localHost } from './local.js';

const exec = promisify(execFile);

/** The dummy package the repository serves, in two versions (for pins). */
export const DUMMY_PACKAGE = 'capstan-dummy';
export const DUMMY_VERSIONS = ['1.0-1', '1.1-1'] as const;

/**
 * A signed apt repository served over http for tests, built with Debian's own tools in a temp
 * directory: a fresh gpg key (ed25519), dummy .debs made with dpkg-deb, indexes with
 * apt-ftparchive, InRelease/Release.gpg signed with gpg. Two layouts, as real repositories have:
 * - `${url}/debian` with `dists/capstan/main` (Docker's layout: suite `capstan`, component `main`);
 * - `${url}/flat/` a flat repository (suite `/`, no components: pkgs.k8s.io's layout).
 * The key is published ASCII-armored at `${url}/key.asc` and binary at `${url}/key.gpg`; the whole
 * tree is served again under `${url}/mirror/`.
 */
export interface TestAptRepo {
  /** http://<address>:<port>, no trailing slash. */
  url: string;
  /** The signing key's fingerprint. */
  fingerprint: string;
  dir: string;
  /** Every request: method, path and the client's address (to prove who downloaded what). */
  requests: { path: string; from: string }[];
  close(): Promise<void>;
}

async function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { ...options, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

let toolsChecked: Promise<void> | undefined;

/** Installs Debian's apt-utils (apt-ftparchive) once if it is missing; gpg and dpkg-deb come with gnupg and dpkg. */
function ensureRepoTools(): Promise<void> {
  toolsChecked ??= exec('sh', ['-c', 'command -v apt-ftparchive']).then(
    () => undefined,
    async () => {
      await exec('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apt-utils']);
    },
  );
  return toolsChecked;
}

/** Builds the repository and serves it on `address` (the lab gateway in integration tests) and an ephemeral port. */
export async function startAptRepo(address: string): Promise<TestAptRepo> {
  await ensureRepoTools();
  const dir = mkdtempSync(join(tmpdir(), 'capstan-apt-repo-'));
  try {
    const gnupg = join(dir, 'gnupg');
    mkdirSync(gnupg, { mode: 0o700 });
    const env = { ...process.env, GNUPGHOME: gnupg };
    const gpg = (...args: string[]) => run('gpg', ['--batch', '--quiet', ...args], { env });
    await gpg('--passphrase', '', '--quick-gen-key', 'Capstan Test Repository <repo@capstan.invalid>', 'ed25519', 'sign', 'never');
    const keys = parseKeyColons(await gpg('--with-colons', '--list-keys'));
    if (keys.length !== 1) throw new Error(`expected one test key, gpg lists ${keys.length}`);
    const fingerprint = keys[0]!.fingerprint;
    const www = join(dir, 'www');
    mkdirSync(www);
    writeFileSync(join(www, 'key.asc'), await gpg('--armor', '--export', fingerprint));
    await gpg('--output', join(www, 'key.gpg'), '--export', fingerprint);

    // The packages, built once, copied into both layouts.
    const build = join(dir, 'build');
    const debs: string[] = [];
    for (const version of DUMMY_VERSIONS) {
      const root = join(build, version);
      mkdirSync(join(root, 'DEBIAN'), { recursive: true });
      mkdirSync(join(root, 'usr/share', DUMMY_PACKAGE), { recursive: true });
      writeFileSync(join(root, 'usr/share', DUMMY_PACKAGE, 'version'), `${version}\n`);
      writeFileSync(
        join(root, 'DEBIAN/control'),
        `Package: ${DUMMY_PACKAGE}\nVersion: ${version}\nArchitecture: all\nMaintainer: Capstan tests <tests@capstan.invalid>\nDescription: dummy package for Capstan's apt tests\n`,
      );
      const deb = join(build, `${DUMMY_PACKAGE}_${version}_all.deb`);
      await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, deb]);
      debs.push(deb);
    }
    const sign = async (releaseDir: string) => {
      await gpg('--local-user', fingerprint, '--clearsign', '--output', join(releaseDir, 'InRelease'), join(releaseDir, 'Release'));
      await gpg('--local-user', fingerprint, '--armor', '--detach-sign', '--output', join(releaseDir, 'Release.gpg'), join(releaseDir, 'Release'));
    };

    // dists layout: debian/dists/capstan/main/binary-<arch>/Packages, Release signed.
    const debian = join(www, 'debian');
    mkdirSync(join(debian, 'pool/main'), { recursive: true });
    for (const deb of debs) copyFileSync(deb, join(debian, 'pool/main', deb.split(sep).pop()!));
    const packages = await run('apt-ftparchive', ['packages', 'pool'], { cwd: debian });
    const architectures = ['amd64', 'arm64', 'armhf'];
    for (const arch of architectures) {
      mkdirSync(join(debian, 'dists/capstan/main', `binary-${arch}`), { recursive: true });
      writeFileSync(join(debian, 'dists/capstan/main', `binary-${arch}`, 'Packages'), packages);
    }
    const release = await run('apt-ftparchive', [
      '-o', 'APT::FTPArchive::Release::Origin=Capstan',
      '-o', 'APT::FTPArchive::Release::Suite=capstan',
      '-o', 'APT::FTPArchive::Release::Codename=capstan',
      '-o', `APT::FTPArchive::Release::Architectures=${architectures.join(' ')}`,
      '-o', 'APT::FTPArchive::Release::Components=main',
      'release', 'dists/capstan',
    ], { cwd: debian });
    writeFileSync(join(debian, 'dists/capstan/Release'), release);
    await sign(join(debian, 'dists/capstan'));

    // flat layout: flat/Packages and flat/Release next to the .debs.
    const flat = join(www, 'flat');
    mkdirSync(join(flat, 'pool'), { recursive: true });
    for (const deb of debs) copyFileSync(deb, join(flat, 'pool', deb.split(sep).pop()!));
    writeFileSync(join(flat, 'Packages'), await run('apt-ftparchive', ['packages', 'pool'], { cwd: flat }));
    writeFileSync(join(flat, 'Release'), await run('apt-ftparchive', ['-o', 'APT::FTPArchive::Release::Origin=Capstan', 'release', '.'], { cwd: flat }));
    await sign(flat);

    const requests: TestAptRepo['requests'] = [];
    const server = createServer((request, response) => {
      const path = decodeURIComponent((request.url ?? '/').split('?')[0]!);
      requests.push({ path, from: request.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '' });
      // /mirror/… serves the same tree under other URIs: more repositories without apt seeing one twice.
      const file = normalize(join(www, path.replace(/^\/mirror\//, '/')));
      let size = -1;
      try {
        const stat = statSync(file);
        if (stat.isFile() && file.startsWith(www + sep)) size = stat.size;
      } catch {
        // not found
      }
      if (size < 0 || (request.method !== 'GET' && request.method !== 'HEAD')) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      response.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
      if (request.method === 'HEAD') response.end();
      else createReadStream(file).pipe(response);
    });
    await listen(server, address);
    const port = (server.address() as AddressInfo).port;
    return {
      url: `http://${address}:${port}`,
      fingerprint,
      dir,
      requests,
      close: async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

function listen(server: Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** What {@link useLocalAptRepo} provides to the tests of a describe block (set by its hooks). */
export interface LocalAptRepoFixture {
  /** The block's test repository on 127.0.0.1. */
  repo: TestAptRepo;
  /** This test's local host (a fresh one per test). */
  local: ReturnType<typeof localHost>;
}

/**
 * For a describe block that runs apt or yum tasks on this machine against the test repository:
 * registers the hooks (one repository for the block on 127.0.0.1, a fresh local host per test) and
 * returns the fixture they fill in.
 */
export function useLocalAptRepo(): LocalAptRepoFixture {
  const fixture = {} as LocalAptRepoFixture;
  before(async () => {
    fixture.repo = await startAptRepo('127.0.0.1');
  });
  after(async () => fixture.repo?.close());
  beforeEach(() => (fixture.local = localHost()));
  afterEach(() => fixture.local?.cleanup());
  return fixture;
}
