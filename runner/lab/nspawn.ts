import { APT_PROXY_URL, GATEWAY } from './paths.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CapstanError } from '../errors.js';
import { mountOverlay } from './mounts.js';
import { sshdAnswers } from './probe.js';
import { inotifyReport } from './inotify.js';
import { generateHostKeys } from './keys.js';
import { hostCgroupProcs, removeHostCgroups } from './cgroup.js';
import { quote } from '../quote.js';
import { processAlive, processMatches, run, systemEnv, tail, terminate, waitUntil } from './proc.js';
import type { HostRecord } from './state.js';

/**
 * How long a booting host has to answer on port 22 and open logins. 60 s was once too short in CI:
 * five full-systemd hosts booting at once on two loaded cores.
 */
const SSH_TIMEOUT_MS = 120_000;

/**
 * The part of nspawn's command line that identifies one host's container, so a recorded PID is
 * only ever signalled while it is still that container.
 */
function marker(host: HostRecord): string {
  return `--directory=${host.root}`;
}

/** True while the host's systemd-nspawn runs. */
export function containerRunning(host: HostRecord): boolean {
  return processMatches(host.pid, marker(host));
}

/**
 * Mounts the host's overlay on the cached rootfs and gives it its identity: hostname, a
 * 127.0.1.1 line in /etc/hosts, its own machine-id and, when missing, its own ssh host keys
 * (a fresh overlay gets fresh keys; a restarted host keeps its own).
 */
