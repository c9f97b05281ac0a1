import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventoryFromHosts, parseInventory, type Inventory } from '../../runner/inventory/index.js';
import { hostFactory } from '../../runner/connect.js';
import { planPlaybook, runPlaybook } from '../../runner/run.js';
import { playbook, type PlaybookContext } from '../../runner/playbook.js';
import { defineTask, type Task } from '../../runner/task.js';
import type { RunEvent } from '../../runner/events.js';
import { ensureFile } from '../../tasks/files.js';
import { ensurePki, installPkiFiles } from '../../tasks/pki.js';
import { capstan } from '../helpers/cli.js';

/** A task in sync everywhere whose value says where it ran: host name and connection var. */
const whereAmI = (): Task<string> =>
  defineTask<{ tag: string }, string>(
    {
      kind: 'test-where',
      id: () => 'test-where',
      title: () => 'where am I',
      check: async () => [],
      apply: async () => undefined,
      result: async (ctx) => `${ctx.host.name} ${String(ctx.host.vars.ansible_connection)} ${String(ctx.host.vars.site ?? '-')}`,
    },
    { tag: 'x' },
  );

describe('implicit localhost', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-localhost-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function run(inventory: Inventory, body: (ctx: PlaybookContext) => Promise<void>, options: { checkMode?: boolean; limit?: string } = {}) {
    const events: RunEvent[] = [];
    const summary = await runPlaybook(playbook('t', body), {
      inventory,
      checkMode: options.checkMode ?? false,
      forks: 10,
      extraVars: {},
      ...(options.limit ? { limit: options.limit } : {}),
      reporter: { emit: (e) => void events.push(e), close: () => undefined },
      connect: hostFactory({ acceptNewHostKeys: false }),
    });
    return { summary, events };
  }

  const remoteOnly = () =>
    parseInventory(['all:', '  vars:', '    site: lab', '  children:', '    controllers:', '      hosts:', '        cp1:', '          ansible_connection: local', ''].join('\n'), 'hosts.yaml');

  it("a play on 'localhost' runs on this machine over the local transport, with the 'all' vars", async () => {
    const where = whereAmI();
    const path = join(dir, 'made-by-localhost');
    let value: unknown;
    const { summary, events } = await run(remoteOnly(), async ({ play }) => {
      const result = await play('on the controller', 'localhost', [where, ensureFile({ path, content: 'local\n' })]);
      value = result.value(where);
    });
    expect(summary.exitCode).to.equal(0);
    expect(value).to.equal('localhost local lab');
    expect(readFileSync(path, 'utf8')).to.equal('local\n');
    expect(events.find((e) => e.type === 'play')).to.deep.equal({ type: 'play', title: 'on the controller', pattern: 'localhost', hosts: ['localhost'] });
    expect(summary.recap).to.deep.equal({ localhost: { ok: 1, changed: 1, failed: 0, skipped: 0, unreachable: false } });
  });

  it("is planned before any connection, is not in 'all', and --limit does not drop it", async () => {
    const body = async ({ play }: PlaybookContext) => {
      await play('controller', 'localhost', [whereAmI()]);
      await play('everyone', 'all', [whereAmI()]);
    };
    const planned = await planPlaybook(playbook('t', body), { inventory: remoteOnly(), checkMode: false, extraVars: {} });
    expect(planned.map((h) => h.name)).to.deep.equal(['cp1']); // connection checks are for inventory hosts
    const { summary, events } = await run(remoteOnly(), body, { limit: 'cp1' });
    expect(summary.exitCode).to.equal(0);
    expect(events.filter((e) => e.type === 'play').map((e) => (e as { hosts: string[] }).hosts)).to.deep.equal([['localhost'], ['cp1']]);
    expect(Object.keys(summary.recap).sort()).to.deep.equal(['cp1', 'localhost']);
  });

  it('an inventory host named localhost is used as it is', async () => {
    const inventory = inventoryFromHosts([{ name: 'localhost', vars: { ansible_connection: 'local', site: 'from-inventory' } }]);
    const where = whereAmI();
    let value: unknown;
    await run(inventory, async ({ play }) => {
      value = (await play('p', 'localhost', [where])).value(where);
    });
    expect(value).to.equal('localhost local from-inventory');
  });

  it('other unknown names still fail the plan', async () => {
    const body = async ({ play }: PlaybookContext) => void (await play('p', 'controler', [whereAmI()]));
    let error: unknown;
    await planPlaybook(playbook('t', body), { inventory: remoteOnly(), checkMode: false, extraVars: {} }).catch((e: unknown) => (error = e));
    expect(String(error)).to.match(/'controler' matches no group or host/);
  });

  it('capstan inventory --list does not show it', async () => {
    const file = join(dir, 'hosts.ini');
    writeFileSync(file, '[controllers]\ncp1 ansible_connection=local\n');
    const result = await capstan(['inventory', '-i', file, '--list']);
    expect(result.code, result.stderr).to.equal(0);
    expect(JSON.parse(result.stdout)).to.deep.equal({
      _meta: { hostvars: { cp1: { ansible_connection: 'local' } } },
      all: { children: ['ungrouped', 'controllers'] },
      controllers: { hosts: ['cp1'] },
    });
  });

  it('PKI on localhost, installed on an inventory host: --check writes nothing, apply, then nothing changes', async () => {
    const pkiDir = join(dir, 'pki');
    const dest = join(dir, 'cp1', 'var-lib-kubernetes');
    const inventory = remoteOnly();
    const body = async ({ play }: PlaybookContext) => {
      const pki = ensurePki({
        dir: pkiDir,
        certificates: [{ name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', usage: ['server', 'client'], ipAddresses: ['127.0.0.1'], dnsNames: ['kubernetes'] }],
        encryptionConfig: true,
      });
      const made = await play('PKI', 'localhost', [pki]);
      await play('install', 'controllers', [installPkiFiles({ pki: made.value(pki), files: ['ca.pem', 'kubernetes.pem', 'kubernetes-key.pem', 'encryption-config.yaml'], dir: dest })]);
    };
    const check = await run(inventory, body, { checkMode: true });
    expect(check.summary.exitCode).to.equal(0);
    expect(existsSync(pkiDir)).to.equal(false);
    expect(existsSync(dest)).to.equal(false);
    const install = check.events.find((e) => e.type === 'task' && e.host === 'cp1') as Extract<RunEvent, { type: 'task' }>;
    expect(install.status).to.equal('changed');
    expect(install.drift.map((d) => d.pending)).to.deep.equal([undefined, ...Array(4).fill(`PKI in ${pkiDir} on localhost`)]);

    const apply = await run(inventory, body);
    expect(apply.summary.recap).to.deep.equal({
      localhost: { ok: 0, changed: 1, failed: 0, skipped: 0, unreachable: false },
      cp1: { ok: 0, changed: 1, failed: 0, skipped: 0, unreachable: false },
    });
    expect(readdirSync(dest).sort()).to.deep.equal(['ca.pem', 'encryption-config.yaml', 'kubernetes-key.pem', 'kubernetes.pem']);
    expect(readFileSync(join(dest, 'kubernetes-key.pem'), 'utf8')).to.equal(readFileSync(join(pkiDir, 'kubernetes-key.pem'), 'utf8'));
    expect(statSync(join(dest, 'kubernetes-key.pem')).mode & 0o777).to.equal(0o600);
    expect(statSync(join(dest, 'kubernetes.pem')).mode & 0o777).to.equal(0o644);
    expect(JSON.stringify(apply.events)).not.to.contain('PRIVATE KEY');

    const again = await run(inventory, body);
    expect(again.summary.recap).to.deep.equal({
      localhost: { ok: 1, changed: 0, failed: 0, skipped: 0, unreachable: false },
      cp1: { ok: 1, changed: 0, failed: 0, skipped: 0, unreachable: false },
    });
    const recheck = await run(inventory, body, { checkMode: true });
    expect(Object.values(recheck.summary.recap).map((r) => r.changed)).to.deep.equal([0, 0]);
  });
});
