import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabState } from '../../runner/lab/index.js';
import { GATEWAY } from '../../runner/lab/paths.js';
import type { HostView, Task } from '../../runner/task.js';
import { DOCKER_KEY_FINGERPRINT, ensureAptKey, ensureAptRepo, ensurePackages, type AptSourceFormat } from '../../tasks/apt.js';
import { ensureContainerdCgroup } from '../../tasks/containerd.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { runTasks, type TaskRun } from '../helpers/tasks.js';
import { startAptRepo, DUMMY_PACKAGE, type TestAptRepo } from '../helpers/apt-repo.js';

/** Names, modes, owners and bytes of everything under /etc and /var/lib: proves a check wrote nothing. */
const HASH_STATE =
  "find /etc /var/lib -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum";
const KEYRING = '/etc/apt/keyrings/capstan-test.gpg';
/** A proxy override the test writes on each host: apt fetches the lab repository directly, not through apt-cacher-ng. */
const DIRECT = `/etc/apt/apt.conf.d/99capstan-test-direct`;

async function ssh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

function taskEvent(run: TaskRun, host: string, task: string) {
  const event = run.tasks.find((t) => t.host === host && t.task === task);
  if (!event) throw new Error(`no event for ${task} on ${host}: ${JSON.stringify(run.tasks.map((t) => [t.host, t.task, t.status]))}`);
  return event;
}

