import { expect } from 'chai';
import { awaitedChanges, pathsIn, satisfies } from '../../runner/prerequisites.js';
import { defineTask } from '../../runner/task.js';
import { sh } from '../../runner/quote.js';
import { localHost, run } from '../helpers/local.js';

describe('prerequisites: which pending change a --check waits for', () => {
  it('a package provides the program, unit file and started service named after it (Debian and Docker names)', () => {
    expect(satisfies({ package: 'containerd' }, { command: 'containerd' })).to.equal(true);
    expect(satisfies({ package: 'containerd.io' }, { command: 'containerd' })).to.equal(true);
    expect(satisfies({ package: 'containerd.io' }, { unit: 'containerd.service' })).to.equal(true);
    expect(satisfies({ package: 'etcd-server' }, { running: 'etcd' })).to.equal(true);
    expect(satisfies({ package: 'kubeadm' }, { running: 'kubelet.service' })).to.equal(false);
    expect(satisfies({ package: 'containerd' }, { file: '/etc/containerd/config.toml' })).to.equal(false);
  });

  it('a written file provides itself, the unit at its path and a program under a bin directory', () => {
    expect(satisfies({ file: '/etc/kubernetes/admin.conf' }, { file: '/etc/kubernetes/admin.conf' })).to.equal(true);
    expect(satisfies({ file: '/etc/systemd/system/capstan-demo.service' }, { unit: 'capstan-demo.service' })).to.equal(true);
    expect(satisfies({ file: '/usr/local/bin/etcdctl' }, { command: 'etcdctl' })).to.equal(true);
    expect(satisfies({ file: '/etc/etcdctl' }, { command: 'etcdctl' })).to.equal(false);
    expect(satisfies({ running: 'kubelet.service' }, { running: 'kubelet' })).to.equal(true);
    expect(satisfies({ running: 'kubelet.service' }, { unit: 'kubelet.service' })).to.equal(false);
  });

  it('names only the changes that provide a need; every pending change when none does or none is declared', () => {
    const pending = [
      { title: 'swap off, now and after reboot', provides: [] },
      { title: 'kernel module overlay', provides: [{ file: '/etc/modules-load.d/k8s.conf' }] },
      { title: 'packages containerd', provides: [{ package: 'containerd' }] },
      { title: 'kubeadm init (pod network 10.10.0.0/16)', provides: [{ file: '/etc/kubernetes/admin.conf' }, { running: 'kubelet.service' }] },
    ];
    expect(awaitedChanges(pending, [{ command: 'containerd' }])).to.deep.equal(['packages containerd']);
    expect(awaitedChanges(pending, [{ unit: 'kubelet.service' }, { running: 'kubelet.service' }])).to.deep.equal(['kubeadm init (pod network 10.10.0.0/16)']);
    expect(awaitedChanges(pending, pathsIn('error: stat /etc/kubernetes/admin.conf: no such file or directory'))).to.deep.equal(['kubeadm init (pod network 10.10.0.0/16)']);
    expect(awaitedChanges(pending, [{ command: 'etcdctl' }])).to.deep.equal(pending.map((p) => p.title));
    expect(awaitedChanges(pending, [])).to.deep.equal(pending.map((p) => p.title));
    expect(awaitedChanges([], [{ command: 'containerd' }])).to.deep.equal([]);
  });

  it('reads the absolute paths out of an error message, without the punctuation around them', () => {
    expect(pathsIn("/etc/kubernetes/admin.conf does not exist on k8s-01: is it an initialised control plane?")).to.deep.equal([{ file: '/etc/kubernetes/admin.conf' }]);
    expect(pathsIn("kubectl get nodes -o 'jsonpath={.items[*]}' failed: error: stat /etc/kubernetes/admin.conf: no such file (see /var/log/x.log.)")).to.deep.equal([
      { file: '/etc/kubernetes/admin.conf' },
      { file: '/var/log/x.log' },
    ]);
    expect(pathsIn('containerd is not installed (no containerd command)')).to.deep.equal([]);
  });

  describe('in the engine', () => {
    let local: ReturnType<typeof localHost>;
    beforeEach(() => (local = localHost()));
    afterEach(() => local.cleanup());

    const needsTool = defineTask<{ tool: string }>(
      {
        kind: 'tool',
        id: (p) => `tool:${p.tool}`,
        title: (p) => `configure ${p.tool}`,
        needs: (p) => [{ command: p.tool }],
        check: async (ctx, p) => {
          const r = await ctx.probe(sh`${p.tool} --version`);
          if (r.code !== 0) throw new Error(`${p.tool}: not installed`);
          return [];
        },
        apply: async () => undefined,
      },
      { tool: 'capstan-no-such-tool' },
    );

    it('a failing check names the change that installs what it needs, once, and records itself as pending', async () => {
      const state = {
        pendingChanges: ['swap off', 'packages capstan-no-such-tool', 'sysctl net.ipv4.ip_forward=1'],
        provisions: new Map([['packages capstan-no-such-tool', [{ package: 'capstan-no-such-tool' }]]]),
      };
      const outcome = await run(local, needsTool, true, state);
      expect(outcome.status).to.equal('changed');
      expect(outcome.message).to.equal('would change (pending: packages capstan-no-such-tool); check could not run yet: capstan-no-such-tool: not installed');
      expect(outcome.drift).to.deep.equal([{ subject: 'would change', pending: 'packages capstan-no-such-tool' }]);
      expect(state.pendingChanges.at(-1)).to.equal('configure capstan-no-such-tool');
    });

    it('the files of a predicted change are what it provides to later checks', async () => {
      const path = `${local.dir}/tool.conf`;
      const writesFile = defineTask<{ path: string }>(
        { kind: 'conf', id: (p) => `conf:${p.path}`, title: () => 'write tool.conf', check: async (_ctx, p) => [{ subject: 'content', file: p.path, current: null, desired: 'x\n' }], apply: async () => undefined },
        { path },
      );
      const readsFile = defineTask<{ path: string }>(
        {
          kind: 'reads',
          id: (p) => `reads:${p.path}`,
          title: () => 'use tool.conf',
          check: async (ctx, p) => {
            if ((await ctx.readText(p.path)) === null) throw new Error(`${p.path} does not exist`);
            return [];
          },
          apply: async () => undefined,
        },
        { path },
      );
      const state = { pendingChanges: ['swap off'] };
      expect((await run(local, writesFile, true, state)).status).to.equal('changed');
      const outcome = await run(local, readsFile, true, state);
      expect(outcome.message).to.equal(`would change (pending: write tool.conf); check could not run yet: ${path} does not exist`);
    });
  });
});
