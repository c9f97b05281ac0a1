import { expect } from 'chai';
import type { LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstanOnTerminal } from '../helpers/pty.js';
import { CHECKS_LOG } from '../fixtures/playbooks/confirm.js';

const PLAYBOOK = 'test/fixtures/playbooks/confirm.ts';
const PROMPT = 'apply these changes? [y/N] ';
const STATE = `cat ${CHECKS_LOG} 2>/dev/null; ls /var/tmp | grep '^capstan-confirm-' || true`;

type Event = { type: string; host?: string; task?: string; status?: string; check?: boolean; durationMs?: number };
const eventsIn = (logs: Record<string, string>): Event[] => {
  expect(Object.keys(logs)).to.have.length(1);
  return Object.values(logs)[0]!.trim().split('\n').map((line) => JSON.parse(line) as Event);
};

describe('run --confirm on a terminal: check, the change table, ask, then apply in the same run (lab)', function () {
  this.timeout(300_000);
  let lab: LabState;
  const state = () => Promise.all(lab.hosts.map(async (h) => (await sshToLab(lab, h, STATE)).stdout));

  before(async () => {
    lab = await withLab(3);
  });

  it('answered "n": the check and its change table, then exit 1 with nothing changed', async () => {
    const run = await capstanOnTerminal(['run', PLAYBOOK, '-i', lab.inventoryPath, '--confirm'], { prompt: PROMPT, reply: 'n' });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.include(
      '\nCHANGES TO APPLY (6 on 3 hosts)\n' +
        '[confirm]\n' +
        '  node1, node2, node3 | the first change | run: touch /var/tmp/capstan-confirm-done\n' +
        '  node1, node2, node3 | file /var/tmp/capstan-confirm-after | content\n' +
        PROMPT,
    );
    expect(run.output).to.include('node1, node2, node3 | would change | the first change\n');
    expect(run.output).to.match(/\ncapstan: not applied: nothing was changed\n$/);
    // Only the check ran: each guard once, nothing made.
    expect(await state()).to.deep.equal(Array(3).fill('in-sync\nfirst-change\nafter\ncapstan-confirm-checks\n'));
    expect(eventsIn(run.runLogs).filter((e) => e.type === 'start')).to.deep.equal([{ type: 'start', playbook: 'confirm', check: true, hosts: 3 }]);
  });

  it('answered "y": applies in the same run, checking no task twice before a host\'s first change; a second --confirm has nothing to ask', async () => {
    await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, `rm -f ${CHECKS_LOG}`)));
    const run = await capstanOnTerminal(['run', PLAYBOOK, '-i', lab.inventoryPath, '--confirm'], { prompt: PROMPT, reply: 'y' });
    expect(run.code, run.output).to.equal(0);
    expect(run.output).to.include(`${PROMPT}y\n`);
    expect(run.output).to.include('node1, node2, node3 | changed | the first change\n');
    // The check pass read each guard once. The apply pass reused "in sync" (not read again), applied
    // the first change with the check's drift and verified it (first-change), then read what follows
    // it again after each change, as any apply does (after, after).
    const made = 'capstan-confirm-after\ncapstan-confirm-checks\ncapstan-confirm-done\n';
    expect(await state()).to.deep.equal(Array(3).fill(`in-sync\nfirst-change\nafter\nfirst-change\nafter\nafter\n${made}`));
    const events = eventsIn(run.runLogs);
    expect(events.filter((e) => e.type === 'start').map((e) => e.check)).to.deep.equal([true, false]);
    const applyPass = events.slice(events.findIndex((e) => e.type === 'start' && e.check === false));
    expect(applyPass.filter((e) => e.type === 'task' && e.host === 'node2').map((e) => `${e.task} ${e.status}`)).to.deep.equal([
      'command:true in-sync ok',
      'command:touch /var/tmp/capstan-confirm-done changed',
      'file:/var/tmp/capstan-confirm-after changed',
      'command:true after ok',
    ]);
    const recap = applyPass.at(-1) as unknown as { type: string; hosts: Record<string, { changed: number }> };
    expect(recap.type).to.equal('recap');
    expect(Object.values(recap.hosts).map((h) => h.changed)).to.deep.equal([2, 2, 2]);

    const again = await capstanOnTerminal(['run', PLAYBOOK, '-i', lab.inventoryPath, '--confirm'], { prompt: PROMPT, reply: 'y' });
    expect(again.code, again.output).to.equal(0);
    expect(again.output).not.to.include(PROMPT);
    expect(again.output).to.match(/\ncapstan: nothing to change: every host is in sync, nothing was applied\n$/);
  });
});
