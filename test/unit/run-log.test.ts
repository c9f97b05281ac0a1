import { expect } from 'chai';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunEvent } from '../../runner/events.js';
import { finishedLine } from '../../runner/report/format.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { RUN_LOGS_KEPT, openRunLog, runLogName, runsDirectory, teeReporter } from '../../runner/report/run-log.js';
import { Secret } from '../../runner/secret.js';

const NOW = new Date('2026-12-02T16:46:12.345Z');
const mode = (path: string) => (lstatSync(path).mode & 0o777).toString(8);

describe('run log (runner/report/run-log.ts)', () => {
  let dir: string;
  const warnings: string[] = [];
  const open = (options: { now?: Date; playbookPath?: string; keep?: number; diff?: boolean } = {}) =>
    openRunLog({ dir: join(dir, 'runs'), playbookPath: 'playbooks/single-node.ts', diff: false, warn: (m) => warnings.push(m), now: NOW, ...options });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'capstan-run-log-'));
    warnings.length = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is named <UTC time>-<playbook basename>.jsonl, names sorting in start order', () => {
    expect(runLogName('playbooks/single-node.ts', NOW)).to.equal('20261202T164612.345Z-single-node.jsonl');
    expect(runLogName('/x/y/pi cluster;rm.mts', NOW)).to.equal('20261202T164612.345Z-pi_cluster_rm.jsonl');
    expect(runLogName('a.ts', new Date('2026-12-02T09:00:00.000Z')) < runLogName('a.ts', new Date('2026-12-02T10:00:00.000Z'))).to.equal(true);
  });

  it('lives in CAPSTAN_RUNS_DIR, else ~/.capstan/runs', () => {
    expect(runsDirectory({ CAPSTAN_RUNS_DIR: '/tmp/r' })).to.equal('/tmp/r');
    expect(runsDirectory({})).to.match(/\/\.capstan\/runs$/);
  });

  it('makes the directory 0700 and the file 0600, and holds one JSON line per event, secrets as ***', async () => {
    const log = open();
    expect(log.path).to.equal(join(dir, 'runs', '20261202T164612.345Z-single-node.jsonl'));
    const events: RunEvent[] = [
      { type: 'start', playbook: 'single-node', check: false, hosts: 1 },
      { type: 'task', host: 'k8s-01', task: 'file:/etc/x', title: 'file /etc/x', status: 'changed', drift: [{ subject: 'content', desired: String(new Secret('s3cr3t-value')), diff: '+x\n' }], durationMs: 7 },
      { type: 'recap', hosts: { 'k8s-01': { ok: 0, changed: 1, failed: 0, skipped: 0, unreachable: false } }, durationMs: 41_234 },
    ];
    for (const event of events) await log.reporter.emit(event);
    await log.reporter.close();
    expect(mode(join(dir, 'runs'))).to.equal('700');
    expect(mode(log.path)).to.equal('600');
    expect(readFileSync(log.path, 'utf8')).to.equal(
      [
        '{"type":"start","playbook":"single-node","check":false,"hosts":1}',
        // Without --diff, as --json: the drift without its diff.
        '{"type":"task","host":"k8s-01","task":"file:/etc/x","title":"file /etc/x","status":"changed","drift":[{"subject":"content","desired":"***"}],"durationMs":7}',
        '{"type":"recap","hosts":{"k8s-01":{"ok":0,"changed":1,"failed":0,"skipped":0,"unreachable":false}},"durationMs":41234}',
        '',
      ].join('\n'),
    );
  });

  it('tightens an existing runs directory of ours to 0700; refuses one that is a symlink', () => {
    mkdirSync(join(dir, 'runs'), { mode: 0o755 });
    chmodSync(join(dir, 'runs'), 0o755);
    open();
    expect(mode(join(dir, 'runs'))).to.equal('700');
    mkdirSync(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'linked'));
    expect(() => openRunLog({ dir: join(dir, 'linked'), playbookPath: 'p.ts', diff: false, warn: () => undefined, now: NOW })).to.throw(/runs directory .*linked is a symlink/);
    expect(readdirSync(join(dir, 'elsewhere'))).to.deep.equal([]);
  });

  it('never follows a symlink planted at its name: the target is untouched and the next name is used', async () => {
    mkdirSync(join(dir, 'runs'), { mode: 0o700 });
    const target = join(dir, 'victim');
    writeFileSync(target, 'precious\n');
    const planted = join(dir, 'runs', runLogName('playbooks/single-node.ts', NOW));
    symlinkSync(target, planted);
    const log = open();
    await log.reporter.emit({ type: 'start', playbook: 'single-node', check: false, hosts: 0 });
    await log.reporter.close();
    expect(log.path).to.equal(join(dir, 'runs', '20261202T164612.345Z-single-node-2.jsonl'));
    expect(readFileSync(target, 'utf8')).to.equal('precious\n');
    expect(lstatSync(planted).isSymbolicLink()).to.equal(true);
    expect(readFileSync(log.path, 'utf8')).to.equal('{"type":"start","playbook":"single-node","check":false,"hosts":0}\n');
  });

  it(`keeps exactly the newest ${RUN_LOGS_KEPT} logs (this run's included) and no other file is touched`, () => {
    const runs = join(dir, 'runs');
    mkdirSync(runs, { mode: 0o700 });
    const old = Array.from({ length: 60 }, (_, i) => runLogName(`p${i}.ts`, new Date(Date.UTC(2026, 0, 1, 0, i))));
    for (const name of old) writeFileSync(join(runs, name), '{}\n');
    writeFileSync(join(runs, 'notes.txt'), 'mine\n');
    const victim = join(dir, 'victim.jsonl');
    writeFileSync(victim, 'kept\n');
    symlinkSync(victim, join(runs, runLogName('link.ts', new Date(Date.UTC(2025, 0, 1))))); // the oldest "log": a symlink
    const log = open();
    const left = readdirSync(runs).filter((name) => name.endsWith('.jsonl')).sort();
    expect(left).to.have.length(RUN_LOGS_KEPT);
    expect(left).to.deep.equal([...old.slice(-(RUN_LOGS_KEPT - 1)), '20261202T164612.345Z-single-node.jsonl']);
    expect(existsSync(log.path)).to.equal(true);
    expect(readFileSync(join(runs, 'notes.txt'), 'utf8')).to.equal('mine\n');
    expect(readFileSync(victim, 'utf8')).to.equal('kept\n'); // the link was removed, not what it pointed to
  });

  it('never prunes the log it just made, even when the clock went back', () => {
    const runs = join(dir, 'runs');
    mkdirSync(runs, { mode: 0o700 });
    for (let i = 0; i < 3; i++) writeFileSync(join(runs, runLogName('p.ts', new Date(Date.UTC(2030, 0, 1, i)))), '{}\n');
    const log = open({ keep: 2 });
    expect(readdirSync(runs).sort()).to.deep.equal(['20261202T164612.345Z-single-node.jsonl', runLogName('p.ts', new Date(Date.UTC(2030, 0, 1, 2)))]);
    expect(statSync(log.path).isFile()).to.equal(true);
  });

  it('tee passes each event to every reporter in order; plain output ends with "finished in"', async () => {
    const log = open();
    let text = '';
    const reporter = teeReporter(log.reporter, new PlainReporter((t) => (text += t), { diff: false, verbose: false }));
    await reporter.emit({ type: 'start', playbook: 'single-node', check: false, hosts: 1 });
    await reporter.emit({ type: 'recap', hosts: { n1: { ok: 1, changed: 0, failed: 0, skipped: 0, unreachable: false } }, durationMs: 41_249 });
    await reporter.close();
    expect(text).to.equal('PLAYBOOK single-node\n\nRECAP\nHOST  ok  changed  failed  skipped  unreachable\nn1     1        0       0        0  no\nfinished in 41.2 s\n');
    expect(readFileSync(log.path, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { type: string }).type)).to.deep.equal(['start', 'recap']);
    expect(finishedLine(0)).to.equal('finished in 0.0 s');
    expect(finishedLine(312_050)).to.equal('finished in 312.1 s');
  });
});
