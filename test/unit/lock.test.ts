import { expect } from 'chai';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TaskError } from '../../runner/errors.js';
import {
  acquireLock,
  describeHolder,
  LOCK_LEASE_SECONDS,
  lockHolderForRun,
  lockHolderOf,
  parseLockState,
  processAlive,
  releaseHeldLocks,
  staleReason,
  type LockHolder,
} from '../../runner/lock.js';
import { localHost } from '../helpers/local.js';

const holder = (overrides: Partial<LockHolder> = {}): LockHolder => ({
  runId: '20261202T164700Z-0a1b2c3d',
  controller: 'ops-laptop',
  user: 'alice',
  pid: 4242,
  playbook: 'single-node',
  startedAt: '2026-12-02T16:47:00.000Z',
  leaseSeconds: 120,
  ...overrides,
});

describe('host lock: pure parts', () => {
  it('parses taken, free and held (with the holder, or an unreadable one)', () => {
    expect(parseLockState('taken\n')).to.deep.equal({ kind: 'taken' });
    expect(parseLockState('free\n')).to.deep.equal({ kind: 'free' });
    expect(parseLockState(`held 7\n${JSON.stringify(holder())}\n`)).to.deep.equal({ kind: 'held', ageSeconds: 7, holder: holder() });
    expect(parseLockState('held 300\n{"runId": \n')).to.deep.equal({ kind: 'held', ageSeconds: 300, holder: undefined });
  });

  it('names the holder: run id, controller, user, pid, playbook, since', () => {
    expect(describeHolder(holder())).to.equal(
      'run 20261202T164700Z-0a1b2c3d (controller ops-laptop, user alice, pid 4242, playbook single-node, since 2026-12-02T16:47:00.000Z)',
    );
    expect(describeHolder(undefined)).to.equal('a lock file it cannot read (/var/lib/capstan/lock: remove it if no run is going)');
  });

  it('is stale when its process on this controller is gone, or when its lease ran out; not otherwise', () => {
    const here = { controller: 'ops-laptop', alive: (pid: number) => pid !== 4242 };
    expect(staleReason({ ageSeconds: 5, holder: holder() }, here)).to.equal('its process 4242 on ops-laptop is gone');
    // Another controller's pid means nothing here: only the lease counts.
    const elsewhere = { controller: 'ci-runner', alive: () => false };
    expect(staleReason({ ageSeconds: 5, holder: holder() }, elsewhere)).to.equal(undefined);
    expect(staleReason({ ageSeconds: 120, holder: holder() }, elsewhere)).to.equal(undefined);
    expect(staleReason({ ageSeconds: 121, holder: holder() }, elsewhere)).to.equal('it was not renewed for 121 s (lease 120 s)');
    expect(staleReason({ ageSeconds: 5, holder: holder() }, { controller: 'ops-laptop', alive: () => true })).to.equal(undefined);
  });

  it('makes one holder per run from this process', () => {
    const made = lockHolderForRun('pi-cluster', new Date('2026-12-02T16:47:05.123Z'));
    expect(made.runId).to.match(/^20261202T164705Z-[0-9a-f]{8}$/);
    expect(made).to.deep.include({ controller: hostname(), pid: process.pid, playbook: 'pi-cluster', startedAt: '2026-12-02T16:47:05.123Z', leaseSeconds: LOCK_LEASE_SECONDS });
    expect(processAlive(process.pid)).to.equal(true);
  });
});

describe('host lock: the scripts, on this machine', function () {
  this.timeout(30_000);
  let local: ReturnType<typeof localHost>;
  let path: string;
  let notices: string[];
  const notice = (line: string) => void notices.push(line);

  beforeEach(() => {
    local = localHost();
    path = join(local.dir, 'state', 'lock');
    notices = [];
  });
  afterEach(async () => {
    await releaseHeldLocks(); // stops their renewal timers
    local.cleanup();
  });

  it('takes a free lock with the holder as JSON, and releases it', async () => {
    const ours = holder({ controller: hostname(), pid: process.pid });
    const lock = await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path });
    expect(readFileSync(path, 'utf8')).to.equal(`${JSON.stringify(ours)}\n`);
    expect(await lockHolderOf(local.host, path)).to.deep.equal({ holder: ours });
    await lock!.release();
    expect(existsSync(path)).to.equal(false);
    expect(await lockHolderOf(local.host, path)).to.equal(undefined);
    expect(notices).to.deep.equal([]);
  });

  it('a second run stops after the lock timeout, naming the holder; the lock stays the first run\'s', async () => {
    const first = holder({ controller: hostname(), pid: process.pid });
    await acquireLock(local.host, { holder: first, timeoutMs: 0, notice, path });
    const second = holder({ runId: 'second-run', controller: hostname(), pid: process.pid });
    const error = await acquireLock(local.host, { holder: second, timeoutMs: 0, notice, path }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(TaskError);
    expect((error as Error).message).to.equal(`host local is locked by ${describeHolder(first)}; waited 0 s (--lock-timeout)`);
    expect(readFileSync(path, 'utf8')).to.equal(`${JSON.stringify(first)}\n`);
  });

  it('the same run reaching the same machine under another inventory name goes on', async () => {
    const ours = holder({ controller: hostname(), pid: process.pid });
    await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path });
    expect(await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path })).to.equal(undefined);
  });

  it('takes over a lock whose process on this controller is gone, and says so', async () => {
    const dead = holder({ controller: hostname(), pid: 2 ** 22 + 1 }); // above pid_max's default ceiling: never alive
    await acquireLock(local.host, { holder: dead, timeoutMs: 0, notice, path });
    const ours = holder({ runId: 'taker', controller: hostname(), pid: process.pid });
    await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path });
    expect(readFileSync(path, 'utf8')).to.equal(`${JSON.stringify(ours)}\n`);
    expect(notices).to.deep.equal([
      `the lock of ${describeHolder(dead)} is stale (its process ${dead.pid} on ${hostname()} is gone): taking it over`,
      `took over the stale lock of ${dead.runId}`,
    ]);
  });

  it('takes over a lock from another controller that was not renewed within its lease', async () => {
    const gone = holder({ controller: 'elsewhere', leaseSeconds: 60 });
    await acquireLock(local.host, { holder: gone, timeoutMs: 0, notice, path });
    const tenMinutesAgo = Date.now() / 1000 - 600;
    utimesSync(path, tenMinutesAgo, tenMinutesAgo);
    const ours = holder({ runId: 'taker', controller: hostname(), pid: process.pid });
    await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path });
    expect(readFileSync(path, 'utf8')).to.equal(`${JSON.stringify(ours)}\n`);
    expect(notices[0]).to.match(new RegExp(`^the lock of run 20261202T164700Z-0a1b2c3d \\(controller elsewhere, .*\\) is stale \\(it was not renewed for (600|601) s \\(lease 60 s\\)\\): taking it over$`));
  });

  it('release leaves a lock alone that another run has taken over', async () => {
    const ours = holder({ controller: hostname(), pid: process.pid });
    const lock = await acquireLock(local.host, { holder: ours, timeoutMs: 0, notice, path });
    const other = holder({ runId: 'other-run' });
    writeFileSync(path, `${JSON.stringify(other)}\n`);
    await lock!.release();
    expect(readFileSync(path, 'utf8')).to.equal(`${JSON.stringify(other)}\n`);
  });
});
