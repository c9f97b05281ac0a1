import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Probe } from '../../runner/contract.js';
import { parseProbeOutput, probeScript } from '../../runner/probe.js';
import { Host } from '../../runner/host.js';
import { LocalTransport } from '../../runner/transport/local.js';
import { sh, type Command } from '../../runner/quote.js';
import type { ExecOptions } from '../../runner/transport/types.js';
import { inventoryFromHosts } from '../../runner/inventory/index.js';
import { runPlaybook } from '../../runner/run.js';
import { playbook } from '../../runner/playbook.js';
import { command, ensureBlock, ensureDirectory, ensureFile, ensureLine } from '../../tasks/index.js';

/** A local transport that records every command it runs. */
class CountingTransport extends LocalTransport {
  readonly commands: string[] = [];
  override exec(command: Command, options?: ExecOptions) {
    this.commands.push(command.display);
    return super.exec(command, options);
  }
}

describe('batched probes', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-probe-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('answers reads (binary), stats, missing files and commands in one script run by dash', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 10, 64, 64]);
    writeFileSync(join(dir, 'bin'), bytes);
    writeFileSync(join(dir, "it's"), 'quoted name\n');
    chmodSync(join(dir, "it's"), 0o640);
    const probes: Probe[] = [
      { kind: 'read', path: join(dir, 'bin') },
      { kind: 'read', path: join(dir, 'nope') },
      { kind: 'stat', path: join(dir, "it's") },
      { kind: 'stat', path: join(dir, 'nope') },
      { kind: 'exec', command: sh`printf 'out\\n'; printf 'err' >&2; exit 3` },
      { kind: 'exec', command: sh`exit 0` },
      { kind: 'read', path: join(dir, "it's") },
    ];
    const transport = new LocalTransport('t');
    const result = await transport.exec(probeScript(probes));
    expect(result.code).to.equal(0);
    const answers = parseProbeOutput(result.stdout.toString(), probes);
    expect(answers.get(0)).to.deep.equal({ kind: 'read', content: bytes });
    expect(answers.get(1)).to.deep.equal({ kind: 'read', content: null });
    expect(answers.get(2)).to.deep.equal({ kind: 'stat', stat: { type: 'file', mode: '0640', owner: userInfo().username, group: (answers.get(2) as { stat: { group: string } }).stat.group, size: 12 } });
    expect(answers.get(3)).to.deep.equal({ kind: 'stat', stat: null });
    expect(answers.get(4)).to.deep.equal({ kind: 'exec', result: { code: 3, stdout: 'out\n', stderr: 'err', bytes: Buffer.from('out\n') } });
    expect((answers.get(5) as { result: { code: number } }).result.code).to.equal(0);
    expect(answers.get(6)).to.deep.equal({ kind: 'read', content: Buffer.from('quoted name\n') });
  });

  it('a converged run checks all of a host\'s tasks with one batched round trip (after facts)', async () => {
    const transports = new Map<string, CountingTransport>();
    const inventory = inventoryFromHosts([{ name: 'h1', vars: { ansible_connection: 'local' } }]);
    const tasks = () => [
      ensureDirectory({ path: join(dir, 'd') }),
      ensureFile({ path: join(dir, 'd/a'), content: 'a\n', mode: '0600' }),
      ensureLine({ path: join(dir, 'd/b'), line: 'x = 1' }),
      ensureBlock({ path: join(dir, 'd/c'), block: 'y' }),
      command({ run: ['touch', join(dir, 'd/e')], creates: join(dir, 'd/e') }),
      command({ run: ['touch', join(dir, 'd/f')], unless: ['test', '-e', join(dir, 'd/f')] }),
    ];
    const run = (checkMode: boolean) =>
      runPlaybook(playbook('p', async ({ play }) => void (await play('p', 'all', tasks()))), {
        inventory,
        checkMode,
        forks: 1,
        extraVars: {},
        reporter: { emit: () => undefined, close: () => undefined },
        connect: (h) => {
          const transport = new CountingTransport(h.name);
          transports.set(h.name, transport);
          return new Host(h.name, h.vars, transport, { enabled: false, user: 'root' }, userInfo().username);
        },
      });
    const first = await run(false);
    expect(first.recap.h1!.changed).to.equal(6);
    for (const checkMode of [false, true]) {
      const again = await run(checkMode);
      expect(again.recap.h1).to.deep.equal({ ok: 6, changed: 0, failed: 0, skipped: 0, unreachable: false });
      expect(transports.get('h1')!.commands.length, transports.get('h1')!.commands.join('\n')).to.equal(2); // facts + one batch
      // 7 task reads + the pending-handlers ledger
      expect(transports.get('h1')!.commands[1]).to.equal('(probe 8 reads in one batch)');
    }
  });
});
