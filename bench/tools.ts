/**
 * The contestants: Capstan as a user runs it, Ansible (default and tuned configuration), and the
 * floor (one OpenSSH `ssh host true` per host, all at once). Each returns a measured run whose
 * recap is parsed and verified: the bench fails loudly when a first apply changed nothing or a
 * converged run reports a change, for either tool.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measureCommand, type CommandResult, type Measurement } from './measure.js';

export const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const CAPSTAN_PLAYBOOK = join(REPO, 'bench/capstan/node-prep.ts');
export const ANSIBLE_PLAYBOOK = join(REPO, 'bench/ansible/node-prep.yml');

export type Tool = 'capstan' | 'ansible-tuned' | 'ansible-default';
export type Phase = 'first apply' | 'converged apply' | 'converged check';
export const TOOLS: readonly Tool[] = ['capstan', 'ansible-tuned', 'ansible-default'];
export const PHASES: readonly Phase[] = ['first apply', 'converged apply', 'converged check'];

/** One host's line of a recap, whichever tool printed it. */
export interface HostRecap {
  ok: number;
  changed: number;
  failed: number;
  unreachable: number;
}

export interface Lab {
  /** `pid`: the light host's recorded `unshare`, whose child is the host's PID 1 (for the hosts' CPU). */
  hosts: { name: string; address: string; pid: number }[];
  inventoryPath: string;
  knownHostsPath: string;
  keyPath: string;
}

export class BenchFailure extends Error {}

/** Capstan's --json recap: the last line, {"type":"recap","hosts":{name:{ok,changed,failed,skipped,unreachable}}}. */
export function parseCapstanRecap(stdout: string): Map<string, HostRecap> {
  const last = stdout.trim().split('\n').pop() ?? '';
  let parsed: { type?: string; hosts?: Record<string, { ok: number; changed: number; failed: number; unreachable: boolean | number }> };
  try {
    parsed = JSON.parse(last) as typeof parsed;
  } catch {
    throw new BenchFailure(`capstan printed no JSON recap; last line: ${last.slice(0, 300)}`);
  }
  if (parsed.type !== 'recap' || !parsed.hosts) throw new BenchFailure(`capstan's last line is not a recap: ${last.slice(0, 300)}`);
  return new Map(
    Object.entries(parsed.hosts).map(([name, h]) => [name, { ok: h.ok, changed: h.changed, failed: h.failed, unreachable: Number(h.unreachable) }]),
  );
}

/** Ansible's PLAY RECAP lines: `node1 : ok=12 changed=11 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0`. */
export function parseAnsibleRecap(stdout: string): Map<string, HostRecap> {
  const at = stdout.lastIndexOf('PLAY RECAP');
  if (at < 0) throw new BenchFailure('ansible-playbook printed no PLAY RECAP');
  const recap = new Map<string, HostRecap>();
  for (const line of stdout.slice(at).split('\n')) {
    const match = /^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/.exec(line.trim());
    if (match) recap.set(match[1]!, { ok: Number(match[2]), changed: Number(match[3]), unreachable: Number(match[4]), failed: Number(match[5]) });
  }
  return recap;
}

/**
 * Fails unless every lab host is in the recap, none failed or was unreachable, and — for a first
 * apply — every host changed something, or — for a converged run — none changed anything.
 */
export function verifyRecap(tool: string, phase: Phase, recap: Map<string, HostRecap>, hosts: readonly string[]): void {
  const problems: string[] = [];
  for (const name of hosts) {
    const host = recap.get(name);
    if (!host) problems.push(`${name}: missing from the recap`);
    else if (host.failed || host.unreachable) problems.push(`${name}: failed=${host.failed} unreachable=${host.unreachable}`);
    else if (phase === 'first apply' && host.changed === 0) problems.push(`${name}: first apply on a fresh host changed nothing`);
    else if (phase !== 'first apply' && host.changed !== 0) problems.push(`${name}: converged ${phase} reported changed=${host.changed}`);
  }
  if (problems.length) throw new BenchFailure(`${tool} ${phase}: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? ` (+${problems.length - 10} more)` : ''}`);
}

function outputTail(result: CommandResult): string {
  return `${result.stdout.split('\n').slice(-25).join('\n')}\n${result.stderr.split('\n').slice(-15).join('\n')}`;
}

/** A measured, verified run of one tool in one phase. */
export interface Run {
  measurement: Measurement;
  recap: Record<string, HostRecap>;
}

function sshOptions(lab: Lab): string[] {
  return [
    '-F', '/dev/null',
    '-i', lab.keyPath,
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${lab.knownHostsPath}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes',
    '-o', 'ControlMaster=no',
    '-o', 'ControlPath=none',
    '-o', 'ConnectTimeout=20',
    '-o', 'LogLevel=ERROR',
  ];
}

