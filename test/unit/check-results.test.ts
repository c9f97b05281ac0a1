import { expect } from 'chai';
import { CheckResults } from '../../runner/check-results.js';
import { changeTable } from '../../runner/report/changes.js';
import { confirmApply } from '../../runner/confirm.js';
import type { BoundTask } from '../../runner/task.js';
import type { TaskOutcome } from '../../runner/engine.js';

const bound = (id: string, desired: unknown = { id }): BoundTask =>
  ({ id, title: `title of ${id}`, desired, claims: [], verify: true, probes: [], needs: [], provides: [], check: async () => [], apply: async () => undefined }) as BoundTask;
const place = (host: string, index: number) => ({ play: 1, playTitle: 'prepare', host, index });

describe('run --confirm: what the check pass keeps for the apply pass, and the change table', () => {
  it('keeps in-sync results with their value and found drift, never predicted drift, handlers or another wanted state', () => {
    const results = new CheckResults();
    const ok: TaskOutcome = { status: 'ok', drift: [], value: 'v', durationMs: 1 };
    const found = [{ subject: 'content', current: 'a', desired: 'b' }];
    const changed: TaskOutcome = { status: 'changed', drift: found, found, durationMs: 1 };
    const predicted: TaskOutcome = { status: 'changed', drift: [{ subject: 'would change', pending: 'packages x' }], found: [{ subject: 'would change', pending: 'packages x' }], durationMs: 1 };
    results.record(place('h1', 0), bound('a'), ok);
    results.record(place('h1', 1), bound('b'), changed);
    results.record(place('h1', 2), bound('c'), predicted);
    results.record(place('h1', -1), bound('handler'), changed);
    expect(results.reusable(place('h1', 0), bound('a'))).to.deep.equal({ status: 'ok', value: 'v' });
    expect(results.reusable(place('h1', 1), bound('b'))).to.deep.equal({ status: 'changed', drift: found });
    expect(results.reusable(place('h1', 2), bound('c'))).to.equal(undefined);
    expect(results.reusable(place('h1', -1), bound('handler'))).to.equal(undefined);
    expect(results.reusable(place('h2', 0), bound('a'))).to.equal(undefined);
    expect(results.reusable(place('h1', 0), bound('a', { id: 'a', cluster: 'now known' }))).to.equal(undefined);
    expect(results.changes().map((c) => c.task)).to.deep.equal(['b', 'c', 'handler']);
  });

  it('the change table: one row per task and drift with its hosts in inventory order, play by play', () => {
    const drift = [{ subject: 'net.ipv4.ip_forward', current: '0', desired: '1' }];
    const table = changeTable([
      { play: 'prepare', host: 'k8s-02', task: 'sysctl', title: 'sysctl net.ipv4.ip_forward=1', drift },
      { play: 'prepare', host: 'k8s-01', task: 'sysctl', title: 'sysctl net.ipv4.ip_forward=1', drift },
      { play: 'prepare', host: 'k8s-03', task: 'sysctl', title: 'sysctl net.ipv4.ip_forward=1', drift: [{ ...drift[0]!, current: '1\x1b[2J' }] },
      { play: 'init', host: 'k8s-01', task: 'kubeadm:init', title: 'kubeadm init', drift: [{ subject: 'control plane', current: 'not initialised', desired: 'initialised' }] },
    ], ['k8s-01', 'k8s-02', 'k8s-03']);
    expect(table).to.equal(
      'CHANGES TO APPLY (4 on 3 hosts)\n' +
        '[prepare]\n' +
        '  k8s-01, k8s-02 | sysctl net.ipv4.ip_forward=1 | net.ipv4.ip_forward: 0 → 1\n' +
        '  k8s-03 | sysctl net.ipv4.ip_forward=1 | net.ipv4.ip_forward: 1\\x1b[2J → 1\n' +
        '[init]\n' +
        '  k8s-01 | kubeadm init | control plane: not initialised → initialised\n',
    );
  });

  it('"y" or "yes" applies; Enter, "n", anything else, Ctrl-C or no terminal (null) does not', async () => {
    const answers: Record<string, boolean> = { y: true, Y: true, yes: true, ' YES ': true, '': false, n: false, no: false, yess: false, sure: false };
    for (const [typed, expected] of Object.entries(answers)) {
      let asked = '';
      expect(await confirmApply(async (prompt) => ((asked = prompt), typed))).to.equal(expected);
      expect(asked).to.equal('apply these changes? [y/N] ');
    }
    expect(await confirmApply(async () => null)).to.equal(false);
  });
});
