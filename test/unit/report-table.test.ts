import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { hostFactory } from '../../runner/connect.js';
import { runPlaybook } from '../../runner/run.js';
import { playbook } from '../../runner/playbook.js';
import type { RunEvent } from '../../runner/events.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { JsonReporter } from '../../runner/report/json.js';
import { tableLines } from '../../runner/report/table.js';
import { ensureFile } from '../../tasks/index.js';

const NODES = { title: 'Nodes', columns: ['NAME', 'ROLE', 'VERSION', 'READY'], rows: [['cp1', 'control-plane', 'v1.34.1', 'True'], ['worker-long-name', 'worker', 'v1.34.1', 'False']] };

describe('playbook reports (ctx.report): tables for the operator, data in --json', function () {
  it('aligns the columns to the widest cell, header first, title above', function () {
    expect(tableLines(NODES)).to.deep.equal([
      'NODES',
      'NAME              ROLE           VERSION  READY',
      'cp1               control-plane  v1.34.1  True',
      'worker-long-name  worker         v1.34.1  False',
    ]);
  });

  it('says (none) under the header of an empty table, and keeps a cell with control characters or newlines on one escaped line', function () {
    expect(tableLines({ title: 'Join tokens', columns: ['TOKEN', 'TTL'], rows: [] })).to.deep.equal(['JOIN TOKENS', 'TOKEN  TTL', '(none)']);
    expect(tableLines({ title: 't', columns: ['A', 'B'], rows: [['x\u001b[2Jy', 'two\nlines']] })).to.deep.equal(['T', 'A          B', 'x\\x1b[2Jy  two lines']);
  });

  it('prints the table with the plain reporter and as one event with the rows in --json', function () {
    let plain = '';
    new PlainReporter((text) => (plain += text), { diff: false, verbose: false }).emit({ type: 'report', ...NODES });
    expect(plain).to.equal(`\n${tableLines(NODES).join('\n')}\n`);
    let json = '';
    new JsonReporter((text) => (json += text)).emit({ type: 'report', ...NODES });
    expect(JSON.parse(json)).to.deep.equal({ type: 'report', ...NODES });
  });

  describe('in a run (local hosts)', function () {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-report-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    const inventory = inventoryFromHosts([{ name: 'h1', vars: { ansible_connection: 'local' }, groups: ['local'] }]);

    async function run(body: Parameters<typeof playbook>[1], checkMode = false): Promise<RunEvent[]> {
      const events: RunEvent[] = [];
      await runPlaybook(playbook('t', body), {
        inventory,
        checkMode,
        forks: 1,
        extraVars: {},
        connect: hostFactory({ acceptNewHostKeys: false }),
        reporter: { emit: (e) => void events.push(e), close: () => undefined },
      });
      return events;
    }

    it('emits the table once, after the play it reports on (not while planning), in --check too', async function () {
      for (const checkMode of [false, true]) {
        const events = await run(async ({ play, report }) => {
          const result = await play('marker', 'local', [ensureFile({ path: join(dir, 'm'), content: 'x\n' })]);
          report({ title: 'Hosts', columns: ['HOST', 'STATUS'], rows: [...result.hosts].map(([name, host]) => [name, host.status]) });
        }, checkMode);
        const order = events.filter((e) => e.type === 'task' || e.type === 'report').map((e) => e.type);
        expect(order, `checkMode ${checkMode}`).to.deep.equal(['task', 'report']);
        expect(events.find((e) => e.type === 'report')).to.deep.include({ title: 'Hosts', columns: ['HOST', 'STATUS'] });
      }
    });

    it('refuses a row that does not fit the columns while planning, before any host is contacted', async function () {
      const events: RunEvent[] = [];
      let error: unknown;
      try {
        await runPlaybook(
          playbook('t', async ({ play, report }) => {
            await play('marker', 'local', [ensureFile({ path: join(dir, 'm'), content: 'x\n' })]);
            report({ title: 'Broken', columns: ['A', 'B'], rows: [['only one']] });
          }),
          { inventory, checkMode: false, forks: 1, extraVars: {}, connect: hostFactory({ acceptNewHostKeys: false }), reporter: { emit: (e) => void events.push(e), close: () => undefined } },
        );
      } catch (caught) {
        error = caught;
      }
      expect(String(error)).to.include('report "Broken": row 1 has 1 cells for 2 columns');
      expect(events.filter((e) => e.type === 'task')).to.deep.equal([]);
    });
  });
});
