import { expect } from 'chai';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { hostFactory } from '../../runner/connect.js';
import { runPlaybook } from '../../runner/run.js';
import { playbook, type PlayOptions } from '../../runner/playbook.js';
import { defineTask, Pending, type Task } from '../../runner/task.js';
import type { RunEvent } from '../../runner/events.js';
import { command, ensureFile } from '../../tasks/index.js';
import { sh } from '../../runner/quote.js';

/** A task that fails on the hosts named in `failOn`, and is otherwise in sync. */
function failOn(hosts: string[]): Task<void> {
  return defineTask<{ hosts: string[] }>(
    {
      kind: 'test-fail',
      id: () => 'test-fail',
      title: () => 'fail on some hosts',
      check: async (ctx, p) => {
        if (p.hosts.includes(ctx.host.name)) throw new Error(`planned failure on ${ctx.host.name}`);
        return [];
      },
      apply: async () => undefined,
    },
    { hosts },
  );
}

/** A task that creates a marker file and whose value names its host: to pass values between plays. */
const producerOf = (marker: string) =>
  defineTask<{ marker: string }, string>(
    {
      kind: 'test-producer',
      id: (p) => `test-producer:${p.marker}`,
      title: () => 'produce a value',
      check: async (ctx, p) => ((await ctx.stat(p.marker)) ? [] : [{ subject: 'marker', current: null, desired: p.marker }]),
      apply: async (ctx, p) => void (await ctx.writeFile(p.marker, '')),
      result: async (ctx) => `value from ${ctx.host.name}`,
    },
    { marker },
  );

