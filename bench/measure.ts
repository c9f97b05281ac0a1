/**
 * Runs one command and measures it as a whole process tree:
 * - wall time: from spawn to exit (hrtime, in this process);
 * - CPU: user + sys of the command and every descendant it waited for (GNU time's %U and %S,
 *   i.e. wait4's rusage), plus the CPU of processes it left detached (Ansible's ssh ControlPersist
 *   masters, matched by `detachedMarker` in their command line, read from /proc before they are
 *   stopped);
 * - memory, two ways: `maxRssKiB` is GNU time's %M (the largest single process of the tree), and
 *   `treePeakKiB` is the peak of the summed RSS of every process of the tree (plus the detached
 *   ones), sampled from /proc every 50 ms. RSS counts shared pages in each process, so the sum
 *   over-counts forked workers that share pages (Ansible's); it is the upper bound, %M the lower.
 *   `treePeakPssKiB` (summed PSS, every 500 ms) is in between: each shared page counted once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Measurement {
  wallMs: number;
  /** user + sys of the tree, including `detachedCpuMs`. */
  cpuMs: number;
  userMs: number;
  sysMs: number;
  /** CPU of detached processes (ssh ControlPersist masters) the command left behind. */
  detachedCpuMs: number;
  /** GNU time %M: max RSS of the largest single process. */
  maxRssKiB: number;
  /** Peak of the tree's summed RSS, sampled every 50 ms. */
  treePeakKiB: number;
  /** Peak of the tree's summed PSS (shared pages divided among their sharers), sampled every 500 ms. */
  treePeakPssKiB: number;
  /** Most processes seen in the tree at once. */
  treeMaxProcesses: number;
  /**
   * CPU spent on the hosts during the run (their sshd, shells, python modules): the hosts share the
   * machine's cores with the tool, so this work also stretches the tool's wall time here, where on
   * a real fleet each host would do it on its own CPU in parallel.
   */
  hostCpuMs: number;
  /** The machine's 1-minute load average when the run started (other work on the machine skews wall times). */
  load1: number;
}

export interface CommandResult {
  measurement: Measurement;
  code: number | null;
  stdout: string;
  stderr: string;
}

const PAGE_KIB = 4;
const CLOCK_TICKS_PER_SECOND = 100;
const SAMPLE_MS = 50;
/** Detached processes are looked for by a /proc scan every this many samples (a scan reads every process). */
const SCAN_EVERY = 5;
/** PSS is read every this many samples: smaps_rollup walks the page tables, too costly every 50 ms. */
const PSS_EVERY = 10;

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Children of every thread of `pid`. */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const task of tasks) {
    const text = readText(`/proc/${pid}/task/${task}/children`);
    if (text) for (const child of text.split(' ')) if (child.trim()) out.push(Number(child));
  }
  return out;
}

/** `pid` and all its descendants alive now. */
export function processTree(pid: number): number[] {
  const seen: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const next = queue.pop()!;
    seen.push(next);
    queue.push(...childrenOf(next));
  }
  return seen;
}

function rssKiB(pid: number): number {
  const statm = readText(`/proc/${pid}/statm`);
  return statm ? Number(statm.split(' ')[1] ?? 0) * PAGE_KIB : 0;
}

/** Proportional set size: RSS with each shared page divided among the processes sharing it. */
function pssKiB(pid: number): number {
  const rollup = readText(`/proc/${pid}/smaps_rollup`);
  const match = rollup ? /^Pss:\s+(\d+) kB/m.exec(rollup) : null;
  return match ? Number(match[1]) : 0;
}

/** PIDs whose command line contains `marker` (one read of every /proc/<pid>/cmdline). */
export function processesMatching(marker: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = readText(`/proc/${entry}/cmdline`);
    if (cmdline && cmdline.includes(marker)) out.push(Number(entry));
  }
  return out;
}

