import { expect } from 'chai';
import type { RunEvent, ShownDrift } from '../../runner/events.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { TtyReporter } from '../../runner/report/tty.js';
import { TaskGrouper } from '../../runner/report/group.js';

type TaskEvent = Extract<RunEvent, { type: 'task' }>;
const SYSCTL: ShownDrift[] = [{ subject: 'net.ipv4.ip_forward', current: '0', desired: '1' }];
const task = (host: string, id: string, drift: ShownDrift[] = SYSCTL, extra: Partial<TaskEvent> = {}): TaskEvent => ({
  type: 'task',
  host,
  task: id,
  title: id === 'sysctl' ? 'sysctl net.ipv4.ip_forward=1' : id,
  status: drift.length ? 'changed' : 'ok',
  drift,
  durationMs: 1,
  ...extra,
});

describe('reporters: the same result on several hosts is shown once with the host list', () => {
  it('grouper: a task is ready once every host of its batch reported it or finished; hosts in play order', () => {
    const grouper = new TaskGrouper([['k8s-01', 'k8s-02', 'k8s-03']]);
    grouper.add(task('k8s-03', 'sysctl'));
    grouper.add(task('k8s-01', 'sysctl'));
    expect(grouper.ready()).to.deep.equal([]);
    grouper.add(task('k8s-02', 'sysctl', [{ subject: 'net.ipv4.ip_forward', current: '1', desired: '1' }]));
    grouper.add(task('k8s-01', 'swap'));
    const ready = grouper.ready();
    expect(ready.map((g) => g.hosts)).to.deep.equal([['k8s-01', 'k8s-03'], ['k8s-02']]);
    // k8s-02 and k8s-03 finished without reporting "swap" (a failure, a skip): k8s-01's is not held back.
    grouper.hostDone('k8s-02');
    expect(grouper.ready()).to.deep.equal([]);
    grouper.hostDone('k8s-03');
    expect(grouper.ready().map((g) => [g.hosts, g.event.task])).to.deep.equal([[['k8s-01'], 'swap']]);
  });

  it('grouper: hosts of different serial batches are never waited for or grouped', () => {
    const grouper = new TaskGrouper([['cp1'], ['cp2']]);
    grouper.add(task('cp1', 'join'));
    expect(grouper.ready().map((g) => g.hosts)).to.deep.equal([['cp1']]);
    grouper.add(task('cp2', 'join'));
    expect(grouper.ready().map((g) => g.hosts)).to.deep.equal([['cp2']]);
  });

  const events = (check: boolean): RunEvent[] => [
    { type: 'start', playbook: 'p', check, hosts: 3 },
    { type: 'play', title: 'prepare', pattern: 'all', hosts: ['k8s-01', 'k8s-02', 'k8s-03'] },
    task('k8s-02', 'sysctl'),
    task('k8s-01', 'sysctl'),
    task('k8s-03', 'sysctl'),
    task('k8s-01', 'containerd-cgroup', [{ subject: 'would change', pending: 'packages containerd' }], {
      title: 'containerd SystemdCgroup = true',
      message: 'would change (pending: packages containerd); check could not run yet: containerd is not installed',
    }),
    { type: 'host-done', host: 'k8s-01', play: 'prepare', durationMs: 1 },
    { type: 'host-done', host: 'k8s-02', play: 'prepare', durationMs: 1 },
    { type: 'host-done', host: 'k8s-03', play: 'prepare', durationMs: 1 },
    { type: 'play-end', title: 'prepare', durationMs: 1 },
  ];

  it('plain: one line per distinct result, naming its hosts; a pending reason is said once', () => {
    let text = '';
    const reporter = new PlainReporter((t) => (text += t), { diff: false, verbose: false });
    for (const event of events(true)) reporter.emit(event);
    expect(text).to.equal(
      'PLAYBOOK p (check mode: nothing will be changed)\n' +
        '\nPLAY [prepare] all → k8s-01, k8s-02, k8s-03\n' +
        'k8s-01, k8s-02, k8s-03 | would change | sysctl net.ipv4.ip_forward=1\n' +
        '    net.ipv4.ip_forward: 0 → 1\n' +
        'k8s-01 | would change | containerd SystemdCgroup = true: would change (pending: packages containerd); check could not run yet: containerd is not installed\n',
    );
  });

  it('plain: a line is printed as soon as every host has reported it, before the play ends', () => {
    let text = '';
    const reporter = new PlainReporter((t) => (text += t), { diff: false, verbose: false });
    for (const event of events(false).slice(0, 5)) reporter.emit(event);
    expect(text).to.match(/k8s-01, k8s-02, k8s-03 \| changed \| sysctl net.ipv4.ip_forward=1\n {4}net.ipv4.ip_forward: 0 → 1\n$/);
  });

  it('tty: changes under one line naming their hosts, consecutive results of the same hosts under one', async () => {
    let text = '';
    const reporter = new TtyReporter((t) => (text += t), { diff: false, verbose: false });
    for (const event of events(true)) await reporter.emit(event);
    await reporter.close();
    expect(text).to.include(
      'k8s-01, k8s-02, k8s-03\n' +
        '  would change | sysctl net.ipv4.ip_forward=1\n' +
        '    net.ipv4.ip_forward: 0 → 1\n' +
        'k8s-01\n' +
        '  would change | containerd SystemdCgroup = true: would change (pending: packages containerd); check could not run yet: containerd is not installed\n',
    );
  });
});
