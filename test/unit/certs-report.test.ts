/**
 * How a task's findings reach the operator (the preflight's certificate expiry warning):
 * TaskSpec.report turns an in-sync task's result into its event's message (a real run on a local
 * host), which the plain reporter prints under the task and the TTY reporter prints when the play
 * ends, as it does a change. And playbooks/certs.ts's plan.
 */
import { expect } from 'chai';
import { hostFactory } from '../../runner/connect.js';
import type { RunEvent } from '../../runner/events.js';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { playbook } from '../../runner/playbook.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { TtyReporter } from '../../runner/report/tty.js';
import { runPlaybook } from '../../runner/run.js';
import { defineTask } from '../../runner/task.js';
import { fileURLToPath } from 'node:url';
import { InputError } from '../../runner/errors.js';
import { loadInventory } from '../../runner/inventory/index.js';
import certs from '../../playbooks/certs.js';
import { plays, type RecordedPlay } from '../helpers/plays.js';

const WARNING = 'WARNING: apiserver (4d) expires within 30 days';

/** An in-sync task whose result is a finding for the operator. */
const finding = () =>
  defineTask<Record<string, never>, string>({ kind: 'finding', id: () => 'finding', title: () => 'certificate expiry', check: async () => [], apply: async () => undefined, result: async () => WARNING, report: (value) => value }, {});

describe('TaskSpec.report: a task\'s findings shown beside its status', () => {
  it('is the in-sync task event\'s message, printed by the plain reporter under the task', async function () {
    this.timeout(30_000);
    const inventory = inventoryFromHosts([{ name: 'here', vars: { ansible_connection: 'local' }, groups: [] }]);
    const events: RunEvent[] = [];
    let text = '';
    const plain = new PlainReporter((t) => (text += t), { diff: false, verbose: false });
    const book = playbook('report', async ({ play }) => {
      await play('preflight', 'here', [finding()]);
    });
    const summary = await runPlaybook(book, { inventory, checkMode: true, forks: 1, extraVars: {}, reporter: { emit: (e) => (events.push(e), plain.emit(e)), close: () => undefined }, connect: hostFactory({ acceptNewHostKeys: false }) });
    expect(summary.exitCode).to.equal(0);
    const event = events.find((e) => e.type === 'task') as Extract<RunEvent, { type: 'task' }>;
    expect([event.status, event.message]).to.deep.equal(['ok', WARNING]);
    expect(text).to.include(`here | ok | certificate expiry: ${WARNING}\n`);
  });

  it('the TTY reporter prints an ok task\'s message when the play ends', async () => {
    let text = '';
    const tty = new TtyReporter((t) => (text += t), { diff: false, verbose: false });
    await tty.emit({ type: 'start', playbook: 'report', check: false, hosts: 1 });
    await tty.emit({ type: 'play', title: 'preflight', pattern: 'here', hosts: ['here'] });
    await tty.emit({ type: 'task', host: 'here', task: 'finding', title: 'certificate expiry', status: 'ok', drift: [], message: WARNING, durationMs: 1 });
    await tty.emit({ type: 'play-end', title: 'preflight', durationMs: 1 });
    await tty.close();
    expect(text).to.include(`here\n  ok | certificate expiry: ${WARNING}\n`);
  });
});

describe('playbooks/certs.ts: its plan (no host contacted)', () => {
  const inventory = (name: string) => loadInventory(fileURLToPath(new URL(`../../inventory/${name}.yaml`, import.meta.url)));
  const summary = (recorded: RecordedPlay[]) => recorded.map((p) => `${p.title} @ ${p.pattern}${Object.keys(p.options).length ? ` ${JSON.stringify(p.options)}` : ''}: ${p.tasks.join(' ')}`);

  it('reads every node (the table is the playbook\'s report); renews the control planes one at a time only with renew', async () => {
    const ha = await inventory('ha');
    const nodes = [...ha.select('control_plane'), ...(ha.groups.has('workers') ? ha.select('workers') : [])].map((h) => h.name);
    expect(nodes.length).to.be.greaterThan(2);
    const read = `read certificates @ ${nodes.join(',')}: certificates:read`;
    expect(summary(await plays(certs, ha))).to.deep.equal([read]);
    expect(summary(await plays(certs, ha, { renew: 'true' }))).to.deep.equal([
      read,
      ...ha.select('control_plane').map((h) => `renew ${h.name} @ ${h.name} {"anyErrorsFatal":true}: certificates:renew`),
    ]);
  });

  it('refuses a bad variable and an inventory without control planes before contacting any host', async () => {
    const single = await inventory('single');
    const bad = await plays(certs, single, { renew: 'yes' }).catch((error: unknown) => error);
    expect(bad).to.be.instanceOf(InputError);
    expect((bad as Error).message).to.match(/renew.*true, false or force/);
    const days = await plays(certs, single, { renew: 'true', renew_within_days: '400' }).catch((error: unknown) => error);
    expect((days as Error).message).to.match(/renew_within_days/);
  });

  it('the hard way: reads the controllers\' certificate files; renewing is hard-way.ts\'s, so renew=true is refused', async () => {
    const hardWay = await inventory('hard-way');
    expect(summary(await plays(certs, hardWay))).to.deep.equal(['read certificates @ controller-0,controller-1,controller-2: certificates:read']);
    const renew = await plays(certs, hardWay, { renew: 'true' }).catch((error: unknown) => error);
    expect(renew).to.be.instanceOf(InputError);
    expect((renew as Error).message).to.equal(`renew=true: the hard way's certificates are not kubeadm's; hard-way.ts re-issues them from pki_dir in their last 30 days (capstan run playbooks/hard-way.ts -i ${hardWay.source})`);
  });
});
