/** Tables, ratios and the CPU-profile summary of the bench (pure functions over the results). */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { Measurement } from './measure.js';
import { PHASES, TOOLS, type Phase, type Tool } from './tools.js';

/** Everything measured for one host count. */
export interface ScaleResult {
  hosts: number;
  /** Seconds to bring the light hosts up, per restart. */
  labUpSeconds: number[];
  /** One floor sample per restart of the hosts. */
  floor: Measurement[];
  runs: Record<Tool, Record<Phase, Measurement[]>>;
}

/** The 200-host scale run: Capstan only. */
export interface ScaleRun {
  hosts: number;
  labUpSeconds: number;
  floor: Measurement;
  firstApply: Measurement;
  convergedCheck: Measurement[];
}

export interface Ratios {
  hosts: number;
  phase: Phase;
  /** Wall time of tuned Ansible / Capstan (> 1: Capstan is faster). */
  tunedOverCapstan: number;
  defaultOverCapstan: number;
  /** Wall time of Capstan / the floor (1 = as fast as one `ssh true` per host). */
  capstanOverFloor: number;
  /** CPU of tuned Ansible / Capstan. */
  tunedOverCapstanCpu: number;
}

/** The median sample by wall time (the lower middle one for an even count). */
export function median(samples: readonly Measurement[]): Measurement {
  if (!samples.length) throw new Error('no samples');
  const sorted = [...samples].sort((a, b) => a.wallMs - b.wallMs);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export function ratios(result: ScaleResult): Ratios[] {
  const floor = median(result.floor);
  return PHASES.map((phase) => {
    const capstan = median(result.runs.capstan[phase]);
    const tuned = median(result.runs['ansible-tuned'][phase]);
    const standard = median(result.runs['ansible-default'][phase]);
    return {
      hosts: result.hosts,
      phase,
      tunedOverCapstan: tuned.wallMs / capstan.wallMs,
      defaultOverCapstan: standard.wallMs / capstan.wallMs,
      capstanOverFloor: capstan.wallMs / floor.wallMs,
      tunedOverCapstanCpu: tuned.cpuMs / capstan.cpuMs,
    };
  });
}

const s = (ms: number) => (ms / 1000).toFixed(2);
const mb = (kib: number) => (kib / 1024).toFixed(0);
const x = (ratio: number) => `${ratio.toFixed(1)}×`;

/** Cells padded to `widths`: the first `left` columns left-aligned (labels), the rest right-aligned (numbers). */
function row(cells: (string | number)[], widths: number[], left = 3): string {
  return cells.map((cell, i) => (i < left ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!))).join('  ');
}

const WIDTHS = [5, 16, 16, 8, 7, 9, 9, 9, 9, 6, 5];

/** The figures table: one row per host count, tool and phase (medians), and the floor. */
export function figuresTable(results: readonly ScaleResult[], scaleRun?: ScaleRun): string {
  const lines = [
    row(['hosts', 'tool', 'phase', 'wall s', 'CPU s', 'host CPU', 'max RSS', 'tree RSS', 'tree PSS', 'procs', 'load'], WIDTHS),
    row(['', '', '', '', '', 's', 'MB (%M)', 'MB (sum)', 'MB (sum)', '', ''], WIDTHS),
  ];
  const add = (hosts: number, tool: string, phase: string, m: Measurement) =>
    lines.push(row([hosts, tool, phase, s(m.wallMs), s(m.cpuMs), m.hostCpuMs === undefined ? '-' : s(m.hostCpuMs), mb(m.maxRssKiB), mb(m.treePeakKiB), m.treePeakPssKiB === undefined ? '-' : mb(m.treePeakPssKiB), m.treeMaxProcesses, m.load1.toFixed(1)], WIDTHS));
  for (const result of results) {
    for (const tool of TOOLS) {
      for (const phase of PHASES) if (result.runs[tool][phase].length) add(result.hosts, tool, phase, median(result.runs[tool][phase]));
    }
    add(result.hosts, 'floor', 'ssh true ×N', median(result.floor));
  }
  if (scaleRun) {
    add(scaleRun.hosts, 'capstan', 'first apply', scaleRun.firstApply);
    add(scaleRun.hosts, 'capstan', 'converged check', median(scaleRun.convergedCheck));
    add(scaleRun.hosts, 'floor', 'ssh true ×N', scaleRun.floor);
  }
  return lines.join('\n');
}

/** Ratios of wall time (and CPU against tuned Ansible). */
export function ratiosTable(results: readonly ScaleResult[]): string {
  const widths = [5, 16, 13, 15, 14, 12];
  const lines = [row(['hosts', 'phase', 'tuned/capstan', 'default/capstan', 'capstan/floor', 'CPU tuned/c'], widths, 2)];
  for (const result of results) {
    for (const r of ratios(result)) {
      lines.push(row([r.hosts, r.phase, x(r.tunedOverCapstan), x(r.defaultOverCapstan), x(r.capstanOverFloor), x(r.tunedOverCapstanCpu)], widths, 2));
    }
  }
  return lines.join('\n');
}

