/**
 * `npm run bench [-- --hosts 3,10,50 --scale 200 --repeat 1 --profile]`
 *
 * Capstan against Ansible (default and tuned configuration) on the same light namespace hosts,
 * doing the same node preparation (bench/capstan/node-prep.ts ↔ bench/ansible/node-prep.yml):
 * first apply on fresh hosts, converged apply, converged --check; plus the floor (one OpenSSH
 * `ssh host true` per host, all at once). Tools alternate in one run and the hosts are restarted
 * fresh before each tool. Then a scale run of Capstan alone on 200 hosts. Prints the figures and
 * ratios and writes them to bench/results/<date>.json. Fails (exit 1) when a first apply changed
 * nothing, a converged run reports a change, or the two tools leave different hosts.
 *
 * Runs on its own lab network (CAPSTAN_LAB_NET 6, lab dir /var/tmp/capstan-bench-6; --net N to
 * change), so a lab on net 0 is untouched; the rootfs cache is shared with the default lab
 * (/var/tmp/capstan-lab, or CAPSTAN_LAB_CACHE). Needs root on Linux; installs Debian's ansible-core
 * with apt-get when missing.
 */
import { cpus, release, totalmem } from 'node:os';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Measurement } from './measure.js';
import {
  figuresTable,
  median,
  profileText,
  ratios,
  ratiosTable,
  summariseProfiles,
  type ProfileSummary,
  type ScaleResult,
  type ScaleRun,
} from './report.js';
import {
  BenchFailure,
  PHASES,
  REPO,
  TOOLS,
  ensureTools,
  fingerprint,
  runAnsible,
  runCapstan,
  runFloor,
  versions,
  type Lab,
  type Phase,
  type Run,
  type Tool,
} from './tools.js';

const HELP = `npm run bench -- [options]

  --hosts LIST     host counts to compare Capstan and Ansible on (default 3,10,50)
  --scale N        hosts for the Capstan-only scale run, 0 to skip (default 200)
  --repeat R       cycles of (capstan, ansible-tuned, ansible-default) per host count; medians are reported (default 1)
  --tools LIST     a subset of capstan,ansible-tuned,ansible-default (ratios need all three)
  --profile        also run Capstan's converged --check under node --cpu-prof on the largest host count and summarise it
  --net N          lab network 0-9 (default 6: 10.77.6.0/24, bridge capbr6)
  --out FILE       results JSON (default bench/results/<date>.json)
  --keep           leave the light hosts of the last run up`;

const started = new Date();
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

