/**
 * `npm run bench:typecheck [-- --repeat 3]`
 *
 * What the type-check before contact (runner/typecheck.ts) costs `capstan run`: for each playbook
 * in playbooks/, the first check (empty cache, in a fresh process as a run pays it) and the cached
 * check, next to the peer a user would otherwise run, `tsc --noEmit` on the whole project. Each
 * figure is the median of --repeat fresh processes; wall time and peak RSS (GNU time). Prints a table
 * and writes bench/results/typecheck-<date>.json. No hosts: it runs anywhere `npm ci` ran.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureCommand } from './measure.js';
import { REPO } from './tools.js';

interface Sample {
  seconds: number;
  maxRssMb: number;
}

/** One fresh process, measured as the main bench measures (bench/measure.ts); fails when it fails. */
async function measure(command: string[], env: NodeJS.ProcessEnv): Promise<Sample> {
  const result = await measureCommand(command, { env, cwd: REPO });
  if (result.code !== 0) throw new Error(`${command.join(' ')} exited ${result.code}: ${result.stderr}`);
  return { seconds: result.measurement.wallMs / 1000, maxRssMb: Math.round(result.measurement.maxRssKiB / 1024) };
}

/** The median sample by wall time (the lower middle one for an even count). */
function medianOf(samples: Sample[]): Sample {
  return [...samples].sort((a, b) => a.seconds - b.seconds)[Math.floor((samples.length - 1) / 2)]!;
}

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '3' } } });
const repeat = Number(values.repeat);
const check = (playbook: string) => ['node', '--import', 'tsx', '-e', `await (await import('./runner/typecheck.ts')).typecheckPlaybook(${JSON.stringify(playbook)})`];
const playbooks = readdirSync(join(REPO, 'playbooks')).filter((name) => name.endsWith('.ts') && name !== 'vars.ts').map((name) => `playbooks/${name}`);
const rows: { playbook: string; first: Sample; cached: Sample }[] = [];
for (const playbook of playbooks) {
  const first: Sample[] = [];
  const cached: Sample[] = [];
  for (let i = 0; i < repeat; i++) {
    const cache = mkdtempSync(join(tmpdir(), 'capstan-bench-typecheck-'));
    const env = { ...process.env, CAPSTAN_CACHE_DIR: cache };
    first.push(await measure(check(playbook), env));
    cached.push(await measure(check(playbook), env));
    rmSync(cache, { recursive: true, force: true });
  }
  rows.push({ playbook, first: medianOf(first), cached: medianOf(cached) });
}
const peerSamples: Sample[] = [];
for (let i = 0; i < repeat; i++) peerSamples.push(await measure(['npx', 'tsc', '--noEmit'], process.env));
const peer = medianOf(peerSamples);

const lines = [`typecheck before contact, median of ${repeat} processes (${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}), peer: tsc --noEmit on the project ${peer.seconds.toFixed(2)} s, ${peer.maxRssMb} MB`];
lines.push('playbook                     first s   ×tsc   cached s   ×tsc   first MB   cached MB');
for (const row of rows) {
  lines.push(
    `${row.playbook.padEnd(28)} ${row.first.seconds.toFixed(2).padStart(7)} ${(row.first.seconds / peer.seconds).toFixed(2).padStart(6)} ${row.cached.seconds.toFixed(2).padStart(10)} ${(row.cached.seconds / peer.seconds).toFixed(2).padStart(6)} ${String(row.first.maxRssMb).padStart(10)} ${String(row.cached.maxRssMb).padStart(11)}`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
const out = join(REPO, 'bench', 'results', `typecheck-${new Date().toISOString().slice(0, 10)}.json`);
writeFileSync(out, `${JSON.stringify({ when: new Date().toISOString(), repeat, peer, rows }, null, 2)}\n`);
process.stdout.write(`written: ${out}\n`);
