import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { TaskError, errorMessage } from './errors.js';
import type { Host } from './host.js';
import { sh } from './quote.js';

/** Where a run that changes a host records that it does (one file per host, JSON, 0644 in a 0700 directory). */
export const LOCK_FILE = '/var/lib/capstan/lock';

/** Seconds a lock stays valid without renewal; the holder renews it every quarter of that. */
export const LOCK_LEASE_SECONDS = 120;

/** Seconds between attempts while another run holds the lock. */
const POLL_SECONDS = 2;

/** Seconds after which a takeover mutex left by a controller that died mid-takeover is cleared. */
const TAKEOVER_MUTEX_SECONDS = 60;

/** Who holds a host's lock: what the lock file says, as JSON in this key order. */
export interface LockHolder {
  runId: string;
  /** Host name of the machine running capstan. */
  controller: string;
  user: string;
  pid: number;
  playbook: string;
  /** ISO 8601, the controller's clock. */
  startedAt: string;
  /** Seconds the lock stays valid after its last renewal (the file's mtime, the host's clock). */
  leaseSeconds: number;
}

/** The holder of this process's locks: one run id for every host of the run. */
export function lockHolderForRun(playbook: string, now = new Date()): LockHolder {
  return {
    runId: `${now.toISOString().replace(/[-:]|\.\d+/g, '')}-${randomBytes(4).toString('hex')}`,
    controller: hostname(),
    user: userInfo().username,
    pid: process.pid,
    playbook,
    startedAt: now.toISOString(),
    leaseSeconds: LOCK_LEASE_SECONDS,
  };
}

/**
 * Takes the lock: the holder's JSON goes to a temp file, which is then hard-linked to the lock path.
 * link(2) fails when the path exists, so of two runs exactly one gets it, and the lock is never seen
 * half written. With a stale run id (argument 3), that run's lock is removed first under a mutex
 * directory, so two runs that both found it stale cannot both take it over. Prints `taken`, or
 * `held AGE` (seconds since the lock's last renewal, by the host's clock) and the holder's JSON.
 */
const TAKE_SCRIPT = `f=$1 json=$2 stale=$3
d=\${f%/*}
mkdir -p -m 0700 "$d" || exit 1
age() { echo $(( $(date +%s) - $(stat -c %Y "$1" 2>/dev/null || date +%s) )); }
mutex=
if [ -n "$stale" ]; then
  if mkdir "$f.takeover" 2>/dev/null; then
    mutex=$f.takeover
    grep -qF "\\"runId\\":\\"$stale\\"" "$f" 2>/dev/null && rm -f -- "$f"
  elif [ "$(age "$f.takeover")" -gt ${TAKEOVER_MUTEX_SECONDS} ]; then
    rmdir "$f.takeover" 2>/dev/null
  fi
fi
t=$(mktemp "$d/.lock.XXXXXX") || exit 1
if printf '%s\\n' "$json" > "$t" && chmod 0644 "$t" && ln "$t" "$f" 2>/dev/null; then
  rm -f -- "$t"; [ -z "$mutex" ] || rmdir "$mutex"; echo taken; exit 0
fi
rm -f -- "$t"; [ -z "$mutex" ] || rmdir "$mutex"
[ -e "$f" ] || { echo free; exit 0; }
echo "held $(age "$f")"
cat -- "$f" 2>/dev/null
exit 0`;

/** Prints `free`, or `held AGE` and the holder's JSON (for --check, which takes no lock). */
const READ_SCRIPT = `f=$1
[ -e "$f" ] || { echo free; exit 0; }
echo "held $(( $(date +%s) - $(stat -c %Y "$f" 2>/dev/null || date +%s) ))"
cat -- "$f" 2>/dev/null
exit 0`;

/** Renews (touches) or removes the lock, only while it is still this run's. Exit 1: it is not (any more). */
const OWN_SCRIPT = `f=$1 id=$2 action=$3
grep -qF "\\"runId\\":\\"$id\\"" "$f" 2>/dev/null || exit 1
if [ "$action" = release ]; then rm -f -- "$f"; else touch -c -- "$f"; fi`;

/** What a look at a host's lock found. */
export type LockState = { kind: 'taken' } | { kind: 'free' } | { kind: 'held'; ageSeconds: number; holder: LockHolder | undefined };

/** Parses the output of TAKE_SCRIPT / READ_SCRIPT (pure). An unreadable holder is `undefined`. */
export function parseLockState(stdout: string): LockState {
  const [first = '', ...rest] = stdout.split('\n');
  if (first === 'taken') return { kind: 'taken' };
  const held = /^held (-?\d+)$/.exec(first);
  if (!held) return { kind: 'free' };
  let holder: LockHolder | undefined;
  try {
    const parsed = JSON.parse(rest.join('\n')) as Partial<LockHolder>;
    if (typeof parsed.runId === 'string' && typeof parsed.pid === 'number' && typeof parsed.controller === 'string') {
      holder = { leaseSeconds: LOCK_LEASE_SECONDS, user: '?', playbook: '?', startedAt: '?', ...parsed } as LockHolder;
    }
  } catch {
    // being written by a tool other than Capstan, or damaged: judged by its age alone
  }
  return { kind: 'held', ageSeconds: Number(held[1]), holder };
}

/** "run R (controller C, user U, pid P, playbook B, since T)": who holds a lock, for messages. */
export function describeHolder(holder: LockHolder | undefined): string {
  if (!holder) return `a lock file it cannot read (${LOCK_FILE}: remove it if no run is going)`;
  return `run ${holder.runId} (controller ${holder.controller}, user ${holder.user}, pid ${holder.pid}, playbook ${holder.playbook}, since ${holder.startedAt})`;
}