/* ------------------------------------------------------------------ CPU profiles */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  /** The profile's file name (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread). */
  file: string;
  thread: string;
  totalMs: number;
  /** Sampled time with nothing to run (waiting for the network or a child). */
  idleMs: number;
  /** Sampled time doing something; the percentages below are of this. */
  busyMs: number;
  topFunctions: { name: string; selfMs: number; percent: number }[];
  topModules: { module: string; selfMs: number; percent: number }[];
  /** Capstan's own functions (runner/, tasks/, bench/) by total time: self plus everything they called. */
  topProjectInclusive: { name: string; totalMs: number; percent: number }[];
}

/** Where a function lives, grouped: a package of node_modules, a file of the repo, node's internals, or V8's pseudo-frames. */
export function moduleOf(url: string, repo: string): string {
  if (!url) return '(native / V8)';
  if (url.startsWith('node:')) return url.split('/').slice(0, 4).join('/');
  const path = url.replace(/^file:\/\//, '');
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (inModules) return `npm:${inModules[1]}`;
  return path.startsWith(repo) ? relative(repo, path) : path;
}

/** Self time per function and per module of one .cpuprofile. */
export function summariseProfile(path: string, repo: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  let idle = 0;
  const functions = new Map<string, number>();
  const modules = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const module = moduleOf(frame.url, repo);
    const where = frame.url.startsWith('node:') ? frame.url : module;
    const name = `${frame.functionName || '(anonymous)'} ${frame.url ? `${where}:${frame.lineNumber + 1}` : ''}`.trim();
    functions.set(name, (functions.get(name) ?? 0) + us);
    modules.set(module, (modules.get(module) ?? 0) + us);
  }
  const busy = total - idle;
  const inclusive = projectInclusive(profile, selfUs, repo);
  const ranked = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, selfMs: us / 1000, percent: (100 * us) / busy }));
  const thread = basename(path).split('.')[4] ?? '?';
  return {
    file: basename(path),
    thread: thread === '0' ? 'main thread' : `thread ${thread} (the tsx loader's module hooks run on their own thread)`,
    totalMs: total / 1000,
    idleMs: idle / 1000,
    busyMs: busy / 1000,
    topFunctions: ranked(functions),
    topModules: ranked(modules).map(({ name, selfMs, percent }) => ({ module: name, selfMs, percent })),
    topProjectInclusive: [...inclusive]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, totalMs: us / 1000, percent: (100 * us) / busy })),
  };
}

/**
 * Total (inclusive) time of each project function: its own samples and its callees', idle
 * excluded, each call tree counted once per function even when it recurses.
 */
function projectInclusive(profile: CpuProfile, selfUs: Map<number, number>, repo: string): Map<string, number> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map<string, number>();
  const referenced = new Set(profile.nodes.flatMap((node) => node.children ?? []));
  const visit = (id: number, open: Set<string>): number => {
    const node = byId.get(id)!;
    const frame = node.callFrame;
    const mine = frame.functionName === '(idle)' ? 0 : (selfUs.get(id) ?? 0);
    const path = frame.url.replace(/^file:\/\//, '');
    const ours = path.startsWith(repo) && !path.includes('/node_modules/');
    const name = ours ? `${frame.functionName || '(anonymous)'} ${relative(repo, path)}:${frame.lineNumber + 1}` : '';
    const outermost = ours && !open.has(name);
    if (outermost) open.add(name);
    let sum = mine;
    for (const child of node.children ?? []) sum += visit(child, open);
    if (outermost) {
      open.delete(name);
      totals.set(name, (totals.get(name) ?? 0) + sum);
    }
    return sum;
  };
  for (const node of profile.nodes) if (!referenced.has(node.id)) visit(node.id, new Set());
  return totals;
}

export function summariseProfiles(dir: string, repo: string): ProfileSummary[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile'))
    .map((file) => summariseProfile(join(dir, file), repo))
    .sort((a, b) => b.busyMs - a.busyMs);
}

export function profileText(summaries: readonly ProfileSummary[]): string {
  return summaries
    .map((p) =>
      [
        `${p.thread} (${p.file}): ${(p.totalMs / 1000).toFixed(2)} s sampled, ${(p.busyMs / 1000).toFixed(2)} s busy, ${(p.idleMs / 1000).toFixed(2)} s idle`,
        '  top self time by module (% of busy):',
        ...p.topModules.map((m) => `    ${m.percent.toFixed(1).padStart(5)}%  ${(m.selfMs).toFixed(0).padStart(6)} ms  ${m.module}`),
        '  top self time by function (% of busy):',
        ...p.topFunctions.map((f) => `    ${f.percent.toFixed(1).padStart(5)}%  ${(f.selfMs).toFixed(0).padStart(6)} ms  ${f.name}`),
        ...(p.topProjectInclusive.length
          ? [
              "  Capstan's own functions by total time, callees included (% of busy):",
              ...p.topProjectInclusive.map((f) => `    ${f.percent.toFixed(1).padStart(5)}%  ${f.totalMs.toFixed(0).padStart(6)} ms  ${f.name}`),
            ]
          : []),
      ].join('\n'),
    )
    .join('\n\n');
}
