import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { InputError } from '../../runner/errors.js';
import { assertLabSupported, labStatus, labUp, type LabHost, type LabHostSpec, type LabState } from '../../runner/lab/index.js';
import { normalizeHostSpecs } from '../../runner/lab/spec.js';
import { skipOutsideCi } from './skip.js';

const exec = promisify(execFile);

/** What one OpenSSH command on a lab host produced. `code` is 255 when ssh itself failed. */
export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The lab's hosts as [name, groups, vars], to compare a running lab with the one asked for. */
function shape(hosts: readonly { name: string; groups: string[]; vars: Record<string, unknown> }[]): string {
  return JSON.stringify(hosts.map((host) => [host.name, host.groups, host.vars]));
}

/**
 * For mocha `before` hooks: skips the suite where the lab cannot run (not root, a program missing),
 * except under CI, where that fails it (see skipOutsideCi); any other error fails it.
 */
export function skipUnlessLabSupported(context: Mocha.Context): void {
  try {
    assertLabSupported();
  } catch (error) {
    if (error instanceof InputError) skipOutsideCi(context, `the lab cannot run here (${error.message})`);
    throw error;
  }
}

/**
 * For mocha `before` hooks: a lab of `hosts` (a count: node1..nodeN, or specs). With
 * `CAPSTAN_LAB_REUSE` set, a lab that is already up with the same hosts, groups and vars and
 * every sshd answering is reused (seconds saved per test file while iterating); otherwise a
 * fresh lab is brought up (replacing any lab that is up).
 */
export async function withLab(hosts: number | LabHostSpec[]): Promise<LabState> {
  if (process.env.CAPSTAN_LAB_REUSE) {
    const status = await labStatus();
    const wanted = normalizeHostSpecs(hosts);
    if (status && shape(status.hosts) === shape(wanted) && status.hosts.every((host) => host.up)) return status;
  }
  // A host booted a second time is rare and worth knowing about (what its first boot waited on):
  // the suite's output keeps it; the routine "node1 up at …" lines stay quiet.
  return labUp({ hosts, log: (line) => line.includes('booting it once more') && console.error(`lab: ${line}`) });
}

let clientChecked: Promise<void> | undefined;

/** Installs OpenSSH's client (Debian's openssh-client) once if `ssh` is missing. */
function ensureOpenSshClient(): Promise<void> {
  clientChecked ??= exec('sh', ['-c', 'command -v ssh']).then(
    () => undefined,
    async () => {
      await exec('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq openssh-client']);
    },
  );
  return clientChecked;
}

/**
 * Runs `command` on a lab host with OpenSSH (`ssh -i <lab key> -o UserKnownHostsFile=<lab
 * known_hosts> root@<address>`), independent of Capstan's own transport, so tests can inspect
 * hosts with a client they do not test. Host keys are checked strictly against the lab's
 * known_hosts; ~/.ssh/config and the global known_hosts are ignored. `options.user` logs in as
 * another user (the lab's `capstan`), `options.sshOptions` adds `-o`-style arguments, and
 * `options.input` is written to the command's stdin.
 */
export async function sshToLab(
  state: LabState,
  host: string | LabHost,
  command: string,
  options: { user?: string; sshOptions?: string[]; input?: string } = {},
): Promise<SshResult> {
  await ensureOpenSshClient();
  const target = typeof host === 'string' ? state.hosts.find((candidate) => candidate.name === host) : host;
  if (!target) throw new Error(`no lab host named ${String(host)}`);
  const args = [
    '-F', '/dev/null',
    '-i', state.keyPath,
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${state.knownHostsPath}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=10',
    '-o', 'LogLevel=ERROR',
    ...(options.sshOptions ?? []),
    `${options.user ?? 'root'}@${target.address}`,
    command,
  ];
  return runSsh(args, options.input ?? '');
}

function runSsh(args: string[], input: string): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}
