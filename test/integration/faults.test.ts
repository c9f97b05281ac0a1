import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { hostFactory } from '../../runner/connect.js';
import { CommandError, TransportError } from '../../runner/errors.js';
import { formatLedger, PENDING_HANDLERS_FILE } from '../../runner/handlers.js';
import type { Host } from '../../runner/host.js';
import { loadInventory } from '../../runner/inventory/index.js';
import { startHost, stopHost, type LabState } from '../../runner/lab/index.js';
import { hostPaths, vethName } from '../../runner/lab/paths.js';
import { readRecord } from '../../runner/lab/state.js';
import { sh } from '../../runner/quote.js';
import { restart } from '../fixtures/playbooks/faults/handlers.js';
import { capstan, eventsOf, recapOf, startCapstan } from '../helpers/cli.js';
import { sshToLab, withLab } from '../helpers/lab.js';
import { expectNothingChanged } from '../helpers/recap.js';

const exec = promisify(execFile);
const FIXTURES = 'test/fixtures/playbooks/faults';

/* ------------------------------------------------------------------ lab fault injection */

/** The PID (as this machine sees it) of the host's init, to enter its namespaces. */
function hostInit(lab: LabState, name: string): number {
  const record = readRecord(lab.dir);
  const host = record?.hosts.find((h) => h.name === name);
  if (!host || host.pid <= 0) throw new Error(`lab host ${name} is not running`);
  const children = readFileSync(`/proc/${host.pid}/task/${host.pid}/children`, 'utf8').trim().split(/\s+/);
  return Number(children[0]);
}

/** Runs a command in the host's mount and PID namespaces (its own /proc and tools); resolves with its exit code. */
async function inHost(lab: LabState, name: string, command: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await exec('nsenter', [`--target=${hostInit(lab, name)}`, '--mount', '--pid', '--', ...command]);
    return { code: 0, stdout };
  } catch (error) {
    const e = error as { code?: number; stdout?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '' };
  }
}

/** Cuts every logged-in SSH session of the host at once (SIGKILL to sshd's session processes): the connection drops. */
function dropSessions(lab: LabState, name: string): Promise<{ code: number }> {
  return inHost(lab, name, ['pkill', '-KILL', '-f', '^sshd: [^ ]+@']);
}

/** Slows the machine→host direction of the host's link (tbf), so a multi-megabyte write lasts long enough to be cut. */
async function throttle(lab: LabState, name: string, rate: string): Promise<boolean> {
  const host = lab.hosts.find((h) => h.name === name)!;
  try {
    await exec('tc', ['qdisc', 'replace', 'dev', vethName(host.address), 'root', 'tbf', 'rate', rate, 'burst', '64kb', 'latency', '2s']);
    return true;
  } catch {
    return false;
  }
}

async function unthrottle(lab: LabState, name: string): Promise<void> {
  const host = lab.hosts.find((h) => h.name === name)!;
  await exec('tc', ['qdisc', 'del', 'dev', vethName(host.address), 'root']).catch(() => undefined);
}

/** A path inside the host's root filesystem, read from this machine (no shell, no SSH). */
function onHost(lab: LabState, name: string, path: string): string {
  return join(hostPaths(lab.dir, name).root, path);
}

/** Capstan's temp files (ATOMIC_WRITE's `.capstan.XXXXXX`) in a directory of the host. */
function tempFiles(lab: LabState, name: string, dir: string): string[] {
  const local = onHost(lab, name, dir);
  return existsSync(local) ? readdirSync(local).filter((f) => f.startsWith('.capstan.')) : [];
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function fileSha(path: string): string | null {
  return existsSync(path) ? sha256(readFileSync(path)) : null;
}

/** Waits until `probe` is true, polling every `intervalMs`; false on timeout. */
async function until(probe: () => boolean, timeoutMs: number, intervalMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (probe()) return true;
    await sleep(intervalMs);
  }
  return probe();
}