function options() {
  const { values } = parseArgs({
    options: {
      hosts: { type: 'string', default: '3,10,50' },
      scale: { type: 'string', default: '200' },
      repeat: { type: 'string', default: '1' },
      tools: { type: 'string', default: TOOLS.join(',') },
      profile: { type: 'boolean', default: false },
      net: { type: 'string', default: '6' },
      out: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const counts = values.hosts.split(',').map(Number);
  const tools = values.tools.split(',') as Tool[];
  const opts = {
    hosts: counts,
    scale: Number(values.scale),
    repeat: Number(values.repeat),
    tools,
    profile: values.profile,
    net: Number(values.net),
    out: values.out ?? join(REPO, 'bench/results', `${started.toISOString().slice(0, 19).replace(/:/g, '')}Z.json`),
    keep: values.keep,
    help: values.help,
  };
  const bad = [
    !counts.every((n) => Number.isInteger(n) && n >= 1 && n <= 244) && '--hosts takes counts 1..244',
    !(Number.isInteger(opts.scale) && opts.scale >= 0 && opts.scale <= 244) && '--scale takes 0..244',
    !(Number.isInteger(opts.repeat) && opts.repeat >= 1) && '--repeat takes a count ≥ 1',
    !tools.every((t) => TOOLS.includes(t)) && `--tools takes ${TOOLS.join(',')}`,
    !(Number.isInteger(opts.net) && opts.net >= 0 && opts.net <= 9) && '--net takes 0..9',
  ].filter(Boolean);
  if (bad.length) throw new BenchFailure(`${bad.join('; ')}\n\n${HELP}`);
  return opts;
}

function seconds(m: Measurement): string {
  return `${(m.wallMs / 1000).toFixed(2)} s wall, ${(m.cpuMs / 1000).toFixed(2)} s CPU (+${(m.hostCpuMs / 1000).toFixed(2)} s on the hosts), ${(m.maxRssKiB / 1024).toFixed(0)}/${(m.treePeakKiB / 1024).toFixed(0)}/${(m.treePeakPssKiB / 1024).toFixed(0)} MB (%M/RSS/PSS), load ${m.load1.toFixed(1)}`;
}

function emptyRuns(): Record<Tool, Record<Phase, Measurement[]>> {
  const runs = {} as Record<Tool, Record<Phase, Measurement[]>>;
  for (const tool of TOOLS) runs[tool] = { 'first apply': [], 'converged apply': [], 'converged check': [] };
  return runs;
}

async function main(): Promise<number> {
  const opts = options();
  if (opts.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  // Before the lab module loads: it reads its network and directories from the environment once.
  process.env.CAPSTAN_LAB_NET = String(opts.net);
  process.env.CAPSTAN_LAB_DIR = process.env.CAPSTAN_BENCH_DIR ?? `/var/tmp/capstan-bench-${opts.net}`;
  process.env.CAPSTAN_LAB_CACHE ??= '/var/tmp/capstan-lab';
  ensureTools(log);
  const lab = await import('../runner/lab/index.js');
  lab.assertLabSupported();

  const up = async (hosts: number): Promise<{ state: Lab; seconds: number }> => {
    const t0 = Date.now();
    const state = await lab.labUpLight({ hosts });
    return { state, seconds: (Date.now() - t0) / 1000 };
  };
  const runTool = (state: Lab, tool: Tool, phase: Phase): Promise<Run> =>
    tool === 'capstan' ? runCapstan(state, phase) : runAnsible(state, tool, phase);

  const results: ScaleResult[] = [];
  const crossChecks: { hosts: number; convergedBy: Tool; measurement: Measurement }[] = [];
  let profile: ProfileSummary[] | undefined;
  let scaleRun: ScaleRun | undefined;
  try {
    for (const hosts of opts.hosts) {
      const result: ScaleResult = { hosts, labUpSeconds: [], floor: [], runs: emptyRuns() };
      let reference: { tool: Tool; text: string } | undefined;
      let state: Lab | undefined;
      for (let cycle = 0; cycle < opts.repeat; cycle++) {
        for (const tool of opts.tools) {
          const fresh = await up(hosts);
          state = fresh.state;
          result.labUpSeconds.push(fresh.seconds);
          const floor = await runFloor(state);
          result.floor.push(floor);
          log(`${hosts} fresh hosts up in ${fresh.seconds.toFixed(1)} s; floor ${seconds(floor)}`);
          for (const phase of PHASES) {
            const run = await runTool(state, tool, phase);
            result.runs[tool][phase].push(run.measurement);
            log(`${hosts} hosts ${tool.padEnd(15)} ${phase.padEnd(15)} ${seconds(run.measurement)}`);
          }
          const text = fingerprint(state, state.hosts[0]!);
          if (!reference) reference = { tool, text };
          else if (text !== reference.text) {
            throw new BenchFailure(`the playbooks are not twins: node1 after ${tool} differs from node1 after ${reference.tool}:\n--- ${reference.tool}\n${reference.text}\n--- ${tool}\n${text}`);
          }
        }
        // The hosts are now converged by the last tool: Capstan must find nothing to change on them.
        const last = opts.tools[opts.tools.length - 1]!;
        const profiling = opts.profile && cycle === opts.repeat - 1 && hosts === Math.max(...opts.hosts);
        const profileDir = profiling ? mkdtempSync(join(tmpdir(), 'capstan-bench-prof-')) : undefined;
        const check = await runCapstan(state!, 'converged check', profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []);
        crossChecks.push({ hosts, convergedBy: last, measurement: check.measurement });
        log(`${hosts} hosts: capstan --check on hosts converged by ${last}: changed=0 on all (${seconds(check.measurement)}${profileDir ? ', under --cpu-prof' : ''})`);
        if (profileDir) {
          profile = summariseProfiles(profileDir, REPO);
          process.stdout.write(`\nCPU profile of capstan run --check on ${hosts} hosts (node --cpu-prof):\n${profileText(profile)}\n`);
          process.stdout.write(`raw profiles (open in Chrome DevTools or speedscope): ${profileDir}\n`);
        }
      }
      results.push(result);
    }

    if (opts.scale > 0) {
      const fresh = await up(opts.scale);
      const floor = await runFloor(fresh.state);
      log(`${opts.scale} fresh hosts up in ${fresh.seconds.toFixed(1)} s; floor ${seconds(floor)}`);
      const first = await runCapstan(fresh.state, 'first apply');
      log(`${opts.scale} hosts capstan first apply ${seconds(first.measurement)}`);
      const checks: Measurement[] = [];
      for (let i = 0; i < Math.max(3, opts.repeat); i++) {
        const check = await runCapstan(fresh.state, 'converged check');
        checks.push(check.measurement);
        log(`${opts.scale} hosts capstan converged check ${seconds(check.measurement)}`);
      }
      scaleRun = { hosts: opts.scale, labUpSeconds: fresh.seconds, floor, firstApply: first.measurement, convergedCheck: checks };
    }
  } finally {
    if (!opts.keep) await lab.labDownLight({ log });
  }

  const complete = results.filter((r) => TOOLS.every((tool) => r.runs[tool]['first apply'].length));
  const partial = results.filter((r) => !complete.includes(r));
  const figures = figuresTable(results, scaleRun);
  process.stdout.write(`\nCapstan vs Ansible, node-prep (12 tasks + 1 handler), medians of ${opts.repeat} cycle(s); ${cpus().length} cores\n\n${figures}\n`);
  if (complete.length) process.stdout.write(`\nRatios of wall time (× = how many times longer than Capstan; capstan/floor = Capstan / ssh true)\n\n${ratiosTable(complete)}\n`);
  if (partial.length) process.stdout.write('\n(no ratios for host counts where a tool was left out)\n');

  const report = {
    date: started.toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    versions: versions(),
    options: { hosts: opts.hosts, scale: opts.scale, repeat: opts.repeat, tools: opts.tools, net: opts.net, capstanForks: 50 },
    notes: [
      'wallMs: spawn to exit; cpuMs: user+sys of the process tree (GNU time) plus detached ssh ControlPersist masters (from /proc)',
      'maxRssKiB: GNU time %M = the largest single process; treePeakKiB: peak of the summed RSS of the tree, sampled every 50 ms (over-counts shared pages)',
      'every run starts cold: no ssh master is kept from the run before; hosts are restarted fresh before each tool',
    ],
    results: results.map((r) => ({
      ...r,
      medians: Object.fromEntries(
        opts.tools.map((tool) => [tool, Object.fromEntries(PHASES.map((phase) => [phase, median(r.runs[tool][phase])]))]),
      ),
      floorMedian: median(r.floor),
    })),
    ratios: complete.flatMap(ratios),
    crossChecks,
    scaleRun: scaleRun && { ...scaleRun, convergedCheckMedian: median(scaleRun.convergedCheck) },
    profile,
  };
  mkdirSync(join(opts.out, '..'), { recursive: true });
  writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nresults: ${opts.out}\n`);
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    process.stderr.write(`\nBENCH FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!(error instanceof BenchFailure) && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exitCode = 1;
  },
);