describe('node prep: apt keys, repositories, packages; containerd cgroup (lab)', function () {
  this.timeout(600_000);
  let lab: LabState;
  let repo: TestAptRepo;
  let tasks: Task<unknown>[];
  /** node1: Docker-style dists repository in a one-line .list; node2: pkgs.k8s.io-style flat repository in deb822 .sources. */
  const layout = (host: HostView) => (host.name === 'node1' ? { format: 'one-line' as AptSourceFormat, path: '/debian', suite: 'capstan', components: ['main'] } : { format: 'deb822' as AptSourceFormat, path: '/flat/', suite: '/', components: [] });
  const sourceFile = (host: string) => (host === 'node1' ? '/etc/apt/sources.list.d/capstan-test.list' : '/etc/apt/sources.list.d/capstan-test.sources');
  const expectedSource = (host: string) =>
    host === 'node1'
      ? `deb [arch=amd64 signed-by=${KEYRING}] ${repo.url}/debian capstan main\n`
      : `Types: deb\nURIs: ${repo.url}/flat/\nSuites: /\nArchitectures: amd64\nSigned-By: ${KEYRING}\n`;

  before(async function () {
    this.timeout(600_000);
    lab = await withLab(2);
    expect(lab.hosts[0]!.address.replace(/\.\d+$/, '.1')).to.equal(GATEWAY);
    repo = await startAptRepo(GATEWAY);
    for (const host of lab.hosts) await ssh(lab, host.name, `printf '%s\\n' 'Acquire::http::Proxy::${GATEWAY} "DIRECT";' > ${DIRECT}`);
    tasks = [
      ensureAptKey({ url: `${repo.url}/key.asc`, keyring: KEYRING, fingerprint: repo.fingerprint }),
      ensureAptRepo({
        name: 'capstan-test',
        uri: (host) => `${repo.url}${layout(host).path}`,
        suite: (host) => layout(host).suite,
        components: (host) => layout(host).components,
        keyring: KEYRING,
        format: (host) => layout(host).format,
      }),
      ensurePackages([DUMMY_PACKAGE], { hold: true }),
    ];
  });

  after(async () => {
    await repo?.close();
  });

  it('check on fresh hosts reports the keyring, repository and package drift, fetches the key on the host, and writes nothing', async () => {
    const before = await Promise.all(lab.hosts.map((h) => ssh(lab, h.name, HASH_STATE)));
    const check = await runTasks(lab, 'all', tasks, { check: true });
    expect(check.exitCode).to.equal(0);
    for (const host of ['node1', 'node2']) {
      // The apt-get update handler is notified, and finds that the package install would refresh the lists first.
      expect(check.recap[host]).to.deep.equal({ ok: 1, changed: 3, failed: 0, skipped: 0, unreachable: false });
      const key = taskEvent(check, host, `apt-key:${KEYRING}`);
      expect(key.drift).to.have.length(1);
      expect(key.drift[0]).to.include({ subject: 'keyring', current: 'absent' });
      expect(key.drift[0]!.desired).to.match(new RegExp(`^${repo.fingerprint} \\(sha256 [0-9a-f]{16}\\)$`));
      expect(taskEvent(check, host, 'apt-repo:capstan-test').drift).to.deep.equal([
        { subject: 'content', diff: `--- /dev/null\n+++ ${sourceFile(host)} (desired)\n@@ -0,0 +1,${expectedSource(host).split('\n').length - 1} @@\n${expectedSource(host).split('\n').slice(0, -1).map((l) => `+${l}`).join('\n')}\n` },
      ]);
      expect(taskEvent(check, host, `packages:${DUMMY_PACKAGE}`).drift).to.deep.equal([
        { subject: 'missing', current: `${DUMMY_PACKAGE} absent`, desired: DUMMY_PACKAGE },
        { subject: 'not held', current: DUMMY_PACKAGE, desired: 'held' },
      ]);
      expect(taskEvent(check, host, 'apt-update').status).to.equal('ok');
    }
    const after = await Promise.all(lab.hosts.map((h) => ssh(lab, h.name, HASH_STATE)));
    expect(after).to.deep.equal(before);
    // The key was downloaded by each host itself (curl on the host), not by the controller.
    const keyClients = repo.requests.filter((r) => r.path === '/key.asc').map((r) => r.from);
    expect([...new Set(keyClients)].sort()).to.deep.equal(lab.hosts.map((h) => h.address).sort());
  });

  it('apply installs the dummy package from the signed local repository, holds it, with one apt-get update per host', async () => {
    repo.requests.length = 0;
    const apply = await runTasks(lab, 'all', tasks);
    expect(apply.exitCode, JSON.stringify(apply.tasks.filter((t) => t.status === 'failed'))).to.equal(0);
    const keyBytes = readFileSync(join(repo.dir, 'www/key.gpg'));
    for (const host of lab.hosts) {
      expect(apply.recap[host.name]).to.deep.equal({ ok: 1, changed: 3, failed: 0, skipped: 0, unreachable: false });
      expect(taskEvent(apply, host.name, 'apt-update').status).to.equal('ok');
      expect(await ssh(lab, host.name, `cat ${sourceFile(host.name)}; stat -c '%a %U' ${sourceFile(host.name)} ${KEYRING}`)).to.equal(`${expectedSource(host.name)}644 root\n644 root\n`);
      // The keyring is the dearmored (binary) key.
      expect((await ssh(lab, host.name, `sha256sum < ${KEYRING}`)).slice(0, 64)).to.equal(createHash('sha256').update(keyBytes).digest('hex'));
      expect(await ssh(lab, host.name, `dpkg-query -W -f='\${Version} \${db:Status-Abbrev}\\n' ${DUMMY_PACKAGE}; cat /usr/share/${DUMMY_PACKAGE}/version; apt-mark showhold`)).to.equal(
        `1.1-1 hi \n1.1-1\n${DUMMY_PACKAGE}\n`,
      );
      const policy = await ssh(lab, host.name, `apt-cache policy ${DUMMY_PACKAGE}`);
      expect(policy).to.include(host.name === 'node1' ? `500 ${repo.url}/debian capstan/main amd64 Packages` : `500 ${repo.url}/flat  Packages`);
      // apt fetched the signed index directly (not through apt-cacher-ng, which would connect from the gateway), once.
      const index = host.name === 'node1' ? '/debian/dists/capstan/InRelease' : '/flat/InRelease';
      expect(repo.requests.filter((r) => r.path === index).map((r) => r.from)).to.deep.equal([host.address]);
    }
  });

  it('a second run changes nothing and runs no apt-get update', async () => {
    repo.requests.length = 0;
    const again = await runTasks(lab, 'all', tasks);
    for (const host of ['node1', 'node2']) expect(again.recap[host]).to.deep.equal({ ok: 3, changed: 0, failed: 0, skipped: 0, unreachable: false });
    expect(repo.requests.filter((r) => r.path.endsWith('InRelease'))).to.deep.equal([]);
  });

  it('a play that only adds repositories runs the apt-get update handler once per host, however many changed', async () => {
    repo.requests.length = 0;
    const repos = [
      ensureAptRepo({ name: 'capstan-a', uri: `${repo.url}/mirror/debian`, suite: 'capstan', components: ['main'], keyring: KEYRING }),
      ensureAptRepo({ name: 'capstan-b', uri: `${repo.url}/mirror/flat/`, suite: '/', keyring: KEYRING, format: 'deb822' }),
    ];
    const check = await runTasks(lab, 'all', repos, { check: true });
    expect(taskEvent(check, 'node1', 'apt-update').drift).to.deep.equal([{ subject: 'package lists', current: 'stale (repository capstan-a, repository capstan-b changed)', desired: 'updated' }]);
    const apply = await runTasks(lab, 'all', repos);
    for (const host of lab.hosts) {
      expect(apply.recap[host.name]).to.deep.equal({ ok: 0, changed: 3, failed: 0, skipped: 0, unreachable: false });
      expect(apply.tasks.filter((t) => t.host === host.name).map((t) => t.task)).to.deep.equal(['apt-repo:capstan-a', 'apt-repo:capstan-b', 'apt-update']);
      // One update: each configured repository's index fetched once by this host.
      const fetched = repo.requests.filter((r) => r.from === host.address && r.path.endsWith('InRelease')).map((r) => r.path).sort();
      expect(fetched).to.deep.equal(['/debian/dists/capstan/InRelease', '/flat/InRelease', '/mirror/debian/dists/capstan/InRelease', '/mirror/flat/InRelease'].filter((p) => host.name === 'node1' ? p !== '/flat/InRelease' : p !== '/debian/dists/capstan/InRelease'));
    }
    expect((await runTasks(lab, 'all', repos)).recap.node2).to.deep.equal({ ok: 2, changed: 0, failed: 0, skipped: 0, unreachable: false });
  });

  it('a key with the wrong fingerprint fails and writes no keyring', async () => {
    const wrong = '/etc/apt/keyrings/capstan-wrong.gpg';
    const result = await runTasks(lab, 'all', [ensureAptKey({ url: `${repo.url}/key.asc`, keyring: wrong, fingerprint: DOCKER_KEY_FINGERPRINT })]);
    expect(result.exitCode).to.equal(2);
    for (const host of ['node1', 'node2']) {
      const event = taskEvent(result, host, `apt-key:${wrong}`);
      expect(event.status).to.equal('failed');
      expect(event.message).to.equal(`check failed: key fingerprint mismatch for ${repo.url}/key.asc: expected ${DOCKER_KEY_FINGERPRINT}, the key is ${repo.fingerprint}; nothing written`);
      expect((await sshToLab(lab, host, `test -e ${wrong}`)).code).to.equal(1);
    }
  });

  it('a version pin downgrades a held package and keeps it held; hold: false unholds', async () => {
    const pinned = await runTasks(lab, 'node1', [ensurePackages([`${DUMMY_PACKAGE}=1.0-1`], { hold: true })]);
    expect(pinned.recap.node1, JSON.stringify(pinned.tasks.map((t) => t.message))).to.deep.equal({ ok: 0, changed: 1, failed: 0, skipped: 0, unreachable: false });
    expect(taskEvent(pinned, 'node1', `packages:${DUMMY_PACKAGE}`).drift).to.deep.equal([{ subject: 'missing', current: `${DUMMY_PACKAGE} 1.1-1`, desired: `${DUMMY_PACKAGE}=1.0-1` }]);
    expect(await ssh(lab, 'node1', `dpkg-query -W -f='\${Version}\\n' ${DUMMY_PACKAGE}; apt-mark showhold`)).to.equal(`1.0-1\n${DUMMY_PACKAGE}\n`);
    const unheld = await runTasks(lab, 'node1', [ensurePackages([DUMMY_PACKAGE], { hold: false })]);
    expect(taskEvent(unheld, 'node1', `packages:${DUMMY_PACKAGE}`).drift).to.deep.equal([{ subject: 'held', current: DUMMY_PACKAGE, desired: 'not held' }]);
    expect(await ssh(lab, 'node1', 'apt-mark showhold')).to.equal('');
    expect((await runTasks(lab, 'node1', [ensurePackages([DUMMY_PACKAGE], { hold: false })])).recap.node1!.changed).to.equal(0);
  });

  describe('containerd from Debian', () => {
    const mainPid = (host: string) => ssh(lab, host, 'systemctl show -p MainPID -p ActiveEnterTimestamp containerd; systemctl is-active containerd');

    it('installs containerd from Debian: with no package lists, apt-get update, then install', async () => {
      // As on a fresh image: apt knows no package until an update (nothing in this run marked the lists stale).
      for (const host of ['node1', 'node2']) await ssh(lab, host, "find /var/lib/apt/lists -maxdepth 1 -type f -name '*_*' -delete");
      const install = await runTasks(lab, 'all', [ensurePackages(['containerd'])]);
      expect(install.exitCode, JSON.stringify(install.tasks.map((t) => t.message))).to.equal(0);
      for (const host of ['node1', 'node2']) {
        expect(install.recap[host]!.changed).to.equal(1);
        const logs = install.events.filter((e) => e.type === 'log' && e.host === host).map((e) => (e as { line: string }).line);
        expect(logs.slice(0, 2)).to.deep.equal(['apt does not know a package yet: apt-get update, then install again', 'apt-get update: package lists refreshed']);
        expect(await ssh(lab, host, 'systemctl is-active containerd')).to.equal('active\n');
      }
    });

    it('check reports the config change and writes nothing', async () => {
      const before = await ssh(lab, 'node1', 'sha256sum /etc/containerd/config.toml');
      const check = await runTasks(lab, 'node1', [ensureContainerdCgroup()], { check: true });
      const event = taskEvent(check, 'node1', 'containerd-cgroup:/etc/containerd/config.toml');
      expect(event.status).to.equal('changed');
      expect(event.drift[0]!.diff).to.include('+            SystemdCgroup = true\n');
      expect(await ssh(lab, 'node1', 'sha256sum /etc/containerd/config.toml')).to.equal(before);
    });

    it('sets SystemdCgroup = true in the default config, restarts containerd once, and leaves it alone on the next run', async () => {
      const pidsBefore = await Promise.all(['node1', 'node2'].map(mainPid));
      const apply = await runTasks(lab, 'all', [ensureContainerdCgroup()]);
      expect(apply.exitCode, JSON.stringify(apply.tasks.map((t) => t.message))).to.equal(0);
      const pidsAfter = await Promise.all(['node1', 'node2'].map(mainPid));
      for (const [i, host] of ['node1', 'node2'].entries()) {
        expect(apply.recap[host]!.changed).to.equal(1);
        // What the seeds do by hand, run on the host: containerd config default | sed SystemdCgroup.
        const seed = await ssh(lab, host, "containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/g'");
        const config = await ssh(lab, host, 'cat /etc/containerd/config.toml');
        expect(config).to.equal(seed);
        expect(config.split('\n').filter((line) => line.includes('SystemdCgroup'))).to.deep.equal(['            SystemdCgroup = true']);
        // Restarted: a new main PID and a new ActiveEnterTimestamp, and active.
        const [pidBefore, startedBefore] = pidsBefore[i]!.split('\n');
        const [pidAfter, startedAfter, active] = pidsAfter[i]!.split('\n');
        expect(pidAfter).to.not.equal(pidBefore);
        expect(startedAfter).to.not.equal(startedBefore);
        expect(active).to.equal('active');
      }
      const again = await runTasks(lab, 'all', [ensureContainerdCgroup()]);
      for (const [i, host] of ['node1', 'node2'].entries()) {
        expect(again.recap[host]).to.deep.equal({ ok: 1, changed: 0, failed: 0, skipped: 0, unreachable: false });
        expect(await mainPid(host)).to.equal(pidsAfter[i]);
      }
    });

    it('restarts containerd when the config changed behind its back, once', async () => {
      // Touch the config after containerd started: the running daemon has not read this version.
      await ssh(lab, 'node2', 'sleep 1; touch /etc/containerd/config.toml');
      const before = await mainPid('node2');
      const run = await runTasks(lab, 'node2', [ensureContainerdCgroup()]);
      expect(taskEvent(run, 'node2', 'containerd-cgroup:/etc/containerd/config.toml').drift).to.deep.equal([
        { subject: 'containerd', current: 'running an older config', desired: 'restarted with the current config' },
      ]);
      expect(await mainPid('node2')).to.not.equal(before);
      expect((await runTasks(lab, 'node2', [ensureContainerdCgroup()])).recap.node2!.changed).to.equal(0);
    });
  });
});
