import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostFactory } from '../../runner/connect.js';
import type { RunEvent } from '../../runner/events.js';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { playbook } from '../../runner/playbook.js';
import { PROFILE_SLOWEST_TASKS, profileLines, profileOf, withProfile } from '../../runner/report/profile.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { TtyReporter } from '../../runner/report/tty.js';
import { runPlaybook } from '../../runner/run.js';
import { ensureFile } from '../../tasks/index.js';

const task = (host: string, title: string, durationMs: number): RunEvent => ({ type: 'task', host, task: `t:${title}`, title, status: 'ok', drift: [], durationMs });

describe('--profile (runner/report/profile.ts)', () => {
  it('the slowest tasks, slowest first, and each play\'s wall time with its hosts in the play\'s order', () => {
    const events: RunEvent[] = [
      { type: 'play', title: 'prepare', pattern: 'all', hosts: ['n1', 'n2'] },
      task('n2', 'swap off', 900),
      task('n1', 'swap off', 1200),
      { type: 'host-done', host: 'n2', play: 'prepare', durationMs: 1000 },
      task('n1', 'packages', 5300),
      { type: 'host-done', host: 'n1', play: 'prepare', durationMs: 6600 },
      { type: 'play-end', title: 'prepare', durationMs: 6700 },
      { type: 'play', title: 'init', pattern: 'cp[0]', hosts: ['n1'] },
      task('n1', 'kubeadm init', 900),
      { type: 'host-done', host: 'n1', play: 'init', durationMs: 1040 },
      // no play-end: the play stopped the playbook (anyErrorsFatal)
    ];
    const profile = profileOf(events);
    expect(profile).to.deep.equal({
      slowest: [
        { host: 'n1', task: 't:packages', title: 'packages', durationMs: 5300 },
        { host: 'n1', task: 't:swap off', title: 'swap off', durationMs: 1200 },
        { host: 'n2', task: 't:swap off', title: 'swap off', durationMs: 900 },
        { host: 'n1', task: 't:kubeadm init', title: 'kubeadm init', durationMs: 900 },
      ],
      plays: [
        { title: 'prepare', durationMs: 6700, hosts: [{ host: 'n1', durationMs: 6600 }, { host: 'n2', durationMs: 1000 }] },
        { title: 'init', hosts: [{ host: 'n1', durationMs: 1040 }] },
      ],
    });
    expect(profileLines(profile)).to.deep.equal([
      '',
      'SLOWEST TASKS',
      'SECONDS  HOST  TASK',
      '    5.3  n1    packages',
      '    1.2  n1    swap off',
      '    0.9  n2    swap off',
      '    0.9  n1    kubeadm init',
      '',
      "PLAYS (wall time, then each host's)",
      'SECONDS  PLAY / HOST',
      '    6.7  prepare',
      '    6.6    n1',
      '    1.0    n2',
      '      -  init (stopped the playbook)',
      '    1.0    n1',
    ]);
  });

  it('the TTY reporter prints the recap table, the profile, then "finished in"', async () => {
    let text = '';
    const reporter = new TtyReporter((t) => (text += t), { diff: false, verbose: false });
    await reporter.emit({
      type: 'recap',
      hosts: { n1: { ok: 1, changed: 0, failed: 0, skipped: 0, unreachable: false } },
      durationMs: 1234,
      profile: { slowest: [{ host: 'n1', task: 'file:/x', title: 'file /x', durationMs: 1000 }], plays: [{ title: 'p', durationMs: 1200, hosts: [{ host: 'n1', durationMs: 1100 }] }] },
    });
    await reporter.close();
    expect(text).to.equal(
      '\nRECAP\nHOST  ok  changed  failed  skipped  unreachable\nn1     1        0       0        0  no\n\nSLOWEST TASKS\nSECONDS  HOST  TASK\n    1.0  n1    file /x\n\n' +
        "PLAYS (wall time, then each host's)\nSECONDS  PLAY / HOST\n    1.2  p\n    1.1    n1\nfinished in 1.2 s\n",
    );
  });

  it(`lists at most ${PROFILE_SLOWEST_TASKS} tasks`, () => {
    const events = Array.from({ length: 25 }, (_, i) => task('n1', `task ${i}`, i));
    expect(profileOf(events).slowest.map((t) => t.title)).to.deep.equal(Array.from({ length: PROFILE_SLOWEST_TASKS }, (_, i) => `task ${24 - i}`));
  });

  it('a real run: the recap carries the profile of its plays and tasks; the plain reporter prints it before "finished in"', async function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'capstan-profile-'));
    try {
      const inventory = inventoryFromHosts(['h1', 'h2'].map((name) => ({ name, vars: { ansible_connection: 'local' }, groups: [] })));
      const events: RunEvent[] = [];
      let text = '';
      const plain = new PlainReporter((t) => (text += t), { diff: false, verbose: false });
      const reporter = withProfile({ emit: (e) => (events.push(e), plain.emit(e)), close: () => undefined });
      const book = playbook('p', async ({ play }) => {
        await play('write', 'all', [ensureFile({ path: (h) => join(dir, `${h.name}.a`), content: 'a\n' }), ensureFile({ path: (h) => join(dir, `${h.name}.b`), content: 'b\n' })]);
        await play('once', 'h2', [ensureFile({ path: join(dir, 'once'), content: 'x\n' })]);
      });
      const summary = await runPlaybook(book, { inventory, checkMode: false, forks: 5, extraVars: {}, reporter, connect: hostFactory({ acceptNewHostKeys: false }) });
      const recap = events.at(-1) as Extract<RunEvent, { type: 'recap' }>;
      expect(recap.type).to.equal('recap');
      expect(recap.durationMs).to.equal(summary.durationMs);
      expect(recap.profile!.slowest).to.have.length(5);
      const durations = recap.profile!.slowest.map((t) => t.durationMs);
      expect(durations).to.deep.equal([...durations].sort((a, b) => b - a));
      expect(recap.profile!.plays.map((p) => [p.title, p.hosts.map((h) => h.host), typeof p.durationMs])).to.deep.equal([
        ['write', ['h1', 'h2'], 'number'],
        ['once', ['h2'], 'number'],
      ]);
      // What was printed after the recap table: the profile, then the finished line, last.
      const tail = text.slice(text.indexOf('\nSLOWEST TASKS\n'));
      expect(tail.split('\n').filter((l) => /^ +\d+\.\d  (h1|h2) +file /.test(l))).to.have.length(5);
      expect(tail).to.match(/\nPLAYS \(wall time, then each host's\)\nSECONDS  PLAY \/ HOST\n +\d+\.\d  write\n +\d+\.\d    h1\n +\d+\.\d    h2\n +\d+\.\d  once\n +\d+\.\d    h2\n\nCOST OF REACHING EACH HOST\n/);
      // Local hosts: no connection, one /bin/sh per command (a session and a round trip each), counted per host.
      const usage = recap.usage!;
      expect(Object.keys(usage).sort()).to.deep.equal(['h1', 'h2']);
      for (const u of Object.values(usage)) expect([u.connections, u.sessions === u.roundTrips, u.sessions > 0]).to.deep.equal([0, true, true]);
      expect(usage.h2!.sessions).to.be.greaterThan(usage.h1!.sessions); // h2 also ran the second play
      expect(tail.slice(tail.indexOf('COST OF REACHING EACH HOST'))).to.equal(
        'COST OF REACHING EACH HOST\nHOST  CONNECTIONS  SESSIONS  ROUND TRIPS\n' +
          ['h1', 'h2'].map((h) => `${h}              0  ${String(usage[h]!.sessions).padStart(8)}  ${String(usage[h]!.roundTrips).padStart(11)}`).join('\n') +
          `\nfinished in ${(summary.durationMs / 1000).toFixed(1)} s\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
