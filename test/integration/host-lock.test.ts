import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LabState } from '../../runner/lab/index.js';
import { hostPaths } from '../../runner/lab/paths.js';
import { describeHolder, LOCK_FILE, type LockHolder } from '../../runner/lock.js';
import { capstan, startCapstan, type CliProcess } from '../helpers/cli.js';
import { skipUnlessLabSupported, sshToLab, withLab } from '../helpers/lab.js';

const HOLD = 'test/fixtures/playbooks/faults/hold.ts';

/** Waits until `probe` is true, polling every 100 ms; false after `timeoutMs`. */
async function until(probe: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
    if (await probe()) return true;
  }
  return false;
}

describe('timeouts that stop, and host locks (lab, root login)', function () {
  this.timeout(300_000);
  let lab: LabState;
  let inventory: string;
  const lockPath = () => join(hostPaths(lab.dir, 'node1').root, LOCK_FILE);
  const lockHolder = () => JSON.parse(readFileSync(lockPath(), 'utf8')) as LockHolder;

  /** The command lines running on node1, read with OpenSSH (not the transport under test). */
  async function processTable(): Promise<string[]> {
    const result = await sshToLab(lab, 'node1', 'ps -eo args=');
    expect(result.code, result.stderr).to.equal(0);
    return result.stdout.split('\n').map((line) => line.trim());
  }

  /** Starts `hold.ts` on node1 with `sleep SECONDS` and waits until it holds the lock and its sleep runs. */
  async function holdingRun(seconds: string, args: string[] = []): Promise<CliProcess> {
    const run = startCapstan(['run', HOLD, '-i', inventory, '-l', 'node1', ...args], { env: { CAPSTAN_HOLD_SECONDS: seconds } });
    expect(await until(async () => existsSync(lockPath()) && (await processTable()).includes(`sleep ${seconds}`)), `the run holds node1: ${run.stderr}`).to.equal(true);
    return run;
  }

  before(async function () {
    this.timeout(600_000);
    skipUnlessLabSupported(this);
    lab = await withLab(1);
    inventory = lab.inventoryPath;
  });

  afterEach(async () => {
    await sshToLab(lab, 'node1', `pkill -x sleep; rm -f ${LOCK_FILE}`);
  });

  it('a timed-out `sleep 1000` is gone from the host\'s process table when the run ends', async () => {
    const result = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1', '--timeout', '2'], { env: { CAPSTAN_HOLD_SECONDS: '1000' } });
    expect(result.code, result.stdout + result.stderr).to.equal(2);
    expect(result.stdout).to.include('node1 | FAILED | hold the host: host node1: command timed out after 2s: sleep 1000\n');
    expect(await processTable()).to.not.include('sleep 1000');
    expect(existsSync(lockPath()), 'the lock is released after a failure').to.equal(false);
  });

  it('Ctrl-C twice: the running `sleep 1000` is stopped on the host, the lock released, exit 130', async () => {
    const run = await holdingRun('1000');
    run.child.kill('SIGINT');
    await sleep(300);
    run.child.kill('SIGINT');
    const result = await run.done;
    expect(result.code, result.stdout + result.stderr).to.equal(130);
    expect(result.stderr).to.include('capstan: aborted at once (second Ctrl-C); a file being written is left as it was: stopping the commands still running on the hosts\n');
    expect(await processTable()).to.not.include('sleep 1000');
    expect(existsSync(lockPath())).to.equal(false);
  });

  it('SIGTERM: the running command is stopped on the host and the lock released, exit 143', async () => {
    const run = await holdingRun('1000');
    run.child.kill('SIGTERM');
    const result = await run.done;
    expect(result.code, result.stdout + result.stderr).to.equal(143);
    expect(result.stderr).to.include('capstan: terminated (SIGTERM): stopping the commands still running on the hosts\n');
    expect(await processTable()).to.not.include('sleep 1000');
    expect(existsSync(lockPath())).to.equal(false);
  });

  it('two runs at once: the second stops after --lock-timeout naming the holder; the first keeps its lock', async () => {
    const first = await holdingRun('1002');
    const holder = lockHolder();
    expect(holder).to.deep.include({ controller: hostname(), user: 'root', pid: first.child.pid, playbook: 'hold', leaseSeconds: 120 });
    const second = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1', '--lock-timeout', '1'], { env: { CAPSTAN_HOLD_SECONDS: '0' } });
    expect(second.code, second.stdout + second.stderr).to.equal(2);
    expect(second.stdout).to.include(
      `node1 | FAILED | host lock: host node1 is locked by run ${holder.runId} (controller ${hostname()}, user root, pid ${first.child.pid}, playbook hold, since ${holder.startedAt}); waited 1 s (--lock-timeout)\n`,
    );
    expect(lockHolder()).to.deep.equal(holder); // untouched by the second run
    first.child.kill('SIGTERM');
    expect((await first.done).code).to.equal(143);
    expect(existsSync(lockPath())).to.equal(false);
  });

  it('a second run that may wait long enough waits for the first, says so, then runs', async () => {
    // Long enough for the second CLI to start and reach the host on a loaded machine; short enough to wait for.
    const first = await holdingRun('15');
    const holder = lockHolder();
    const second = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1'], { env: { CAPSTAN_HOLD_SECONDS: '0' } });
    expect(second.code, second.stdout + second.stderr).to.equal(0);
    expect(second.stdout).to.include(`node1 | NOTE | waiting up to 60 s for the lock held by ${describeHolder(holder)}\n`);
    expect((await first.done).code).to.equal(0);
    expect(existsSync(lockPath())).to.equal(false);
  });

  it('a killed controller\'s stale lock is taken over, and the run says so', async () => {
    const killed = await holdingRun('1001');
    const holder = lockHolder();
    killed.child.kill('SIGKILL');
    await killed.done;
    expect(lockHolder(), 'a killed controller leaves its lock').to.deep.equal(holder);
    const next = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1'], { env: { CAPSTAN_HOLD_SECONDS: '0' } });
    expect(next.code, next.stdout + next.stderr).to.equal(0);
    expect(next.stdout).to.include(
      `node1 | NOTE | the lock of ${describeHolder(holder)} is stale (its process ${killed.child.pid} on ${hostname()} is gone): taking it over\n` +
        `node1 | NOTE | took over the stale lock of ${holder.runId}\n`,
    );
    expect(existsSync(lockPath())).to.equal(false);
  });

  it('--check takes no lock and notes the run that holds one', async () => {
    const first = await holdingRun('1003');
    const holder = lockHolder();
    const check = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1', '--check', '--lock-timeout', '0'], { env: { CAPSTAN_HOLD_SECONDS: '0' } });
    expect(check.code, check.stdout + check.stderr).to.equal(0);
    expect(check.stdout).to.include(`node1 | NOTE | locked by ${describeHolder(holder)}: another run is changing this host; this check sees it mid-way\n`);
    expect(lockHolder()).to.deep.equal(holder);
    first.child.kill('SIGTERM');
    expect((await first.done).code).to.equal(143);
    // With no run holding it, --check says nothing about locks and leaves no lock behind.
    const quiet = await capstan(['run', HOLD, '-i', inventory, '-l', 'node1', '--check'], { env: { CAPSTAN_HOLD_SECONDS: '0' } });
    expect(quiet.stdout).to.not.include('NOTE');
    expect(existsSync(lockPath())).to.equal(false);
  });
});