describe('runner: plays, batches, failures, handlers, values (local hosts)', function () {
  this.timeout(30_000);
  let dir: string;
  const names = ['h1', 'h2', 'h3', 'h4'];
  const inventory = inventoryFromHosts(names.map((name) => ({ name, vars: { ansible_connection: 'local' }, groups: ['all_local'] })));

  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-runner-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function run(body: Parameters<typeof playbook>[1], checkMode = false) {
    const events: RunEvent[] = [];
    const summary = await runPlaybook(playbook('t', body), {
      inventory,
      checkMode,
      forks: 10,
      extraVars: {},
      reporter: { emit: (e) => void events.push(e), close: () => undefined },
      connect: hostFactory({ acceptNewHostKeys: false }),
    });
    return { summary, events };
  }

  const marker = (host: string) => join(dir, `${host}.done`);
  const touch = () => command({ run: (h) => ['touch', marker(h.name)], creates: (h) => marker(h.name) });

  it('serial: 1 finishes each host before the next starts', async () => {
    const { events } = await run(async ({ play }) => {
      await play('serial', 'all', [touch(), ensureFile({ path: (h) => join(dir, `${h.name}.txt`), content: 'x' })], { serial: 1 });
    });
    const order = events.filter((e) => e.type === 'task-start' || e.type === 'host-done').map((e) => `${e.type}:${(e as { host: string }).host}`);
    expect(order).to.deep.equal(names.flatMap((h) => [`task-start:${h}`, `task-start:${h}`, `host-done:${h}`]));
  });

  it('runOnce runs on the first host only', async () => {
    const { summary } = await run(async ({ play }) => {
      await play('once', 'all', [touch()], { runOnce: true });
    });
    expect(names.map((h) => existsSync(marker(h)))).to.deep.equal([true, false, false, false]);
    expect(Object.keys(summary.recap)).to.deep.equal(['h1']);
  });

  it('a failed host drops out of later plays; the others go on; exit code 2', async () => {
    const { summary, events } = await run(async ({ play }) => {
      await play('first', 'all', [failOn(['h2'])]);
      await play('second', 'all', [touch()]);
    });
    expect(summary.exitCode).to.equal(2);
    expect(names.map((h) => existsSync(marker(h)))).to.deep.equal([true, false, true, true]);
    const second = events.find((e) => e.type === 'play' && e.title === 'second') as { hosts: string[] };
    expect(second.hosts).to.deep.equal(['h1', 'h3', 'h4']);
    expect(summary.recap.h2).to.deep.equal({ ok: 0, changed: 0, failed: 1, skipped: 0, unreachable: false });
    expect(summary.failedHosts).to.deep.equal(['h2']);
  });

  for (const [label, options] of [
    ['anyErrorsFatal', { anyErrorsFatal: true }],
    ['maxFailPercent 20 (1 of 4 failed = 25%)', { maxFailPercent: 20 }],
  ] as [string, PlayOptions][]) {
    it(`${label} stops the playbook`, async () => {
      const { summary, events } = await run(async ({ play }) => {
        await play('first', 'all', [failOn(['h2'])], options);
        await play('never', 'all', [touch()]);
      });
      expect(summary.exitCode).to.equal(2);
      expect(events.some((e) => e.type === 'play' && e.title === 'never')).to.equal(false);
      expect(events.find((e) => e.type === 'error')).to.have.property('message').that.matches(/play "first"/);
    });
  }

  it('maxFailPercent 30 lets 1 failure in 4 go on', async () => {
    const { events } = await run(async ({ play }) => {
      await play('first', 'all', [failOn(['h2'])], { maxFailPercent: 30 });
      await play('goes on', 'all', [touch()]);
    });
    expect(events.some((e) => e.type === 'play' && e.title === 'goes on')).to.equal(true);
  });

  it('handlers run once per host at the end of the play, only where a notifying task changed', async () => {
    const handler = command({ run: (h) => ['sh', '-c', `echo ran >> ${join(dir, `${h.name}.handler`)}`], name: 'handler' });
    const body = async ({ play }: { play: (t: string, p: string, tasks: Task<unknown>[]) => Promise<unknown> }) => {
      await play('with handler', 'h1:h2', [
        ensureFile({ path: (h) => join(dir, `${h.name}.a`), content: 'a' }, { notify: [handler] }),
        ensureFile({ path: (h) => join(dir, `${h.name}.b`), content: 'b' }, { notify: [handler] }),
      ]);
    };
    const { readFileSync } = await import('node:fs');
    const { events } = await run(body);
    expect(readFileSync(join(dir, 'h1.handler'), 'utf8')).to.equal('ran\n');
    const titles = events.filter((e) => e.type === 'task' && e.host === 'h1').map((e) => (e as { title: string }).title);
    expect(titles).to.deep.equal([`file ${join(dir, 'h1.a')}`, `file ${join(dir, 'h1.b')}`, 'handler']);
    await run(body);
    expect(readFileSync(join(dir, 'h1.handler'), 'utf8')).to.equal('ran\n'); // nothing changed: not notified
  });

  it('passes typed values between plays, and Pending ones in check mode', async () => {
    const producer = producerOf(join(dir, 'produced'));
    const seen: unknown[] = [];
    const body = async ({ play }: { play: (t: string, p: string, tasks: Task<unknown>[], o?: PlayOptions) => Promise<import('../../runner/playbook.js').PlayResult> }) => {
      const result = await play('produce', 'all', [producer], { runOnce: true });
      seen.push(result.value(producer));
    };
    await run(body, true); // planning pass, then check mode on a fresh host
    await run(body); // planning pass, then apply
    await run(body, true); // planning pass, then check mode on the converged host
    expect(String(seen[0])).to.equal('pending: produce (not run yet)');
    expect(String(seen[1])).to.equal('pending: produce a value on h1');
    expect(seen[1]).to.be.instanceOf(Pending);
    expect(seen[3]).to.equal('value from h1');
    expect(seen[5]).to.equal('value from h1'); // in sync: a real value even in check mode
  });

  it('a task can run commands on another inventory host (ctx.onHost), e.g. to mint a token there', async () => {
    const crossHost = defineTask<{ from: string }>(
      {
        kind: 'test-cross',
        id: () => 'test-cross',
        title: () => 'ask another host',
        check: async (ctx) => ((await ctx.stat(join(dir, `${ctx.host.name}.got`))) ? [] : [{ subject: 'answer', desired: 'present' }]),
        apply: async (ctx, p) => {
          const other = await ctx.onHost(p.from);
          const answer = (await other.run(sh`echo minted-on-${p.from}`)).stdout.trim();
          await ctx.writeFile(join(dir, `${ctx.host.name}.got`), answer);
        },
      },
      { from: 'h4' },
    );
    const { summary } = await run(async ({ play }) => {
      await play('cross', 'h1:h2', [crossHost]);
    });
    expect(summary.exitCode).to.equal(0);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(join(dir, 'h1.got'), 'utf8')).to.equal('minted-on-h4');
    expect(readFileSync(join(dir, 'h2.got'), 'utf8')).to.equal('minted-on-h4');
  });

  it('a per-host parameter that conflicts with another task is rejected on that host', async () => {
    const { summary, events } = await run(async ({ play }) => {
      await play('one', 'h1', [ensureFile({ path: join(dir, 'same'), content: (h) => `${h.name} says a` })]);
      await play('two', 'h1', [ensureFile({ path: join(dir, 'same'), content: 'b' })]);
    });
    expect(summary.exitCode).to.equal(2);
    const failed = events.find((e) => e.type === 'task' && e.status === 'failed') as { message: string };
    expect(failed.message).to.equal(`play "one" task 1 and play "two" task 1 both manage file:${join(dir, 'same')} on h1 but want different states`);
  });
});