/** Waits for ATOMIC_WRITE's cleanup on the host (its EXIT trap removes the temp file; a write whose bytes all arrived before the cut still checks, syncs and renames, seconds on a busy machine); returns what is left. */
async function settledTemps(lab: LabState, name: string, dir: string, timeoutMs = 15_000): Promise<string[]> {
  await until(() => tempFiles(lab, name, dir).length === 0, timeoutMs, 20);
  return tempFiles(lab, name, dir);
}

/**
 * Runs `true` until it works. Right after a cut, the transport may not have noticed that its connection
 * closed yet and fails the next command with "Not connected" instead of opening a new one (see the report).
 */
async function reconnect(host: Host): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await host.exec(sh`true`);
      return;
    } catch (error) {
      if (!(error instanceof TransportError) || attempt >= 20) throw error;
      await sleep(50);
    }
  }
}

/* ------------------------------------------------------------------ tests */

describe('faults: dropped connections, hung commands, dead hosts, Ctrl-C, interrupted handlers', function () {
  this.timeout(600_000);
  let lab: LabState;
  let work: string;
  let inventory: string;

  before(async function () {
    this.timeout(600_000);
    lab = await withLab([{ name: 'node1' }, { name: 'node2', vars: { hang: true } }, { name: 'node3' }]);
    work = mkdtempSync(join(tmpdir(), 'capstan-faults-'));
    inventory = lab.inventoryPath;
  });

  after(async () => {
    for (const host of lab?.hosts ?? []) await unthrottle(lab, host.name);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a connection cut at a random point of a 1–4 MB write never leaves a torn or empty file (100 tries)', async () => {
    const tries = 100;
    const dir = '/root/drop';
    const path = `${dir}/target.bin`;
    await sshToLab(lab, 'node1', `mkdir -p ${dir}`);
    const throttled = await throttle(lab, 'node1', '32mbit');
    const bytesPerMs = throttled ? 32e6 / 8 / 1000 : 16_000; // unthrottled: ~16 MB/s measured on the lab bridge
    const inv = await loadInventory(lab.inventoryPath);
    const host: Host = hostFactory({ acceptNewHostKeys: false })(inv.hosts.get('node1')!);
    const figures = { tries, completed: 0, interrupted: 0, interruptedByTransport: 0, interruptedByCommand: 0, old: 0, new: 0, torn: 0, empty: 0, tempLeft: 0, killMissed: 0 };
    const started = Date.now();
    try {
      let current = randomBytes(1024 * 1024);
      await host.writeFile(path, current);
      expect(fileSha(onHost(lab, 'node1', path))).to.equal(sha256(current));
      for (let i = 0; i < tries; i++) {
        await reconnect(host); // first, so the random point falls in the transfer, not the handshake
        const next = randomBytes(1024 * 1024 + Math.floor(Math.random() * 3 * 1024 * 1024));
        const delay = Math.random() * (next.length / bytesPerMs) * 1.1;
        const write = host.writeFile(path, next).then(
          () => null,
          (error: unknown) => error,
        );
        await sleep(delay);
        if ((await dropSessions(lab, 'node1')).code !== 0) figures.killMissed++;
        const error = await write;
        if (error === null) figures.completed++;
        else {
          figures.interrupted++;
          if (error instanceof TransportError) figures.interruptedByTransport++;
          else if (error instanceof CommandError) figures.interruptedByCommand++;
          else throw error;
        }
        figures.tempLeft += (await settledTemps(lab, 'node1', dir)).length;
        const sum = fileSha(onHost(lab, 'node1', path));
        if (sum === sha256(next)) {
          figures.new++;
          current = next;
        } else if (sum === sha256(current)) {
          figures.old++;
          // A write that reported success must have landed.
          expect(error, `try ${i}: writeFile resolved but the file kept its old content`).not.to.equal(null);
        } else if (sum === sha256('') || sum === null) {
          figures.empty++;
        } else {
          figures.torn++;
        }
      }
    } finally {
      await host.close();
      await unthrottle(lab, 'node1');
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`      drop-during-write figures (${throttled ? 'link throttled to 32 Mbit/s' : 'unthrottled'}, ${seconds} s): ${JSON.stringify(figures)}`);
    expect(figures.torn, 'torn files').to.equal(0);
    expect(figures.empty, 'empty or missing files').to.equal(0);
    expect(figures.tempLeft, 'temp files left behind').to.equal(0);
    expect(figures.old + figures.new).to.equal(tries);
    // The test proves something only if most cuts landed while the write was in flight.
    expect(figures.interrupted, 'writes actually cut').to.be.greaterThan(tries / 3);
    expect(figures.old, 'cut writes discarded (target kept its old content)').to.be.greaterThan(tries / 4);
  });

  it('through the CLI: a cut write fails the host as unreachable, leaves old or new content, and the next run converges', async () => {
    const dir = '/root/faults';
    const path = `${dir}/big.txt`;
    expect(await throttle(lab, 'node3', '16mbit'), 'tc tbf is needed to slow the write').to.equal(true);
    const outcomes: string[] = [];
    try {
      let current: string | null = null;
      for (let i = 0; i < 3; i++) {
        const contentFile = join(work, `big-${i}.txt`);
        const content = `${randomBytes(2 * 1024 * 1024 + i).toString('base64')}\n`;
        writeFileSync(contentFile, content);
        const env = { CAPSTAN_FAULTS_CONTENT: contentFile, CAPSTAN_RETRY_DIR: join(work, 'retry') };
        const run = startCapstan(['run', `${FIXTURES}/bigfile.ts`, '-i', inventory, '-l', 'node3', '--json'], { env });
        expect(await until(() => tempFiles(lab, 'node3', dir).length > 0, 60_000), 'the write started').to.equal(true);
        await sleep(Math.random() * 600);
        await dropSessions(lab, 'node3');
        const result = await run.done;
        expect(await settledTemps(lab, 'node3', dir), 'temp files left').to.deep.equal([]);
        const sum = fileSha(onHost(lab, 'node3', path));
        expect([sha256(content), current === null ? null : sha256(current)]).to.include(sum);
        outcomes.push(sum === sha256(content) ? 'new' : 'old');
        if (sum !== sha256(content)) {
          expect(result.code, result.stdout + result.stderr).to.equal(4);
          expect(recapOf(result.stdout).node3!.unreachable).to.equal(true);
          const unreachable = eventsOf(result.stdout).find((e) => e.type === 'unreachable') as { message: string };
          expect(unreachable.message).to.match(/node3.*connection lost/);
          expect(readFileSync(join(work, 'retry', 'bigfile.retry'), 'utf8')).to.equal('node3\n');
        }
        const again = await capstan(['run', `${FIXTURES}/bigfile.ts`, '-i', inventory, '-l', 'node3', '--json'], { env });
        expect(again.code, again.stdout + again.stderr).to.equal(0);
        expect(fileSha(onHost(lab, 'node3', path))).to.equal(sha256(content));
        const third = await capstan(['run', `${FIXTURES}/bigfile.ts`, '-i', inventory, '-l', 'node3', '--json'], { env });
        expect(recapOf(third.stdout).node3).to.deep.equal({ ok: 2, changed: 0, failed: 0, skipped: 0, unreachable: false });
        current = content;
      }
    } finally {
      await unthrottle(lab, 'node3');
    }
    console.log(`      CLI cut writes: ${outcomes.join(', ')} (old = cut mid-transfer and discarded)`);
    expect(outcomes).to.include('old');
  });

  it('a hung command fails its host after --timeout, naming the task, while the others finish', async () => {
    const started = Date.now();
    const result = await capstan(['run', `${FIXTURES}/hang.ts`, '-i', inventory, '--timeout', '3']);
    const seconds = (Date.now() - started) / 1000;
    expect(result.code, result.stdout + result.stderr).to.equal(2);
    expect(result.stdout).to.include('node2 | FAILED | wait for the hung service: host node2: command timed out after 3s: sleep 600\n');
    expect(result.stdout).to.match(/RECAP\nHOST +ok +changed +failed +skipped +unreachable\n/);
    expect(result.stdout).to.match(/\nnode1 +\d+ +\d+ +0 +1 +no\n/);
    expect(result.stdout).to.match(/\nnode2 +0 +0 +1 +0 +no\n/);
    expect(result.stdout).to.match(/\nnode3 +\d+ +\d+ +0 +1 +no\nfinished in \d+\.\d s\n$/);
    expect(result.stderr).to.include(`run log: ${Object.keys(result.runLogs)[0]}\n`); // a failed run names its log
    for (const name of ['node1', 'node3']) expect(readFileSync(onHost(lab, name, '/root/faults/after-hang'), 'utf8')).to.equal(`${name} went on\n`);
    expect(existsSync(onHost(lab, 'node2', '/root/faults/after-hang'))).to.equal(false);
    // Stopped through its process group, though sshd refuses signal requests in root sessions.
    const left = await inHost(lab, 'node2', ['pgrep', '-f', '^sleep 600']);
    console.log(`      hung host: run took ${seconds.toFixed(1)} s`);
    expect(left.code, `the timed-out "sleep 600" is still running on node2: ${left.stdout}`).to.equal(1);
  });

  it('a host that dies mid-run and one that never answers: exit 4, recap names both; --limit @retry re-runs only them', async () => {
    const ghostAddress = lab.hosts[0]!.address.replace(/\.\d+$/, '.250');
    const inv = join(work, 'with-ghost.yaml');
    writeFileSync(
      inv,
      `all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: ${lab.keyPath}\n    capstan_known_hosts_file: ${lab.knownHostsPath}\n    ansible_ssh_timeout: 3\n  hosts:\n${lab.hosts
        .map((h) => `    ${h.name}:\n      ansible_host: ${h.address}\n`)
        .join('')}    ghost:\n      ansible_host: ${ghostAddress}\n`,
    );
    const retryDir = join(work, 'retry-slow');
    const env = { CAPSTAN_RETRY_DIR: retryDir };
    const started = Date.now();
    const run = startCapstan(['run', `${FIXTURES}/slow.ts`, '-i', inv, '--json'], { env });
    expect(await until(() => existsSync(onHost(lab, 'node2', '/root/faults/slow-1')), 60_000), 'node2 made progress').to.equal(true);
    let first;
    try {
      await stopHost('node2');
      first = await run.done;
    } finally {
      await startHost('node2');
    }
    const seconds = (Date.now() - started) / 1000;
    expect(first.code, first.stdout + first.stderr).to.equal(4);
    const recap = recapOf(first.stdout);
    expect(Object.keys(recap).sort()).to.deep.equal(['ghost', 'node1', 'node2', 'node3']);
    expect(recap.ghost).to.deep.equal({ ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: true });
    const node2 = recap.node2!;
    expect(node2.unreachable || node2.failed > 0, JSON.stringify(node2)).to.equal(true);
    for (const name of ['node1', 'node3']) expect(recap[name]!.failed + Number(recap[name]!.unreachable)).to.equal(0);
    const messages = eventsOf(first.stdout).filter((e) => e.type === 'unreachable' || (e.type === 'task' && e.status === 'failed'));
    console.log(`      dead + ghost hosts: run took ${seconds.toFixed(1)} s (stopHost included); node2 ${node2.unreachable ? 'unreachable' : 'failed'}: ${messages.map((m) => `${m.host as string}: ${m.message as string}`).join(' | ')}`);
    const retryFile = join(retryDir, 'slow.retry');
    expect(readFileSync(retryFile, 'utf8').trim().split('\n').sort()).to.deep.equal(['ghost', 'node2']);

    const rerun = await capstan(['run', `${FIXTURES}/slow.ts`, '-i', inv, '--json', '--limit', `@${retryFile}`], { env });
    expect(rerun.code, rerun.stdout + rerun.stderr).to.equal(4); // ghost still does not answer
    const again = recapOf(rerun.stdout);
    expect(Object.keys(again).sort()).to.deep.equal(['ghost', 'node2']);
    expect(again.node2!.failed).to.equal(0);
    expect(again.node2!.unreachable).to.equal(false);
    for (let step = 1; step <= 6; step++) expect(existsSync(onHost(lab, 'node2', `/root/faults/slow-${step}`)), `slow-${step}`).to.equal(true);
    expect(readFileSync(retryFile, 'utf8')).to.equal('ghost\n');
    const converged = await capstan(['run', `${FIXTURES}/slow.ts`, '-i', inv, '--json', '--limit', 'node2']);
    expect(recapOf(converged.stdout).node2).to.deep.equal({ ok: 7, changed: 0, failed: 0, skipped: 0, unreachable: false });
  });

  it('Ctrl-C during a file write: the write completes, nothing after it starts, recap printed, exit 99', async () => {
    const dir = '/root/faults';
    const contentFile = join(work, 'int-big.txt');
    const content = `${randomBytes(3 * 1024 * 1024).toString('base64')}\n`;
    writeFileSync(contentFile, content);
    expect(await throttle(lab, 'node1', '16mbit'), 'tc tbf is needed to slow the write').to.equal(true);
    let result;
    let signalledAt = 0;
    try {
      const run = startCapstan(['run', `${FIXTURES}/interrupt.ts`, '-i', inventory, '-l', 'node1', '--json'], { env: { CAPSTAN_FAULTS_CONTENT: contentFile } });
      expect(await until(() => tempFiles(lab, 'node1', dir).length > 0, 60_000), 'the write started').to.equal(true);
      run.child.kill('SIGINT');
      signalledAt = Date.now();
      result = await run.done;
    } finally {
      await unthrottle(lab, 'node1');
    }
    console.log(`      Ctrl-C during a write: exited ${((Date.now() - signalledAt) / 1000).toFixed(1)} s after SIGINT`);
    expect(result.code, result.stdout + result.stderr).to.equal(99);
    expect(result.stderr).to.include('capstan: interrupting: finishing the tasks in flight, starting no others');
    const events = eventsOf(result.stdout);
    expect(events.at(-1)!.type).to.equal('recap');
    const big = events.find((e) => e.type === 'task' && e.task === 'file:/root/faults/int-big.txt');
    expect(big?.status).to.equal('changed');
    const started = events.filter((e) => e.type === 'task-start').map((e) => e.title);
    expect(started).to.not.include('step 2');
    expect(started).to.not.include('step 4');
    expect(readFileSync(onHost(lab, 'node1', '/root/faults/int-big.txt'), 'utf8') === content, 'the file in flight is whole').to.equal(true);
    expect(tempFiles(lab, 'node1', dir)).to.deep.equal([]);
    for (const n of [2, 3, 4]) expect(existsSync(onHost(lab, 'node1', `/root/faults/int-${n}`)), `int-${n}`).to.equal(false);
    expect(recapOf(result.stdout).node1!.failed).to.equal(0);
  });

  it('a second Ctrl-C exits at once with 130; a later run converges', async () => {
    const contentFile = join(work, 'int-big.txt');
    const run = startCapstan(['run', `${FIXTURES}/interrupt.ts`, '-i', inventory, '-l', 'node3', '--json'], { env: { CAPSTAN_FAULTS_CONTENT: contentFile } });
    expect(await until(() => run.stdout.includes('"title":"step 1"'), 60_000, 20), 'step 1 started').to.equal(true);
    run.child.kill('SIGINT');
    await sleep(300);
    run.child.kill('SIGINT');
    const second = Date.now();
    const result = await run.done;
    const ms = Date.now() - second;
    console.log(`      second Ctrl-C: exit ${result.code} after ${ms} ms`);
    expect(result.code).to.equal(130);
    expect(result.stderr).to.include('capstan: aborted at once (second Ctrl-C)');

    const converge = await capstan(['run', `${FIXTURES}/interrupt.ts`, '-i', inventory, '-l', 'node1:node3', '--json'], { env: { CAPSTAN_FAULTS_CONTENT: contentFile } });
    expect(converge.code, converge.stdout + converge.stderr).to.equal(0);
    for (const name of ['node1', 'node3']) {
      for (const n of [1, 2, 3, 4]) expect(existsSync(onHost(lab, name, `/root/faults/int-${n}`)), `${name} int-${n}`).to.equal(true);
      expect(readFileSync(onHost(lab, name, '/root/faults/int-big.txt'), 'utf8') === readFileSync(contentFile, 'utf8')).to.equal(true);
    }
    const again = await capstan(['run', `${FIXTURES}/interrupt.ts`, '-i', inventory, '-l', 'node1:node3', '--json'], { env: { CAPSTAN_FAULTS_CONTENT: contentFile } });
    expectNothingChanged(again.stdout, ['node1', 'node3']);
  });

  it('a handler notified before a later task failed runs on the next run, once, and its ledger goes away', async () => {
    const handlerId = restart.static!.id;
    const log = onHost(lab, 'node1', '/root/handlers/handler.log');
    const ledger = onHost(lab, 'node1', PENDING_HANDLERS_FILE);
    const runWith = (vars: string[]) => capstan(['run', `${FIXTURES}/handlers.ts`, '-i', inventory, '-l', 'node1', '--json', ...vars.flatMap((v) => ['-e', v])]);
    const taskEvents = (stdout: string) => eventsOf(stdout).filter((e) => e.type === 'task').map((e) => `${e.title as string}: ${e.status as string}`);

    const first = await runWith(['conf=v1', 'fail=yes']);
    expect(first.code, first.stdout + first.stderr).to.equal(2);
    expect(taskEvents(first.stdout)).to.deep.equal(['directory /root/handlers: changed', 'A: app config: changed', 'B: fails on demand: failed']);
    expect(existsSync(log), 'H did not run').to.equal(false);
    expect(readFileSync(ledger, 'utf8')).to.equal(formatLedger([handlerId]));

    const second = await runWith(['conf=v1', 'fail=no']);
    expect(second.code, second.stdout + second.stderr).to.equal(0);
    expect(taskEvents(second.stdout)).to.deep.equal(['directory /root/handlers: ok', 'A: app config: ok', 'H: restart app: changed']);
    expect(eventsOf(second.stdout).some((e) => e.type === 'log' && e.task === handlerId && String(e.line).includes('notified by an earlier run'))).to.equal(true);
    expect(recapOf(second.stdout).node1).to.deep.equal({ ok: 2, changed: 1, failed: 0, skipped: 1, unreachable: false });
    expect(readFileSync(log, 'utf8')).to.equal('restarted with setting = v1\n');
    expect(existsSync(ledger), 'ledger removed after the handler ran').to.equal(false);

    const third = await runWith(['conf=v1', 'fail=no']);
    expect(taskEvents(third.stdout)).to.deep.equal(['directory /root/handlers: ok', 'A: app config: ok']);
    expect(readFileSync(log, 'utf8')).to.equal('restarted with setting = v1\n');

    const fourth = await runWith(['conf=v2', 'fail=no']);
    expect(taskEvents(fourth.stdout)).to.deep.equal(['directory /root/handlers: ok', 'A: app config: changed', 'H: restart app: changed']);
    expect(readFileSync(log, 'utf8')).to.equal('restarted with setting = v1\nrestarted with setting = v2\n');
    expect(existsSync(ledger)).to.equal(false);
  });
});
