import { expect } from 'chai';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineTask, type Drift } from '../../runner/task.js';
import { Pending } from '../../runner/task.js';
import { InputError, RefusalError } from '../../runner/errors.js';
import { sh } from '../../runner/quote.js';
import { ensureFile } from '../../tasks/index.js';
import { localHost, run } from '../helpers/local.js';

describe('task contract (engine)', () => {
  let local: ReturnType<typeof localHost>;
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  it('reports changed, then ok on the second run', async () => {
    const task = ensureFile({ path: join(local.dir, 'a.conf'), content: 'x = 1\n', mode: '0640' });
    const first = await run(local, task);
    expect(first.status).to.equal('changed');
    expect(first.drift.map((d) => d.subject)).to.deep.equal(['content', 'mode']);
    expect(readFileSync(join(local.dir, 'a.conf'), 'utf8')).to.equal('x = 1\n');
    expect((statSync(join(local.dir, 'a.conf')).mode & 0o7777).toString(8)).to.equal('640');
    const second = await run(local, task);
    expect(second.status).to.equal('ok');
    expect(second.drift).to.deep.equal([]);
  });

  it('check mode reports the drift with a unified diff and writes nothing', async () => {
    const path = join(local.dir, 'b.conf');
    writeFileSync(path, 'old\n');
    const outcome = await run(local, ensureFile({ path, content: 'new\n' }), true);
    expect(outcome.status).to.equal('changed');
    expect(outcome.drift[0]!.diff).to.equal(
      `--- ${path} (current)\n+++ ${path} (desired)\n@@ -1,1 +1,1 @@\n-old\n+new\n`,
    );
    expect(readFileSync(path, 'utf8')).to.equal('old\n');
    expect(outcome.value).to.be.instanceOf(Pending);
  });

  it('fails with "did not converge" when drift is left after apply', async () => {
    const liar = defineTask<{ path: string }>(
      {
        kind: 'liar',
        id: (p) => `liar:${p.path}`,
        title: () => 'a task whose apply does nothing',
        check: async (): Promise<Drift[]> => [{ subject: 'state', current: 'off', desired: 'on' }],
        apply: async () => undefined,
      },
      { path: '/x' },
    );
    const outcome = await run(local, liar);
    expect(outcome.status).to.equal('failed');
    expect(outcome.message).to.equal('did not converge: state: off → on');
  });

  it('in check mode, a check that fails after a pending change reports "would change (pending …)"', async () => {
    const needsTool = defineTask<{ tool: string }>(
      {
        kind: 'tool',
        id: (p) => `tool:${p.tool}`,
        title: (p) => `configure ${p.tool}`,
        check: async (ctx, p) => {
          await ctx.probe(sh`${p.tool} --version`).then((r) => {
            if (r.code !== 0) throw new Error(`${p.tool}: not installed`);
          });
          return [];
        },
        apply: async () => undefined,
      },
      { tool: 'capstan-no-such-tool' },
    );
    const state = { pendingChanges: ['install capstan-no-such-tool'] };
    const outcome = await run(local, needsTool, true, state);
    expect(outcome.status).to.equal('changed');
    expect(outcome.message).to.match(/^would change \(pending: install capstan-no-such-tool\)/);
    // Without a pending change the same failure is a real failure.
    const alone = await run(local, needsTool, true, { pendingChanges: [] });
    expect(alone.status).to.equal('failed');
    expect(alone.message).to.equal('check failed: capstan-no-such-tool: not installed');
  });

  it('in check mode, a refusal fails even after a pending change: no earlier change lifts it', async () => {
    const refusing = defineTask<{ name: string }>(
      {
        kind: 'refusing',
        id: (p) => `refusing:${p.name}`,
        title: (p) => `init ${p.name}`,
        check: async () => {
          throw new RefusalError('a cluster already answers there');
        },
        apply: async () => undefined,
      },
      { name: 'x' },
    );
    const outcome = await run(local, refusing, true, { pendingChanges: ['start haproxy'] });
    expect([outcome.status, outcome.message]).to.deep.equal(['failed', 'check failed: a cluster already answers there']);
  });

  it('validates static parameters when the task is made, before any connection', () => {
    expect(() => ensureFile({ path: 'relative/path', content: '' })).to.throw(InputError, 'invalid parameters for file task: path must be an absolute path, got "relative/path"');
    expect(() => ensureFile({ path: '/etc/x', content: '', mode: '999' })).to.throw(InputError, /mode must be an octal string/);
  });

  it('resolves per-host parameters when bound to a host', async () => {
    const path = join(local.dir, 'motd');
    const task = ensureFile({ path, content: (host) => `hello ${host.name} on ${host.facts.codename}\n` });
    expect(task.static).to.equal(undefined);
    await run(local, task);
    expect(readFileSync(path, 'utf8')).to.equal('hello local on bookworm\n');
  });

  it('removes a file with state absent, then reports ok', async () => {
    const path = join(local.dir, 'gone');
    writeFileSync(path, 'x');
    const task = ensureFile({ path, state: 'absent' });
    expect((await run(local, task)).status).to.equal('changed');
    expect(existsSync(path)).to.equal(false);
    expect((await run(local, task)).status).to.equal('ok');
  });
});
