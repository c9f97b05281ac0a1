import { expect } from 'chai';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../runner/errors.js';
import { labDown, labStatus } from '../../runner/lab/index.js';
import { BRIDGE, LAB_NET, hostMac, hostPaths, labPaths, netnsName, vethName } from '../../runner/lab/paths.js';
import { skipUnlessLabSupported } from '../helpers/lab.js';

/** uid/gid of `nobody` on Debian. */
const NOBODY = 65534;

/**
 * The lab runs as root on directories in world-writable /var/tmp: a directory another user made or
 * can write, and a state.json naming things outside the lab, must be refused before root acts on them.
 * Each test points CAPSTAN_LAB_DIR/CAPSTAN_LAB_CACHE at its own directories under a fresh base.
 */
describe('lab directory and state.json are trusted only when root owns them alone', function () {
  let base: string;
  const saved = { dir: process.env.CAPSTAN_LAB_DIR, cache: process.env.CAPSTAN_LAB_CACHE };

  before(function () {
    skipUnlessLabSupported(this);
  });

  beforeEach(() => {
    base = mkdtempSync('/var/tmp/capstan-lab-security-');
    process.env.CAPSTAN_LAB_CACHE = join(base, 'cache');
  });

  afterEach(() => {
    process.env.CAPSTAN_LAB_DIR = saved.dir;
    process.env.CAPSTAN_LAB_CACHE = saved.cache;
    if (saved.dir === undefined) delete process.env.CAPSTAN_LAB_DIR;
    if (saved.cache === undefined) delete process.env.CAPSTAN_LAB_CACHE;
    rmSync(base, { recursive: true, force: true });
  });

  /** A lab directory holding a state.json and a marker, so "nothing touched" can be checked. */
  function labDirWith(name: string): { dir: string; files: () => string[] } {
    const dir = join(base, name);
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'state.json'), '{"version":1}\n');
    writeFileSync(join(dir, 'marker'), 'kept\n');
    process.env.CAPSTAN_LAB_DIR = dir;
    return { dir, files: () => ['state.json', 'marker', 'lock'].filter((file) => existsSync(join(dir, file))) };
  }

  async function refusal(action: () => Promise<unknown>): Promise<InputError> {
    const error = await action().then(() => null, (caught: unknown) => caught);
    expect(error).to.be.instanceOf(InputError);
    return error as InputError;
  }

  it('a lab directory owned by another user is refused, nothing in it touched', async () => {
    const { dir, files } = labDirWith('lab');
    chownSync(dir, NOBODY, NOBODY);
    for (const action of [() => labDown(), () => labStatus()]) {
      expect((await refusal(action)).message).to.match(new RegExp(`^the lab directory \\(CAPSTAN_LAB_DIR\\) ${dir}: is owned by uid ${NOBODY}, not root;`));
    }
    expect(files()).to.deep.equal(['state.json', 'marker']);
  });

  it('a symlink as the lab directory is refused, even one to a root-owned 0700 directory', async () => {
    const { dir: target, files } = labDirWith('real');
    const link = join(base, 'lab');
    symlinkSync(target, link);
    process.env.CAPSTAN_LAB_DIR = link;
    expect((await refusal(() => labDown())).message).to.include(`the lab directory (CAPSTAN_LAB_DIR) ${link}: is a symlink;`);
    expect(files()).to.deep.equal(['state.json', 'marker']);
  });

  it('a lab directory writable by others (0777) is refused; so is a cache directory writable by its group', async () => {
    const { dir, files } = labDirWith('lab');
    chmodSync(dir, 0o777);
    expect((await refusal(() => labDown())).message).to.include(`${dir}: is writable by group or others (mode 777);`);
    expect(files()).to.deep.equal(['state.json', 'marker']);
    chmodSync(dir, 0o700);
    rmSync(join(dir, 'state.json'));
    const cache = join(base, 'cache');
    mkdirSync(cache, { mode: 0o700 });
    chmodSync(cache, 0o770);
    expect((await refusal(() => labDown())).message).to.include(`the lab cache directory (CAPSTAN_LAB_CACHE) ${cache}: is writable by group or others (mode 770);`);
    expect(files()).to.deep.equal(['marker']);
  });

  it('a parent writable by others without the sticky bit is refused (another user could swap the lab directory)', async () => {
    const parent = join(base, 'open');
    mkdirSync(parent);
    chmodSync(parent, 0o777);
    const { dir } = labDirWith('open/lab');
    expect((await refusal(() => labDown())).message).to.include(`${dir}: its parent ${parent} is writable by group or others without the sticky bit (mode 777);`);
  });

  it('missing directories are made 0700 root; existing root-owned 0755 ones from older runs are accepted as they are', async () => {
    const dir = join(base, 'new', 'lab');
    process.env.CAPSTAN_LAB_DIR = dir;
    await labDown();
    for (const path of [dir, join(base, 'cache')]) {
      const stats = statSync(path);
      expect([stats.uid, stats.mode & 0o7777], path).to.deep.equal([0, 0o700]);
    }
    const old = join(base, 'old');
    mkdirSync(old, { mode: 0o755 });
    chmodSync(old, 0o755);
    process.env.CAPSTAN_LAB_DIR = old;
    const lines: string[] = [];
    await labDown({ log: (line) => lines.push(line) });
    expect(lines).to.deep.equal(['no lab is up']);
    expect(statSync(old).mode & 0o7777).to.equal(0o755);
  });

  describe('a tampered state.json', () => {
    let dir: string;
    let outside: string;
    /** A record as the lab writes it for one host node1 at .11 of this lab's network. */
    const record = () => {
      const address = `10.77.${LAB_NET}.11`;
      return {
        version: 1,
        dir,
        rootfs: join(labPaths(dir).rootfsParent, '0123456789abcdef'),
        bridge: BRIDGE,
        aptProxyPid: 0,
        hosts: [{ name: 'node1', address, mac: hostMac(address), netns: netnsName(address), veth: vethName(address), groups: [], vars: {}, ...hostPaths(dir, 'node1'), pid: 0 }],
        inventoryPath: labPaths(dir).inventory,
        knownHostsPath: labPaths(dir).knownHosts,
        keyPath: labPaths(dir).key,
      };
    };
    const tamper = (change: (r: ReturnType<typeof record>) => void) => {
      const r = record();
      change(r);
      writeFileSync(labPaths(dir).state, JSON.stringify(r));
    };

    beforeEach(() => {
      dir = labDirWith('lab').dir;
      outside = join(base, 'outside');
      mkdirSync(outside);
      writeFileSync(join(outside, 'victim'), 'root must not delete this\n');
    });

    it('naming a file outside the lab directory for root to delete is refused; the file and the record stay', async () => {
      tamper((r) => (r.knownHostsPath = join(outside, 'victim')));
      const error = await refusal(() => labDown());
      expect(error.message).to.equal(`${labPaths(dir).state}: knownHostsPath is ${JSON.stringify(join(outside, 'victim'))}, expected ${JSON.stringify(labPaths(dir).knownHosts)}; refusing to act on a lab record the lab did not write`);
      expect(readFileSync(join(outside, 'victim'), 'utf8')).to.equal('root must not delete this\n');
      expect(existsSync(labPaths(dir).state)).to.equal(true);
    });

    it('a host root, a host name with "..", a rootfs outside the cache, an interface or bridge not the lab\'s are refused', async () => {
      const cases: [(r: ReturnType<typeof record>) => void, string][] = [
        [(r) => (r.hosts[0]!.root = outside), `node1: root is ${JSON.stringify(outside)}, expected ${JSON.stringify(hostPaths(dir, 'node1').root)}`],
        [(r) => (r.hosts[0]!.name = '../../outside'), 'host name "../../outside" is not a lab host name'],
        [(r) => (r.rootfs = outside), `rootfs ${JSON.stringify(outside)} is not a lab rootfs (<cache>/rootfs/<16 hex digits>)`],
        [(r) => (r.rootfs = `${labPaths(dir).rootfsParent}/../../outside`), 'is not a lab rootfs'],
        [(r) => (r.keyPath = join(outside, 'victim')), `keyPath ${JSON.stringify(join(outside, 'victim'))} is not a lab key (<cache>/id_ed25519)`],
        [(r) => (r.hosts[0]!.veth = 'eth0'), `node1: veth is "eth0", expected ${JSON.stringify(record().hosts[0]!.veth)}`],
        [(r) => (r.hosts[0]!.netns = 'other'), `node1: netns is "other", expected ${JSON.stringify(record().hosts[0]!.netns)}`],
        [(r) => (r.hosts[0]!.address = '10.0.0.1'), 'node1: address "10.0.0.1" is not in'],
        [(r) => (r.bridge = 'eth0'), `bridge is "eth0", expected ${JSON.stringify(BRIDGE)}`],
        [(r) => (r.dir = outside), `dir is ${JSON.stringify(outside)}, expected ${JSON.stringify(dir)}`],
      ];
      for (const [change, message] of cases) {
        tamper(change);
        expect((await refusal(() => labDown())).message).to.include(message);
        expect((await refusal(() => labStatus())).message).to.include(message);
      }
      expect(readFileSync(join(outside, 'victim'), 'utf8')).to.equal('root must not delete this\n');
    });

    it('the record as the lab writes it passes the check (read-only: status, not down, which would touch this network\'s bridge)', async () => {
      tamper(() => undefined);
      const status = await labStatus();
      expect(status!.hosts.map((host) => [host.name, host.address, host.up])).to.deep.equal([['node1', `10.77.${LAB_NET}.11`, false]]);
    });

    it('a record written with another CAPSTAN_LAB_CACHE (key and rootfs elsewhere) is still the lab\'s: read, and its inventory keeps its key', async () => {
      const otherCache = join(base, 'other-cache');
      tamper((r) => {
        r.keyPath = join(otherCache, 'id_ed25519');
        r.rootfs = join(otherCache, 'rootfs', '0c3a527ac5b29886');
      });
      const status = await labStatus();
      expect(status!.keyPath).to.equal(join(otherCache, 'id_ed25519'));
      expect(status!.hosts.map((host) => host.name)).to.deep.equal(['node1']);
    });
  });
});