/** utime + stime of one process, in ms. */
function processCpuMs(pid: number): number {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 (state) is index 0: utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Stops the detached processes matching `marker` (by PID: they carry our per-run marker) after
 * reading their CPU; returns that CPU in ms.
 */
export async function reapDetached(marker: string): Promise<number> {
  const pids = processesMatching(marker);
  const cpu = pids.reduce((sum, pid) => sum + processCpuMs(pid), 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && pids.some((pid) => readText(`/proc/${pid}/cmdline`)?.includes(marker))) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return cpu;
}

/** utime + stime + cutime + cstime of one process (itself and its waited-for descendants), in ms. */
function cumulativeCpuMs(pid: number): number {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return 0;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Cumulative CPU of every light host (its PID 1, sshd, and everything it reaped) — the hosts'
 * inits are the children of the recorded `unshare` PIDs.
 */
export function hostsCpuMs(initParents: readonly number[]): number {
  let total = 0;
  for (const parent of initParents) for (const init of childrenOf(parent)) total += cumulativeCpuMs(init);
  return total;
}

/**
 * Waits (up to `timeoutMs`) until no host has a connection left (its sshd PID 1 has no child), so
 * the sessions' CPU has been reaped into the hosts' cumulative counters.
 */
export async function settleHosts(initParents: readonly number[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const busy = () => initParents.some((parent) => childrenOf(parent).some((init) => childrenOf(init).length > 0));
  while (Date.now() < deadline && busy()) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Parses GNU time's `-f '%e %U %S %M'` output (the last line: time may print a status line before it). */
export function parseGnuTime(text: string): { user: number; sys: number; maxRssKiB: number } {
  const line = text.trim().split('\n').pop() ?? '';
  const match = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(line.trim());
  if (!match) throw new Error(`cannot parse GNU time output: ${JSON.stringify(text)}`);
  return { user: Number(match[2]) * 1000, sys: Number(match[3]) * 1000, maxRssKiB: Number(match[4]) };
}

/**
 * Runs `argv` under GNU time with `env`, feeding `input` on stdin, and measures it (see the file
 * comment). Never rejects on a non-zero exit: the caller verifies the result.
 */
export async function measureCommand(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; detachedMarker?: string; hostInits?: readonly number[] } = {},
): Promise<CommandResult> {
  const hostInits = options.hostInits ?? [];
  if (hostInits.length) await settleHosts(hostInits);
  const hostCpuBefore = hostsCpuMs(hostInits);
  const scratch = mkdtempSync(join(tmpdir(), 'capstan-bench-time-'));
  const timeFile = join(scratch, 'time');
  const load1 = loadavg()[0] ?? 0;
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, '--', ...argv], {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => {});
  child.stdin.end(options.input ?? '');

  let treePeakKiB = 0;
  let treePeakPssKiB = 0;
  let treeMaxProcesses = 0;
  let samples = 0;
  const detached = new Set<number>();
  const sample = () => {
    if (child.pid === undefined) return;
    // The tree below GNU time (not time itself), and the detached processes found so far.
    const tree = processTree(child.pid).slice(1);
    const sampleIndex = samples++;
    if (options.detachedMarker && sampleIndex % SCAN_EVERY === 0) for (const pid of processesMatching(options.detachedMarker)) detached.add(pid);
    const all = new Set([...tree, ...detached]);
    let total = 0;
    for (const pid of all) total += rssKiB(pid);
    treePeakKiB = Math.max(treePeakKiB, total);
    treeMaxProcesses = Math.max(treeMaxProcesses, all.size);
    if (sampleIndex % PSS_EVERY === 0) {
      let pss = 0;
      for (const pid of all) pss += pssKiB(pid);
      treePeakPssKiB = Math.max(treePeakPssKiB, pss);
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode) => resolve(exitCode));
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  clearInterval(timer);
  const time = parseGnuTime(readFileSync(timeFile, 'utf8'));
  rmSync(scratch, { recursive: true, force: true });
  const detachedCpuMs = options.detachedMarker ? await reapDetached(options.detachedMarker) : 0;
  if (hostInits.length) await settleHosts(hostInits);
  const hostCpuMs = hostsCpuMs(hostInits) - hostCpuBefore;
  return {
    code,
    stdout,
    stderr,
    measurement: {
      wallMs,
      cpuMs: time.user + time.sys + detachedCpuMs,
      userMs: time.user,
      sysMs: time.sys,
      detachedCpuMs,
      maxRssKiB: time.maxRssKiB,
      treePeakKiB,
      treePeakPssKiB,
      treeMaxProcesses,
      hostCpuMs,
      load1,
    },
  };
}