/** `node runner/bin.mjs run bench/capstan/node-prep.ts -i <inv> [--check] --json`, as a user runs it. */
export async function runCapstan(lab: Lab, phase: Phase, extraNodeArgs: string[] = []): Promise<Run> {
  const argv = [process.execPath, ...extraNodeArgs, join(REPO, 'runner/bin.mjs'), 'run', CAPSTAN_PLAYBOOK, '-i', lab.inventoryPath, '--json'];
  if (phase === 'converged check') argv.push('--check');
  const result = await measureCommand(argv, { cwd: REPO, hostInits: lab.hosts.map((h) => h.pid) });
  const names = lab.hosts.map((h) => h.name);
  if (result.code !== 0) throw new BenchFailure(`capstan ${phase} exited ${result.code}:\n${outputTail(result)}`);
  const recap = parseCapstanRecap(result.stdout);
  verifyRecap('capstan', phase, recap, names);
  return { measurement: result.measurement, recap: Object.fromEntries(recap) };
}

/**
 * ansible-playbook with the default or the tuned configuration. Every run starts cold: its ssh
 * ControlPersist masters live in a control-path directory of their own, and are stopped (their
 * CPU counted) when the run ends, so no run inherits connections from the one before.
 */
export async function runAnsible(lab: Lab, tool: 'ansible-tuned' | 'ansible-default', phase: Phase): Promise<Run> {
  const controlDir = mkdtempSync(join(tmpdir(), 'capstan-bench-cp-'));
  const config = join(REPO, 'bench/ansible', tool === 'ansible-tuned' ? 'ansible-tuned.cfg' : 'ansible-default.cfg');
  const argv = ['ansible-playbook', '-i', lab.inventoryPath, ANSIBLE_PLAYBOOK];
  if (tool === 'ansible-tuned') argv.push('--forks', String(Math.max(50, lab.hosts.length)));
  if (phase === 'converged check') argv.push('--check');
  const env = {
    ...process.env,
    ANSIBLE_CONFIG: config,
    ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_RETRY_FILES_ENABLED: 'false',
    // ansible-core refuses to start without a UTF-8 locale.
    LC_ALL: 'C.UTF-8',
    LANG: 'C.UTF-8',
  };
  try {
    const result = await measureCommand(argv, { cwd: REPO, env, detachedMarker: controlDir, hostInits: lab.hosts.map((h) => h.pid) });
    if (result.code !== 0) throw new BenchFailure(`${tool} ${phase} exited ${result.code}:\n${outputTail(result)}`);
    const recap = parseAnsibleRecap(result.stdout);
    verifyRecap(tool, phase, recap, lab.hosts.map((h) => h.name));
    return { measurement: result.measurement, recap: Object.fromEntries(recap) };
  } finally {
    rmSync(controlDir, { recursive: true, force: true });
  }
}

/** The floor: one `ssh root@host true` per host, all in parallel (xargs -P 0), OpenSSH with the lab key and known_hosts. */
export async function runFloor(lab: Lab): Promise<Measurement> {
  const argv = ['xargs', '-P', '0', '-I', '{}', 'ssh', ...sshOptions(lab), 'root@{}', 'true'];
  const result = await measureCommand(argv, { input: lab.hosts.map((h) => h.address).join('\n') + '\n', hostInits: lab.hosts.map((h) => h.pid) });
  if (result.code !== 0) throw new BenchFailure(`floor (ssh host true) exited ${result.code}:\n${result.stderr.slice(-2000)}`);
  return result.measurement;
}

/**
 * What node-prep leaves on a host, without the parts that legitimately differ (the timestamp in
 * prepared-at): modes, owners and checksums of the managed files and the live sysctl value. Equal
 * for both tools, or the playbooks are not twins.
 */
export function fingerprint(lab: Lab, host: { address: string }): string {
  const files = [
    '/etc/node-prep',
    '/etc/modules-load.d/k8s.conf',
    '/etc/sysctl.d/99-kubernetes.conf',
    '/etc/fstab',
    '/etc/hosts',
    '/etc/default/kubelet',
    '/etc/containerd',
    '/etc/containerd/config.toml',
    '/etc/crictl.yaml',
    '/etc/systemd/system/node-prep-demo.service',
    '/etc/node-prep/prepared-at',
  ];
  const script = [
    `for f in ${files.join(' ')}; do stat -c '%n %F %a %U:%G' "$f"; done`,
    `sha256sum ${files.filter((f) => !['/etc/node-prep', '/etc/containerd', '/etc/node-prep/prepared-at'].includes(f)).join(' ')}`,
    'sysctl -n net.ipv4.ip_forward',
  ].join('; ');
  return execFileSync('ssh', [...sshOptions(lab), `root@${host.address}`, script], { encoding: 'utf8' });
}

/** Installs Debian's ansible-core (and GNU time) with apt-get when missing. */
export function ensureTools(log: (line: string) => void): void {
  const missing: string[] = [];
  const have = (program: string) => {
    try {
      execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!have('ansible-playbook')) missing.push('ansible-core');
  if (!have('/usr/bin/time')) missing.push('time');
  if (!have('ssh')) missing.push('openssh-client');
  if (!missing.length) return;
  log(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
}

/** `ansible-playbook --version`'s first line and OpenSSH's version, for the results. */
export function versions(): Record<string, string> {
  const first = (argv: string[]) => {
    try {
      return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C.UTF-8' } }).split('\n')[0]!.trim();
    } catch (error) {
      return String((error as { stderr?: string }).stderr ?? error).split('\n')[0]!.trim();
    }
  };
  return { node: process.version, ansible: first(['ansible-playbook', '--version']), openssh: first(['sh', '-c', 'ssh -V 2>&1']) };
}