/**
 * Why a held lock may be taken over, or undefined when its run may still be going (pure). A lock is
 * stale when its holder ran on this controller and that process is gone, or when it was not renewed
 * within its lease (the holder stopped, wherever it ran).
 */
export function staleReason(state: { ageSeconds: number; holder: LockHolder }, here: { controller: string; alive: (pid: number) => boolean }): string | undefined {
  const { holder, ageSeconds } = state;
  if (holder.controller === here.controller && !here.alive(holder.pid)) {
    return `its process ${holder.pid} on ${holder.controller} is gone`;
  }
  if (ageSeconds > holder.leaseSeconds) return `it was not renewed for ${ageSeconds} s (lease ${holder.leaseSeconds} s)`;
  return undefined;
}

/** Whether process `pid` exists on this machine (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The locks this process holds, so an interrupted controller can release them before it exits. */
const heldLocks = new Set<HeldLock>();

/** Releases every lock this process holds (for SIGTERM / second Ctrl-C); errors are ignored. */
export async function releaseHeldLocks(): Promise<void> {
  await Promise.allSettled([...heldLocks].map((lock) => lock.release()));
}

/** A lock this run holds on one host: renewed until released. */
export class HeldLock {
  readonly #timer: NodeJS.Timeout;
  #released = false;

  constructor(
    private readonly host: Host,
    private readonly holder: LockHolder,
    /** Told when renewal finds the lock is no longer this run's (another run took it over). */
    private readonly notice: (line: string) => void,
    private readonly path = LOCK_FILE,
  ) {
    this.#timer = setInterval(() => void this.#renew(), (holder.leaseSeconds * 1000) / 4);
    this.#timer.unref();
    heldLocks.add(this);
  }

  /** Removes the lock file if it is still this run's. Idempotent; a failure is reported, never thrown. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    heldLocks.delete(this);
    try {
      await this.host.exec(sh`sh -c ${OWN_SCRIPT} capstan-lock ${this.path} ${this.holder.runId} release`, { timeoutMs: 30_000 });
    } catch (error) {
      this.notice(`could not release the lock ${this.path}: ${errorMessage(error)}`);
    }
  }

  async #renew(): Promise<void> {
    try {
      const result = await this.host.exec(sh`sh -c ${OWN_SCRIPT} capstan-lock ${this.path} ${this.holder.runId} renew`, { timeoutMs: 30_000 });
      if (result.code !== 0 && !this.#released) this.notice(`the lock ${this.path} is no longer this run's: another run took it over`);
    } catch {
      // a lost connection fails the host's next task; the lease covers a missed renewal
    }
  }
}

/** How long to wait for a lock, and where to report on it. */
export interface LockOptions {
  holder: LockHolder;
  /** Milliseconds to wait while another run holds the lock. */
  timeoutMs: number;
  /** Notices for the operator: waiting, taken over. */
  notice: (line: string) => void;
  /** The lock file; LOCK_FILE unless a test says otherwise. */
  path?: string;
}

/**
 * Takes the host's lock for this run, waiting up to `timeoutMs` while another run holds it, and
 * taking over a stale one (reported through `notice`). Throws TaskError naming the holder when the
 * wait ends with the lock still held. Resolves to undefined when this run holds it already: two
 * inventory hosts can be one machine (two users on one address, several `ansible_connection: local`).
 */
export async function acquireLock(host: Host, options: LockOptions): Promise<HeldLock | undefined> {
  const { holder, notice, path = LOCK_FILE } = options;
  const json = JSON.stringify(holder);
  const deadline = Date.now() + options.timeoutMs;
  let stale = '';
  let waiting = false;
  let vanished = 0;
  for (;;) {
    const result = await host.run(sh`sh -c ${TAKE_SCRIPT} capstan-lock ${path} ${json} ${stale}`, { timeoutMs: 30_000 });
    const state = parseLockState(result.stdout);
    if (state.kind === 'taken') {
      if (stale) notice(`took over the stale lock of ${stale}`);
      return new HeldLock(host, holder, notice, path);
    }
    stale = '';
    if (state.kind === 'free') {
      // Released between our attempt and the look; twice in a row means the link itself fails.
      if (++vanished > 2) throw new TaskError(`host ${host.name}: cannot create the lock ${path}`, { host: host.name, task: 'lock' });
      continue;
    }
    vanished = 0;
    if (state.holder?.runId === holder.runId) return undefined;
    const reason = state.holder ? staleReason({ ageSeconds: state.ageSeconds, holder: state.holder }, { controller: holder.controller, alive: processAlive }) : undefined;
    if (reason !== undefined && state.holder) {
      notice(`the lock of ${describeHolder(state.holder)} is stale (${reason}): taking it over`);
      stale = state.holder.runId;
      continue;
    }
    if (Date.now() + POLL_SECONDS * 1000 > deadline) {
      throw new TaskError(
        `host ${host.name} is locked by ${describeHolder(state.holder)}; waited ${Math.round(options.timeoutMs / 1000)} s (--lock-timeout)`,
        { host: host.name, task: 'lock' },
      );
    }
    if (!waiting) {
      waiting = true;
      notice(`waiting up to ${Math.round(options.timeoutMs / 1000)} s for the lock held by ${describeHolder(state.holder)}`);
    }
    await delay(POLL_SECONDS * 1000);
  }
}

/** For --check: who holds the host's lock, or undefined when nobody does. Takes no lock. */
export async function lockHolderOf(host: Host, path = LOCK_FILE): Promise<{ holder: LockHolder | undefined } | undefined> {
  const result = await host.run(sh`sh -c ${READ_SCRIPT} capstan-lock ${path}`, { timeoutMs: 30_000 });
  const state = parseLockState(result.stdout);
  return state.kind === 'held' ? { holder: state.holder } : undefined;
}