export async function prepareRoot(host: HostRecord, rootfs: string): Promise<void> {
  for (const dir of [host.upper, host.work, host.root]) mkdirSync(dir, { recursive: true });
  await mountOverlay(rootfs, host.upper, host.work, host.root);
  // A fresh overlay gets the host's name; a restarted host keeps the one it had, as a rebooted server
  // keeps its /etc/hostname (a playbook that set node1.internal must find it after a reboot, and a
  // kubelet that registered under it must start under it again).
  if (!existsSync(join(host.upper, 'etc/hostname'))) writeFileSync(join(host.root, 'etc/hostname'), `${host.name}\n`);
  // apt goes through apt-cacher-ng on this lab's bridge (its address depends on CAPSTAN_LAB_NET).
  // Without pipelining: seen here, a pipelined response that apt-cacher-ng cut short (another host
  // fetching the same InRelease) left apt-get update waiting forever; one request per connection
  // and a read timeout make it fail or retry instead. The gateway's own services (the lab's
  // Kubernetes package repository, runner/lab/kubernetes-repo.ts) are fetched directly: apt-cacher-ng
  // knows Debian's mirror only.
  writeFileSync(
    join(host.root, 'etc/apt/apt.conf.d/01capstan-lab-proxy'),
    `Acquire::http::Proxy "${APT_PROXY_URL}";\nAcquire::http::Proxy::${GATEWAY} "DIRECT";\nAcquire::http::Pipeline-Depth "0";\nAcquire::http::Timeout "30";\nAcquire::Retries "3";\n`,
  );
  // The lab has no DNS (hosts reach their bridge only), but mmdebstrap left the machine's resolver in
  // the rootfs, unreachable from here: every lookup (apt, curl, ssh) would wait for its timeouts.
  // Without a nameserver line glibc asks 127.0.0.1, which refuses at once, so lookups fail fast.
  const resolvConf = join(host.root, 'etc/resolv.conf');
  rmSync(resolvConf, { force: true });
  writeFileSync(resolvConf, '# capstan lab: no DNS here (no nameserver line: lookups fail at once instead of timing out)\noptions timeout:1 attempts:1\n');
  // Keys only: the lab user's sudo password is for sudo, never a way in over ssh.
  writeFileSync(join(host.root, 'etc/ssh/sshd_config.d/capstan-lab-keys-only.conf'), 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n');
  const hostsFile = join(host.root, 'etc/hosts');
  const hosts = readFileSync(hostsFile, 'utf8');
  if (!hosts.includes(`\t${host.name}\n`)) writeFileSync(hostsFile, `${hosts}127.0.1.1\t${host.name}\n`);
  const machineId = join(host.root, 'etc/machine-id');
  if (readFileSync(machineId, 'utf8').trim() === '') writeFileSync(machineId, `${randomBytes(16).toString('hex')}\n`);
  await generateHostKeys(host.root);
}

/**
 * Boots the host: `systemd-nspawn -b` (real systemd as PID 1) in the host's netns and its own
 * control group, detached, its console appended to the host's console log. `record` gets the PID
 * before anything can fail.
 */
export async function bootContainer(host: HostRecord, record: (pid: number) => void): Promise<void> {
  // What a host of this name left running (a crashed run, an nspawn killed after its grace) goes first.
  await removeHostCgroups(host.netns);
  const output = openSync(host.console, 'a');
  // A header per boot, so an empty console still shows that nspawn started and printed nothing.
  writeSync(output, `--- capstan lab: systemd-nspawn ${nspawnArgs(host).join(' ')} (${new Date().toISOString()})\n`);
  // The shell moves itself into the host's own control groups, then becomes nspawn (same PID).
  const enter = hostCgroupProcs(host.netns).map((procs) => `echo $$ > ${quote(procs)} && `).join('');
  const child = spawn('sh', ['-c', `${enter}exec systemd-nspawn "$@"`, 'sh', ...nspawnArgs(host)], {
    detached: true,
    stdio: ['ignore', output, output],
    // Writable /proc/sys (with the capabilities and syscalls below) lets hosts set sysctls and
    // swap as on a VM; sysctls outside net.* are then global to the machine.
    env: systemEnv({ SYSTEMD_NSPAWN_API_VFS_WRITABLE: 'yes' }),
  });
  closeSync(output);
  const pid = child.pid ?? 0;
  // Its end goes into the console too: "exited at once with an empty console" then says how.
  child.on('exit', (code, signal) => appendFileSync(host.console, `--- capstan lab: systemd-nspawn (PID ${pid}) ended: ${signal ?? `exit code ${code}`} (${new Date().toISOString()})\n`));
  child.unref();
  record(pid);
  // Until the shell has become nspawn, /proc/PID/cmdline can read empty (mid-exec, the new program's
  // arguments are not in place yet): containerRunning() then said "exited" of a container that was
  // booting (seen in CI as "the container exited" with an empty console, about one boot in a
  // thousand on a loaded machine). Past the exec the command line is stable.
  await waitUntil(() => !processAlive(pid) || execName(pid) === 'systemd-nspawn', 10_000, 5);
}

/** The file name of the program `pid` runs, or '' when it cannot be read. */
function execName(pid: number): string {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return '';
  }
}

function nspawnArgs(host: HostRecord): string[] {
  return [
    '--quiet',
    '--boot',
    marker(host),
    `--machine=${host.name}`,
    // The machine itself may not run systemd (no system bus to register with, no unit to move to).
    '--register=no',
    '--keep-unit',
    '--console=passive',
    `--network-namespace-path=/run/netns/${host.netns}`,
    // nspawn's default set (no CAP_SYS_TIME, CAP_MAC_*, CAP_SYSLOG, CAP_BPF, …) plus what lab hosts do
    // that a VM's root does: routes, iptables, nftables, VIPs and ufw/firewalld (CAP_NET_ADMIN), kernel
    // modules (CAP_SYS_MODULE) and the raw I/O the syscall filter below allows. Not `all`: a host's
    // root should not be the machine's.
    '--capability=CAP_NET_ADMIN,CAP_SYS_MODULE,CAP_SYS_RAWIO',
    '--system-call-filter=@swap @module @raw-io',
    // No DNS in the lab: the machine's resolv.conf would make lookups hang instead of fail.
    '--resolv-conf=off',
    '--link-journal=no',
  ];
}

