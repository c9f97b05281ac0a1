import { defineTask, InputError, PlaybookError, sh, type CheckContext, type PerHost, type PerHostParams, type PlaybookContext, type Task, type TaskOptions } from '../runner/index.js';
import { warnExpiringCertificates } from './certs.js';

/*
 * Preflight: before any change, check every host of the fleet against kubeadm's requirements
 * (seeds 001 and 004): unique hostnames, MAC addresses and product_uuid across the fleet, enough
 * memory and CPUs, the memory cgroup, swap, and free ports.
 *
 * The engine runs tasks per host, but uniqueness is a property of the fleet. So the check is split
 * in three parts:
 *   1. `preflightProbe`, a read-only task: its check reads everything in one round trip and never
 *      reports drift, and its `result` is the host's {@link HostReport}. It runs in --check too,
 *      and cannot change anything (it only has the read-only check context).
 *   2. `fleetProblems(reports, options)`, a pure function: every host and problem, as rows.
 *   3. `preflight(ctx, pattern, options)`, the playbook helper: one play with the probe, the
 *      reports collected from the play's result, and a PlaybookError with the table of problems
 *      when there is any, so the playbook stops before its first change.
 */

/* ------------------------------------------------------------------ what a probe reports */

/** One TCP listener, from `ss -ltnpH`. */
export interface Listener {
  /** Local address as ss prints it: `0.0.0.0`, `[::]`, `*`, `127.0.0.53%lo`. */
  address: string;
  port: number;
  /** Process names holding the socket (empty when ss could not tell: no root). */
  processes: string[];
}

/** What the probe found on one host. */
export interface HostReport {
  /** The inventory name. */
  host: string;
  /** `hostname` now. */
  hostname: string;
  /** The hostname a later play will set (option `hostname`), compared instead of the current one. */
  plannedHostname?: string;
  /** Ethernet MAC addresses (`ip -o link`), with their interface. */
  macs: { interface: string; mac: string }[];
  /** /sys/class/dmi/id/product_uuid; null when the host has none (containers, most ARM boards). */
  productUuid: string | null;
  cpus: number;
  memoryMiB: number;
  /** The memory cgroup controller is enabled (/proc/cgroups or cgroup.controllers). */
  memoryCgroup: boolean;
  /** Active swap areas (/proc/swaps). */
  swaps: string[];
  /** TCP listeners; null when `ss` could not run (then required ports cannot be checked). */
  listeners: Listener[] | null;
  /** The ports this host needs free. */
  requiredPorts: number[];
}

/** A host of the play that produced no report (it failed or was unreachable). */
export interface UnprobedHost {
  host: string;
  unprobed: string;
}

/** One line of the preflight table. */
export interface ProblemRow {
  host: string;
  check: string;
  problem: string;
}

/** The probe: one command, sections marked `@@name`. Every part tolerates its tool or file being absent. */
export const PREFLIGHT_PROBE = sh`echo @@hostname; hostname
echo @@links; ip -o link show 2>/dev/null
echo @@product_uuid; cat /sys/class/dmi/id/product_uuid 2>/dev/null
echo @@cpus; nproc 2>/dev/null
echo @@meminfo; grep '^MemTotal:' /proc/meminfo 2>/dev/null
echo @@cgroups; cat /proc/cgroups 2>/dev/null
echo @@controllers; cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null
echo @@swaps; cat /proc/swaps 2>/dev/null
echo @@listeners; ss -ltnpH 2>/dev/null || ss -ltnH 2>/dev/null || echo '?unavailable'
true`;