/**
 * Waits until the host's sshd answers with its banner and users other than root may log in (no
 * /run/nologin: systemd keeps it from early boot until systemd-user-sessions.service, and
 * pam_nologin closes their logins until then, which a busy machine can stretch to seconds); fails
 * with the console tail otherwise.
 */
export async function waitForSshd(host: HostRecord, timeoutMs = SSH_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const answered = await waitUntil(async () => !containerRunning(host) || (await sshdAnswers(host.address)), timeoutMs);
  const loginsAllowed = async () => {
    const state = await execInContainer(host, ['sh', '-c', 'if [ -e /run/nologin ]; then echo nologin; else echo open; fi']).catch(() => 'unknown');
    return state.trim() === 'open';
  };
  const open = answered && containerRunning(host) && (await waitUntil(async () => !containerRunning(host) || (await loginsAllowed()), Math.max(1000, deadline - Date.now())));
  if (open && containerRunning(host)) return;
  const why = !containerRunning(host)
    ? 'the container exited'
    : answered
      ? `logins stayed closed (/run/nologin: boot did not reach systemd-user-sessions) within ${timeoutMs / 1000} s`
      : `sshd did not answer on ${host.address}:22 within ${timeoutMs / 1000} s`;
  const boot = containerRunning(host) ? await bootDiagnosis(host) : '';
  throw new CapstanError(`lab host ${host.name}: ${why} (${inotifyReport()}); console (${host.console}):\n${tail(host.console)}${boot}`, { host: host.name });
}

/**
 * What the host's systemd is still doing when its boot did not finish: the queued jobs (a job
 * "running" for long is the unit the boot waits on), the failed units and the end of its journal.
 * The console cannot say it: systemd shows no boot status on an nspawn console that is not a terminal.
 */
async function bootDiagnosis(host: HostRecord): Promise<string> {
  const script = [
    'echo "system: $(systemctl is-system-running 2>&1)"',
    'echo "--- systemctl list-jobs"; systemctl list-jobs --no-pager 2>&1 | head -n 40',
    'echo "--- systemctl --failed"; systemctl --failed --no-pager --no-legend 2>&1 | head -n 20',
    'echo "--- journalctl -b (last 40 lines)"; journalctl -b --no-pager -n 40 2>&1',
  ].join('; ');
  const report = await execInContainer(host, ['sh', '-c', script]).catch((error: unknown) => `(could not ask the host's systemd: ${String(error)})`);
  return `\nhost's systemd:\n${report.trimEnd()}`;
}

/**
 * Powers the host off: SIGTERM makes nspawn shut the container's systemd down cleanly; SIGKILL
 * after the grace period. The container's processes do not reliably die with a killed nspawn, so
 * whatever is left in the host's control group is killed too, and the groups removed (cgroup.ts).
 */
export async function stopContainer(host: HostRecord): Promise<void> {
  await terminate(host.pid, marker(host), 15_000);
  await removeHostCgroups(host.netns);
}

/** PID of the container's init (systemd), as the machine sees it: nspawn's child. */
function containerInit(host: HostRecord): number {
  if (!containerRunning(host)) throw new CapstanError(`lab host ${host.name} is not running`, { host: host.name });
  const child = Number(readFileSync(`/proc/${host.pid}/task/${host.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  // No child: the boot wrapper has not become nspawn yet, or nspawn has not started the container.
  if (!Number.isInteger(child) || child <= 0) throw new CapstanError(`lab host ${host.name}: nspawn (PID ${host.pid}) runs no container process`, { host: host.name });
  return child;
}

/** Runs a command inside the running host (all its namespaces and its root), without ssh. */
export async function execInContainer(host: HostRecord, command: string[]): Promise<string> {
  const init = containerInit(host);
  return run('nsenter', [`--target=${init}`, '--mount', '--uts', '--ipc', '--net', '--pid', '--cgroup', '--root', '--wd', '--', ...command]);
}