/** Parses `ss -ltnH` or `ss -ltnpH` output (no header) into listeners. Pure. */
export function parseListeners(output: string): Listener[] {
  const listeners: Listener[] = [];
  for (const line of output.split('\n')) {
    const fields = line.trim().split(/\s+/);
    // State Recv-Q Send-Q Local:Port Peer:Port [users:((…))]
    const local = fields[3];
    if (fields.length < 5 || !local) continue;
    const colon = local.lastIndexOf(':');
    const port = Number(local.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port)) continue;
    const processes = [...new Set([...line.matchAll(/\("([^"]*)",pid=/g)].map((m) => m[1]!))];
    listeners.push({ address: local.slice(0, colon), port, processes });
  }
  return listeners;
}

function sections(output: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of output.split('\n')) {
    const marker = /^@@([a-z_]+)$/.exec(line);
    if (marker) map.set(marker[1]!, (current = []));
    else if (current && line.trim() !== '') current.push(line);
  }
  return map;
}

/** Parses {@link PREFLIGHT_PROBE}'s output. Pure. */
export function parsePreflightProbe(output: string): Omit<HostReport, 'host' | 'requiredPorts' | 'plannedHostname'> {
  const s = sections(output);
  const get = (name: string) => s.get(name) ?? [];
  const macs: HostReport['macs'] = [];
  for (const line of get('links')) {
    const match = /^\d+:\s+([^:@\s]+)[^]*?link\/ether\s+([0-9a-fA-F:]{17})/.exec(line);
    const mac = match?.[2]?.toLowerCase();
    if (match && mac && mac !== '00:00:00:00:00:00' && !macs.some((m) => m.mac === mac)) macs.push({ interface: match[1]!, mac });
  }
  const uuid = get('product_uuid')[0]?.trim().toLowerCase();
  const memKiB = Number(/^MemTotal:\s+(\d+)/.exec(get('meminfo')[0] ?? '')?.[1] ?? 0);
  const cgroupsLine = get('cgroups').find((line) => /^memory\s/.test(line));
  const enabledV1 = cgroupsLine !== undefined && cgroupsLine.trim().split(/\s+/)[3] === '1';
  const enabledV2 = (get('controllers')[0] ?? '').split(/\s+/).includes('memory');
  return {
    hostname: (get('hostname')[0] ?? '').trim(),
    macs,
    productUuid: uuid ? uuid : null,
    cpus: Number(get('cpus')[0]?.trim()) || 0,
    memoryMiB: Math.floor(memKiB / 1024),
    memoryCgroup: enabledV1 || enabledV2,
    swaps: get('swaps').slice(1).map((line) => line.trim().split(/\s+/)[0]!).filter(Boolean),
    listeners: get('listeners').includes('?unavailable') ? null : parseListeners(get('listeners').join('\n')),
  };
}

/* ------------------------------------------------------------------ the probe task */

export interface PreflightProbeParams {
  ports: readonly number[];
  hostname?: string;
}

const probed = new WeakMap<CheckContext, HostReport>();

async function probeHost(ctx: CheckContext, p: PreflightProbeParams): Promise<HostReport> {
  const result = await ctx.probe(PREFLIGHT_PROBE);
  if (result.code !== 0) throw new Error(`preflight probe failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  return {
    host: ctx.host.name,
    ...parsePreflightProbe(result.stdout),
    ...(p.hostname === undefined ? {} : { plannedHostname: p.hostname }),
    requiredPorts: [...p.ports],
  };
}

/**
 * The read-only probe behind {@link preflight}: never reports drift; its result is the host's
 * {@link HostReport}. Use it directly only to build your own fleet check.
 *
 * @example const probe = preflightProbe({ ports: [6443, 10250] }); const result = await play('probe', 'all', [probe]); result.value(probe, 'node1')
 */
export function preflightProbe(params: PerHostParams<PreflightProbeParams>, options?: TaskOptions): Task<HostReport> {
  return defineTask<PreflightProbeParams, HostReport>(
    {
      kind: 'preflight',
      id: () => 'preflight',
      title: () => 'preflight probe',
      // Read-only: two probes with different ports are not in conflict.
      desired: () => 'read-only probe',
      validate: (p) => {
        if (!Array.isArray(p.ports) || !p.ports.every((port) => Number.isInteger(port) && port > 0 && port < 65536)) {
          throw new Error(`ports must be a list of TCP port numbers, got ${JSON.stringify(p.ports)}`);
        }
      },
      probes: () => [{ kind: 'exec', command: PREFLIGHT_PROBE }],
      async check(ctx, p) {
        // Probed here so a failure is reported as the task's own ("check failed: …"); result() reuses it.
        probed.set(ctx, await probeHost(ctx, p));
        return [];
      },
      apply: async () => undefined,
      result: async (ctx, p) => probed.get(ctx) ?? probeHost(ctx, p),
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ the fleet's problems */

export interface PreflightOptions {
  /** Default 1700 (kubeadm wants 2 GB; a "2 GB" machine shows about 1.8 GiB). */
  minMemoryMiB?: number;
  /** Default 2. */
  minCpus?: number;
  /** TCP ports that must be free (6443 on control planes, 10250 everywhere); per host with a function. */
  ports?: PerHost<readonly number[]>;
  /**
   * Processes allowed to hold a required port: a converged cluster's own components (a second run
   * of the playbook finds the API server on 6443). Default {@link KUBERNETES_PROCESSES}.
   */
  portOwners?: readonly string[];
  /** The memory cgroup controller must be enabled (kubeadm: "missing required cgroups: memory"). Default true. */
  requireMemoryCgroup?: boolean;
  /** Swap must already be off. Default false: swap is reported only, since a later play turns it off (ensureSwapOff). */
  requireSwapOff?: boolean;
  /**
   * The hostname each host will get from a later play (ensureHostname): compared for uniqueness
   * instead of the current one (machines cloned from one image all start as `raspberrypi`).
   */
  hostname?: PerHost<string>;
  /** The play's title; default "preflight". */
  title?: string;
}

/** Names ss shows (truncated to 15 characters, as the kernel keeps them) for a cluster's own listeners. */
export const KUBERNETES_PROCESSES: readonly string[] = ['kube-apiserver', 'kubelet', 'etcd', 'kube-controller', 'kube-scheduler', 'kube-proxy'];

const CHECK_ORDER = ['probe', 'hostname', 'mac', 'product_uuid', 'memory', 'cpus', 'cgroup', 'swap', 'port'];

function isUnprobed(report: HostReport | UnprobedHost): report is UnprobedHost {
  return 'unprobed' in report;
}

/** Values shared by several hosts: value → the hosts that have it. */
function duplicates(entries: { host: string; value: string }[]): Map<string, string[]> {
  const byValue = new Map<string, string[]>();
  for (const { host, value } of entries) {
    const hosts = byValue.get(value) ?? [];
    if (!hosts.includes(host)) hosts.push(host);
    byValue.set(value, hosts);
  }
  return new Map([...byValue].filter(([, hosts]) => hosts.length > 1));
}

const plural = (count: number, one: string, many: string) => `${count} ${count === 1 ? one : many}`;

/**
 * Every problem of every host, as table rows (pure): duplicates across the fleet (hostname, MAC,
 * product_uuid; an unknown product_uuid is not compared), then each host's own: memory, CPUs,
 * memory cgroup, swap (with `requireSwapOff`), ports in use. Rows are in the order of `reports`,
 * then of the checks. A host without a report (failed, unreachable) is one row: it was not probed.
 */
export function fleetProblems(reports: readonly (HostReport | UnprobedHost)[], options: PreflightOptions = {}): ProblemRow[] {
  const minMemoryMiB = options.minMemoryMiB ?? 1700;
  const minCpus = options.minCpus ?? 2;
  const owners = new Set(options.portOwners ?? KUBERNETES_PROCESSES);
  const rows: ProblemRow[] = [];
  const probedReports = reports.filter((r): r is HostReport => !isUnprobed(r));
  const others = (hosts: string[], host: string) => hosts.filter((h) => h !== host).join(', ');

  const hostnames = duplicates(probedReports.map((r) => ({ host: r.host, value: (r.plannedHostname ?? r.hostname).toLowerCase() })));
  const macs = duplicates(probedReports.flatMap((r) => r.macs.map((m) => ({ host: r.host, value: m.mac }))));
  const uuids = duplicates(probedReports.flatMap((r) => (r.productUuid === null ? [] : [{ host: r.host, value: r.productUuid }])));

  for (const report of reports) {
    const add = (check: string, problem: string) => rows.push({ host: report.host, check, problem });
    if (isUnprobed(report)) {
      add('probe', `not probed: ${report.unprobed}`);
      continue;
    }
    const name = (report.plannedHostname ?? report.hostname).toLowerCase();
    const sharing = hostnames.get(name);
    if (sharing) add('hostname', `${report.plannedHostname === undefined ? '' : 'planned '}"${name}" is also the hostname of ${others(sharing, report.host)}`);
    for (const mac of report.macs) {
      const hosts = macs.get(mac.mac);
      if (hosts?.includes(report.host)) add('mac', `${mac.mac} (${mac.interface}) is also on ${others(hosts, report.host)}`);
    }
    const uuidHosts = report.productUuid === null ? undefined : uuids.get(report.productUuid);
    if (uuidHosts) add('product_uuid', `${report.productUuid} is also the product_uuid of ${others(uuidHosts, report.host)}`);
    if (report.memoryMiB < minMemoryMiB) add('memory', `${report.memoryMiB} MiB, less than the ${minMemoryMiB} MiB required`);
    if (report.cpus < minCpus) add('cpus', `${plural(report.cpus, 'CPU', 'CPUs')}, fewer than the ${minCpus} required`);
    if (options.requireMemoryCgroup !== false && !report.memoryCgroup) {
      add('cgroup', 'the memory cgroup controller is not enabled (Raspberry Pi: add cgroup_memory=1 cgroup_enable=memory to cmdline.txt, then reboot)');
    }
    if (options.requireSwapOff && report.swaps.length > 0) add('swap', `swap is on: ${report.swaps.join(', ')}`);
    if (report.listeners === null && report.requiredPorts.length > 0) add('port', `cannot check ports ${report.requiredPorts.join(', ')}: ss (iproute2) could not run`);
    for (const port of report.listeners === null ? [] : report.requiredPorts) {
      const holders = report.listeners!.filter((l) => l.port === port);
      if (holders.length === 0) continue;
      const processes = [...new Set(holders.flatMap((l) => l.processes))];
      const unknown = holders.some((l) => l.processes.length === 0);
      if (!unknown && processes.every((p) => owners.has(p))) continue;
      add('port', `${port} is in use by ${[...processes, ...(unknown ? ['an unknown process'] : [])].join(', ')} (${[...new Set(holders.map((l) => `${l.address}:${l.port}`))].join(', ')})`);
    }
  }
  // Rows of a host stay together, in the order of the checks.
  const hostIndex = new Map(reports.map((r, i) => [r.host, i]));
  return rows
    .map((row, i) => ({ row, i }))
    .sort((a, b) => hostIndex.get(a.row.host)! - hostIndex.get(b.row.host)! || CHECK_ORDER.indexOf(a.row.check) - CHECK_ORDER.indexOf(b.row.check) || a.i - b.i)
    .map(({ row }) => row);
}

/** What was not compared: hosts without a product_uuid (containers, ARM boards). Pure. */
export function fleetNotes(reports: readonly (HostReport | UnprobedHost)[]): ProblemRow[] {
  return reports
    .filter((r): r is HostReport => !isUnprobed(r) && r.productUuid === null)
    .map((r) => ({ host: r.host, check: 'product_uuid', problem: 'unknown (no /sys/class/dmi/id/product_uuid): not compared' }));
}

/** The rows as an aligned table with a HOST / CHECK / PROBLEM header. Pure. */
export function formatTable(rows: readonly ProblemRow[]): string {
  const all = [{ host: 'HOST', check: 'CHECK', problem: 'PROBLEM' }, ...rows];
  const hostWidth = Math.max(...all.map((r) => r.host.length));
  const checkWidth = Math.max(...all.map((r) => r.check.length));
  return all.map((r) => `${r.host.padEnd(hostWidth)}  ${r.check.padEnd(checkWidth)}  ${r.problem}`).join('\n');
}

/** The whole message of a failed preflight: a summary line, the table, and what could not be compared. Pure. */
export function formatPreflightFailure(problems: readonly ProblemRow[], reports: readonly (HostReport | UnprobedHost)[]): string {
  const hosts = new Set(problems.map((r) => r.host)).size;
  const notes = fleetNotes(reports);
  return [
    `preflight failed: ${plural(problems.length, 'problem', 'problems')} on ${hosts} of ${plural(reports.length, 'host', 'hosts')}`,
    formatTable(problems),
    ...(notes.length ? [`not compared: product_uuid unknown on ${notes.map((n) => n.host).join(', ')}`] : []),
  ].join('\n');
}

/* ------------------------------------------------------------------ the playbook helper */

export interface PreflightResult {
  /** Each host's report, in inventory order (empty while the playbook is being planned). */
  reports: HostReport[];
  /** What could not be compared (unknown product_uuid), for the playbook to show if it wants. */
  notes: ProblemRow[];
}

function validateOptions(options: PreflightOptions): void {
  for (const key of ['minMemoryMiB', 'minCpus'] as const) {
    const value = options[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) throw new InputError(`preflight: ${key} must be a number ≥ 0, got ${JSON.stringify(value)}`);
  }
  if (options.portOwners !== undefined && !(Array.isArray(options.portOwners) && options.portOwners.every((p) => typeof p === 'string'))) {
    throw new InputError('preflight: portOwners must be a list of process names');
  }
}

/**
 * Checks the fleet before any change, as kubeadm's documentation and seed 004 ask: every host
 * must have a unique hostname, unique MAC addresses and a unique product_uuid (unknown in
 * containers and on most ARM boards: reported, not a failure), at least `minMemoryMiB` of memory
 * and `minCpus` CPUs (seed 001), the memory cgroup controller, free `ports`, and, with
 * `requireSwapOff`, no swap. When anything is wrong it throws a PlaybookError whose message is
 * one table naming every host and problem, so the playbook stops before its first change.
 *
 * How: the engine runs tasks per host, and uniqueness is a property of the fleet, so this is a
 * playbook helper rather than a task. It runs one play on `pattern` with a read-only probe task
 * ({@link preflightProbe}: its check reads everything in one round trip and never reports drift,
 * its result is the host's {@link HostReport}), collects the reports from the play's result, and
 * gives them to the pure {@link fleetProblems}. The probe only reads, so preflight runs the same
 * in --check and changes nothing. A host that could not be probed (unreachable, failed) is a
 * problem too. While the playbook is planned (before any connection) it only validates.
 *
 * @returns the reports, for a playbook that wants to use them (e.g. to print the notes)
 * @example
 * export default playbook('pi-cluster', async (ctx) => {
 *   await preflight(ctx, 'all', { minMemoryMiB: 1700, minCpus: 2, ports: (host) => (host.vars.control_plane ? [6443, 10250] : [10250]) });
 *   await ctx.play('prepare nodes', 'all', [ensureSwapOff()]);
 * });
 */
export async function preflight(ctx: Pick<PlaybookContext, 'play' | 'planning' | 'inventory'>, pattern: string, options: PreflightOptions = {}): Promise<PreflightResult> {
  validateOptions(options);
  const probe = preflightProbe({ ports: options.ports ?? [], ...(options.hostname === undefined ? {} : { hostname: options.hostname }) } as PerHostParams<PreflightProbeParams>);
  const result = await ctx.play(options.title ?? 'preflight', pattern, [probe, warnExpiringCertificates()]);
  if (ctx.planning) return { reports: [], notes: [] };
  const order = [...ctx.inventory.hosts.keys()];
  const hosts = [...result.hosts.keys()].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const outcomes = hosts.map((host): HostReport | UnprobedHost => {
    const value = result.value(probe, host);
    if (value && typeof value === 'object' && 'macs' in value) return value;
    const status = result.hosts.get(host)?.status;
    return { host, unprobed: value !== undefined ? String(value) : status === 'unreachable' ? 'unreachable' : 'the probe failed (see its task)' };
  });
  const problems = fleetProblems(outcomes, options);
  if (problems.length > 0) throw new PlaybookError(formatPreflightFailure(problems, outcomes));
  return { reports: outcomes.filter((o): o is HostReport => !isUnprobed(o)), notes: fleetNotes(outcomes) };
}
