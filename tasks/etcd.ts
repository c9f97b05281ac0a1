import { isIP } from 'node:net';
import { defineTask, raw, sh, type ApplyContext, type CheckContext, type Command, type Drift, type HostView, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { APT_GET_UPDATE, dpkgQueryCommand, packagesDrift, parseDpkgQuery } from './apt.js';
import { ensureSystemdUnit, renderServiceUnit } from './systemd.js';
import { requireAbsolutePath } from './validate.js';

/*
 * A real etcd cluster over TLS on the controllers (seed 003, "the hard way"), from Debian's
 * etcd-server package (etcd 3.4 in bookworm) and etcd-client (etcdctl).
 *
 * What Debian's package does on install, and what we do about it:
 *   - its postinst enables and STARTS etcd.service at once: a single-node member named after the
 *     host (ETCD_NAME=%H), listening on http://localhost:2379/2380, with its data in
 *     /var/lib/etcd/default. A member started like that has its own cluster id; had it been started
 *     with our data dir, etcd would later ignore --initial-cluster (an existing data dir wins) and
 *     every controller would stay a one-node cluster of its own. So the package is installed with
 *     etcd.service masked for the runtime only (`systemctl mask --runtime`, a symlink in
 *     /run/systemd/system that a reboot drops), which makes the postinst's enable and start fail
 *     harmlessly; the mask is removed right after the install, in the same command. The default
 *     member never runs.
 *   - a host where the package had already been installed by hand has run that member: its data
 *     stays in /var/lib/etcd/default (we delete nothing), which is why our data dir may not be that
 *     directory (validated); with the default /var/lib/etcd, etcd only logs that it ignores the
 *     `default` entry.
 *   - its unit sets ETCD_NAME and ETCD_DATA_DIR in the environment and reads /etc/default/etcd;
 *     etcd 3.4 refuses to start when an ETCD_* variable and the same command-line flag are both set
 *     ("conflicting environment variable … is shadowed by corresponding command-line flag"), so a
 *     drop-in cannot work: our etcd.service in /etc/systemd/system replaces the package's whole
 *     unit (the seed's unit, with Debian's /usr/bin/etcd).
 *
 * Restart only when needed: instead of a handler that restarts whenever the unit file was
 * rewritten, the service task compares the RUNNING member's command line (/proc/<MainPID>/cmdline)
 * with the unit's flags and restarts when they differ. That is the effect a handler is a proxy for,
 * and it also catches up a run that wrote the unit but stopped before restarting.
 */

/** One member of the cluster. */
export interface EtcdPeer {
  /** The member name (--name): the seed uses the controller's hostname. */
  name: string;
  /** Its address on the cluster network: peers on :2380, clients on :2379. */
  ip: string;
}

export interface EtcdMemberParams {
  /** This member's name; must be one of `members`. */
  name: string;
  /** This member's address; must be its entry's address in `members`. */
  ip: string;
  /** Every member of the cluster (--initial-cluster), this one included. */
  members: EtcdPeer[];
  /** Server and peer certificate (the seed's /etc/etcd/kubernetes.pem), with this member's IP and 127.0.0.1 in its SANs, server and client auth. */
  certFile: string;
  /** Its private key (the seed's /etc/etcd/kubernetes-key.pem). */
  keyFile: string;
  /** The CA that signs clients and peers (--trusted-cert-file and --peer-trusted-ca-file). */
  trustedCaFile: string;
  /** Default /var/lib/etcd (the seed's). Never Debian's /var/lib/etcd/default. */
  dataDir?: string;
  /** --initial-cluster-token; default `etcd-cluster-0` (the seed's). */
  clusterToken?: string;
}

/** Where Debian's package keeps the data of the single-node member its postinst would start. */
export const DEBIAN_DEFAULT_DATA_DIR = '/var/lib/etcd/default';
/** Debian's etcd binary. */
export const ETCD_BINARY = '/usr/bin/etcd';
/** Our unit: replaces the package's /lib/systemd/system/etcd.service. */
export const ETCD_UNIT_PATH = '/etc/systemd/system/etcd.service';
export const ETCD_PACKAGES = ['etcd-server', 'etcd-client'] as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Paths and tokens that go unquoted into a unit's ExecStart: no whitespace, quotes, `\`, or systemd's `%`/`$` expansions. */
const UNIT_SAFE = /^[A-Za-z0-9/._:@+=,-]+$/;

function hostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The member's parameters with defaults filled in. Pure. */
function resolved(p: EtcdMemberParams): Required<EtcdMemberParams> {
  return { ...p, dataDir: p.dataDir ?? '/var/lib/etcd', clusterToken: p.clusterToken ?? 'etcd-cluster-0' };
}

/** Throws when the parameters cannot make a working member. Pure. */
export function validateEtcdMember(p: EtcdMemberParams): void {
  const checkName = (field: string, value: unknown) => {
    if (typeof value !== 'string' || !NAME.test(value)) throw new Error(`${field} must be a member name (letters, digits, . _ -), got ${JSON.stringify(value)}`);
  };
  const checkIp = (field: string, value: unknown) => {
    if (typeof value !== 'string' || isIP(value) === 0) throw new Error(`${field} must be an IP address, got ${JSON.stringify(value)}`);
  };
  checkName('name', p.name);
  checkIp('ip', p.ip);
  if (!Array.isArray(p.members) || p.members.length === 0) throw new Error('members must list every member of the cluster');
  const names = new Set<string>();
  const ips = new Set<string>();
  p.members.forEach((member, index) => {
    checkName(`members[${index}].name`, member?.name);
    checkIp(`members[${index}].ip`, member?.ip);
    if (names.has(member.name)) throw new Error(`member ${member.name} is listed twice`);
    if (ips.has(member.ip)) throw new Error(`address ${member.ip} is listed twice in members`);
    names.add(member.name);
    ips.add(member.ip);
  });
  const self = p.members.find((member) => member.name === p.name);
  if (!self) throw new Error(`member ${p.name} is not in members (${[...names].join(', ')})`);
  if (self.ip !== p.ip) throw new Error(`member ${p.name} has address ${self.ip} in members but ip ${p.ip}`);
  for (const key of ['certFile', 'keyFile', 'trustedCaFile'] as const) {
    requireAbsolutePath(key, p[key]);
    if (!UNIT_SAFE.test(p[key])) throw new Error(`${key} must not contain spaces, quotes, backslashes, % or $ (it goes into the unit's ExecStart): ${p[key]}`);
  }
  if (p.dataDir !== undefined) {
    requireAbsolutePath('dataDir', p.dataDir);
    if (!UNIT_SAFE.test(p.dataDir)) throw new Error(`dataDir must not contain spaces, quotes, backslashes, % or $: ${p.dataDir}`);
    if (p.dataDir.replace(/\/+$/, '') === DEBIAN_DEFAULT_DATA_DIR) {
      throw new Error(`dataDir must not be ${DEBIAN_DEFAULT_DATA_DIR}: Debian's package may have run its own single-node member there, whose cluster id would win over --initial-cluster`);
    }
  }
  if (p.clusterToken !== undefined && (typeof p.clusterToken !== 'string' || !NAME.test(p.clusterToken))) {
    throw new Error(`clusterToken must be letters, digits, . _ -, got ${JSON.stringify(p.clusterToken)}`);
  }
}

/**
 * The etcd command line of the seed's etcd.service, with Debian's binary: argv[0] and every
 * flag, in the seed's order. Pure.
 */
export function etcdArgs(params: EtcdMemberParams): string[] {
  const p = resolved(params);
  const self = `https://${hostPort(p.ip, 2380)}`;
  return [
    ETCD_BINARY,
    '--name', p.name,
    `--cert-file=${p.certFile}`,
    `--key-file=${p.keyFile}`,
    `--peer-cert-file=${p.certFile}`,
    `--peer-key-file=${p.keyFile}`,
    `--trusted-ca-file=${p.trustedCaFile}`,
    `--peer-trusted-ca-file=${p.trustedCaFile}`,
    '--peer-client-cert-auth',
    '--client-cert-auth',
    '--initial-advertise-peer-urls', self,
    '--listen-peer-urls', self,
    '--listen-client-urls', `https://${hostPort(p.ip, 2379)},https://127.0.0.1:2379`,
    '--advertise-client-urls', `https://${hostPort(p.ip, 2379)}`,
    '--initial-cluster-token', p.clusterToken,
    '--initial-cluster', p.members.map((member) => `${member.name}=https://${hostPort(member.ip, 2380)}`).join(','),
    '--initial-cluster-state', 'new',
    `--data-dir=${p.dataDir}`,
  ];
}

/** The whole etcd.service (the seed's unit; /usr/bin/etcd from Debian's etcd-server). Pure. */
export function renderEtcdUnit(params: EtcdMemberParams): string {
  const [binary, ...args] = etcdArgs(params);
  // One flag (with its value) per continuation line, as in the seed.
  const lines: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (!arg.includes('=') && next !== undefined && !next.startsWith('--')) {
      lines.push(`${arg} ${next}`);
      i++;
    } else {
      lines.push(arg);
    }
  }
  return renderServiceUnit({ description: 'etcd', documentation: 'https://github.com/coreos', type: 'notify', execStart: [binary!, ...lines] });
}

/* ------------------------------------------------------------------ packages */

/**
 * Installs etcd-server and etcd-client without ever starting the package's default single-node
 * member: etcd.service is masked for the runtime during the install (its postinst's enable and
 * start fail harmlessly) and unmasked right after, whatever apt's outcome. Id `etcd:packages`.
 */
function ensureEtcdPackages(options?: TaskOptions): Task<void> {
  const install = (update: boolean): Command => sh`set -e
systemctl mask --runtime etcd.service >/dev/null 2>&1 || true
rc=0
${update ? sh`${APT_GET_UPDATE} >/dev/null || rc=$?` : sh`true`}
[ "$rc" -ne 0 ] || DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get install -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold ${[...ETCD_PACKAGES]} 2>&1 || rc=$?
systemctl unmask --runtime etcd.service >/dev/null 2>&1 || true
exit $rc`;
  return defineTask<Record<string, never>>(
    {
      kind: 'etcd',
      id: () => 'etcd:packages',
      title: () => `packages ${ETCD_PACKAGES.join(', ')} (default member not started)`,
      async check(ctx) {
        const result = await ctx.probe(dpkgQueryCommand([...ETCD_PACKAGES]));
        if (result.code !== 0 && result.code !== 1) throw new Error(`dpkg-query failed (exit ${result.code}): ${result.stderr.trim()}`);
        return packagesDrift(ETCD_PACKAGES.map((name) => ({ name })), parseDpkgQuery(result.stdout), {});
      },
      async apply(ctx) {
        let result = await ctx.exec(install(false));
        if (result.code !== 0 && /Unable to locate package|has no installation candidate/.test(result.stdout)) {
          ctx.log('apt does not know etcd-server yet: apt-get update, then install again');
          result = await ctx.exec(install(true));
        }
        if (result.code !== 0) throw new Error(`installing ${ETCD_PACKAGES.join(' ')} failed (exit ${result.code}):\n${tail(`${result.stdout}\n${result.stderr}`)}`);
      },
    },
    {},
    options,
  );
}

/* ------------------------------------------------------------------ the running member */

/** What the service probe tells about etcd.service and the process it runs. */
export interface EtcdServiceState {
  enabled: string;
  active: string;
  loadState: string;
  needDaemonReload: boolean;
  mainPid: number;
  /** argv of the running main process; null when none runs. */
  argv: string[] | null;
}

/** One round trip: is-enabled, is-active, show, and the main process' argv (base64 of /proc/PID/cmdline). */
export function etcdServiceProbe(): Command {
  return sh`printf 'IsEnabled=%s\\n' "$(systemctl is-enabled etcd.service 2>/dev/null)"
printf 'IsActive=%s\\n' "$(systemctl is-active etcd.service 2>/dev/null)"
systemctl show -p LoadState -p NeedDaemonReload -p MainPID etcd.service
pid=$(systemctl show -p MainPID --value etcd.service 2>/dev/null)
if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r /proc/$pid/cmdline ]; then printf 'Cmdline=%s\\n' "$(base64 -w0 /proc/$pid/cmdline)"; fi
${raw('true')}`;
}

/** Parses {@link etcdServiceProbe}'s output. Pure. */
export function parseEtcdServiceState(output: string): EtcdServiceState {
  const values = new Map<string, string>();
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !values.has(line.slice(0, eq))) values.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const cmdline = values.get('Cmdline');
  const argv = cmdline ? Buffer.from(cmdline, 'base64').toString('utf8').replace(/\0$/, '').split('\0') : null;
  return {
    enabled: values.get('IsEnabled') ?? '',
    active: values.get('IsActive') ?? '',
    loadState: values.get('LoadState') ?? '',
    needDaemonReload: values.get('NeedDaemonReload') === 'yes',
    mainPid: Number(values.get('MainPID')) || 0,
    argv,
  };
}

/** What differs between the running service and the member wanted (pure). */
export function etcdServiceDrift(state: EtcdServiceState, wantedArgv: readonly string[]): Drift[] {
  if (state.loadState === 'masked' || state.enabled.startsWith('masked')) {
    throw new Error('etcd.service is masked: someone masked it on purpose; unmask it (systemctl unmask etcd) if it should run');
  }
  const drift: Drift[] = [];
  if (state.needDaemonReload) drift.push({ subject: 'daemon-reload', current: 'unit file changed on disk', desired: 'reloaded' });
  if (!['enabled', 'alias'].includes(state.enabled)) drift.push({ subject: 'enabled', current: state.enabled || 'unknown', desired: 'enabled' });
  const running = state.active === 'active' || state.active === 'reloading';
  if (!running) {
    drift.push({ subject: 'running', current: state.active || 'unknown', desired: 'active' });
  } else if (state.argv === null || state.argv.join('\0') !== wantedArgv.join('\0')) {
    drift.push({ subject: 'restart', current: `running ${state.argv ? state.argv.join(' ') : '(unknown command line)'}`, desired: `running ${wantedArgv.join(' ')}` });
  }
  return drift;
}

function ensureEtcdService(params: PerHostParams<EtcdMemberParams>, options?: TaskOptions): Task<void> {
  return defineTask<EtcdMemberParams>(
    {
      kind: 'etcd',
      id: () => 'etcd:service',
      title: (p) => `etcd member ${p.name} enabled and running with its unit's flags`,
      desired: (p) => etcdArgs(p),
      validate: validateEtcdMember,
      async check(ctx, p) {
        const result = await ctx.probe(etcdServiceProbe());
        if (result.code !== 0) throw new Error(`cannot probe etcd.service: ${result.stderr.trim() || `exit ${result.code}`}`);
        const state = parseEtcdServiceState(result.stdout);
        if (state.loadState === 'not-found') {
          // In --check the unit and the package are pending changes of earlier tasks.
          if (ctx.checkMode && ctx.pendingChanges.length) return [{ subject: 'running', current: 'no etcd.service yet', desired: 'active', pending: ctx.pendingChanges.join(', ') }];
          throw new Error('etcd.service not found (is etcd-server installed and the unit written?)');
        }
        return etcdServiceDrift(state, etcdArgs(p));
      },
      async apply(ctx, p, drift) {
        const subjects = new Set(drift.map((d) => d.subject));
        if (subjects.has('daemon-reload')) await ctx.run(sh`systemctl daemon-reload`);
        if (subjects.has('enabled')) await ctx.run(sh`systemctl enable etcd.service`);
        // Type=notify: start/restart return once the member has joined a cluster with quorum,
        // which the other members, converging in parallel, provide.
        const action = subjects.has('restart') ? 'restart' : subjects.has('running') ? 'start' : null;
        if (action) {
          const result = await ctx.exec(sh`systemctl ${action} etcd.service`);
          if (result.code !== 0) throw new Error(`systemctl ${action} etcd failed: ${result.stderr.trim()}${await journalTail(ctx)}`);
          ctx.log(`etcd ${action}ed as member ${p.name}`);
        }
      },
    },
    params,
    options,
  );
}

async function journalTail(ctx: ApplyContext): Promise<string> {
  const result = await ctx.exec(sh`journalctl --no-pager -n 12 -o cat -u etcd.service`);
  return result.stdout.trim() ? `; its journal ends with:\n${result.stdout.trim()}` : '';
}

function tail(text: string, lines = 15): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/**
 * Ensures this controller is a member of a TLS etcd cluster (the seed's etcd.service): Debian's
 * etcd-server and etcd-client installed without starting the package's default member, the seed's
 * unit in /etc/systemd/system/etcd.service (replacing the package's), the service enabled and
 * running with exactly that unit's flags — restarted only when the running member's command line
 * differs from the unit. Certificates must be in place first (see installPkiFiles). Ids:
 * `etcd:packages`, `systemd-unit:/etc/systemd/system/etcd.service`, `etcd:service`.
 *
 * @example
 * const members = [{ name: 'controller-0', ip: '10.240.0.10' }, { name: 'controller-1', ip: '10.240.0.11' }, { name: 'controller-2', ip: '10.240.0.12' }];
 * ensureEtcdMember({
 *   name: (host) => host.name, ip: (host) => String(host.vars.internal_ip), members,
 *   certFile: '/etc/etcd/kubernetes.pem', keyFile: '/etc/etcd/kubernetes-key.pem', trustedCaFile: '/etc/etcd/ca.pem',
 * })
 */
export function ensureEtcdMember(params: PerHostParams<EtcdMemberParams>, options?: TaskOptions): Task<void>[] {
  // The service task first: it validates static parameters when the playbook loads (an InputError).
  const service = ensureEtcdService(params, options);
  const perHost = Object.values(params).some((value) => typeof value === 'function');
  const content = perHost ? (host: HostView) => renderEtcdUnit(resolveParams(params, host)) : renderEtcdUnit(params as EtcdMemberParams);
  return [ensureEtcdPackages(options), ensureSystemdUnit({ name: 'etcd', content }, options), service];
}

/** Resolves per-host parameters the way defineTask does (for the unit's content). */
function resolveParams(params: PerHostParams<EtcdMemberParams>, host: HostView): EtcdMemberParams {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) out[key] = typeof value === 'function' ? (value as (h: HostView) => unknown)(host) : value;
  const p = out as unknown as EtcdMemberParams;
  validateEtcdMember(p);
  return p;
}

/* ------------------------------------------------------------------ verification */

export interface EtcdHealthParams {
  /** Client URLs to ask: `https://10.240.0.10:2379`, … */
  endpoints: string[];
  cacert: string;
  cert: string;
  key: string;
  /** How many started members `member list` must show. */
  members: number;
  /** How long apply waits for the cluster to become healthy (default 60 s). */
  timeoutMs?: number;
}

/** One member of `etcdctl member list` (simple format). */
export interface EtcdMemberListEntry {
  id: string;
  status: string;
  name: string;
  peerUrls: string;
  clientUrls: string;
}

/** Parses `etcdctl member list` (`8e9e05c52164694d, started, node1, https://…:2380, https://…:2379, false`). Pure. */
export function parseMemberList(output: string): EtcdMemberListEntry[] {
  return output
    .split('\n')
    .map((line) => line.split(',').map((field) => field.trim()))
    .filter((fields) => fields.length >= 5 && /^[0-9a-f]+$/.test(fields[0]!))
    .map(([id, status, name, peerUrls, clientUrls]) => ({ id: id!, status: status!, name: name!, peerUrls: peerUrls!, clientUrls: clientUrls! }));
}

/** Parses `etcdctl endpoint health` lines: `https://…:2379 is healthy: successfully committed proposal: took = 2.1ms`. Pure. */
export function parseEndpointHealth(output: string): Map<string, boolean> {
  const health = new Map<string, boolean>();
  for (const line of output.split('\n')) {
    const match = /^(\S+) is (healthy|unhealthy)/.exec(line.trim());
    if (match) health.set(match[1]!, match[2] === 'healthy');
  }
  return health;
}

/** The etcdctl command line (v3 API) for `args`, over TLS with the given client certificate. */
export function etcdctlCommand(p: Pick<EtcdHealthParams, 'endpoints' | 'cacert' | 'cert' | 'key'>, args: readonly string[]): Command {
  return sh`ETCDCTL_API=3 etcdctl --endpoints=${p.endpoints.join(',')} --cacert=${p.cacert} --cert=${p.cert} --key=${p.key} --dial-timeout=3s --command-timeout=5s ${[...args]}`;
}

/** What is wrong with the cluster, from etcdctl's outputs (empty: healthy). Pure. */
export function etcdHealthDrift(
  p: Pick<EtcdHealthParams, 'endpoints' | 'members'>,
  health: { code: number | null; stdout: string; stderr: string },
  list: { code: number | null; stdout: string; stderr: string },
): Drift[] {
  const drift: Drift[] = [];
  const byEndpoint = parseEndpointHealth(`${health.stdout}\n${health.stderr}`);
  const sick = p.endpoints.filter((endpoint) => byEndpoint.get(endpoint) !== true);
  if (health.code !== 0 || sick.length) {
    drift.push({ subject: 'endpoint health', current: `${sick.join(', ') || 'some endpoints'} not healthy: ${firstLines(`${health.stderr}\n${health.stdout}`)}`, desired: `${p.endpoints.length} healthy` });
  }
  const started = parseMemberList(list.stdout).filter((member) => member.status === 'started');
  if (list.code !== 0 || started.length !== p.members) {
    drift.push({ subject: 'members', current: list.code !== 0 ? `member list failed: ${firstLines(list.stderr)}` : `${started.length} started (${started.map((m) => m.name).join(', ')})`, desired: `${p.members} started` });
  }
  return drift;
}

function firstLines(text: string, lines = 3): string {
  return text.trim().split('\n').filter(Boolean).slice(0, lines).join(' | ');
}

/**
 * Verifies, read-only, that the etcd cluster is healthy over TLS: `etcdctl endpoint health` says
 * every endpoint is healthy and `etcdctl member list` shows `members` started members. It changes
 * nothing, so it reports ok or fails: when applying, its check waits (up to `timeoutMs`) for a
 * cluster still settling after a (re)start, then it fails with etcdctl's words. In --check after pending changes it reports
 * "would change (pending)". Id: `etcd-health:<endpoints>`.
 *
 * @example etcdHealthy({ endpoints: ['https://127.0.0.1:2379'], cacert: '/etc/etcd/ca.pem', cert: '/etc/etcd/kubernetes.pem', key: '/etc/etcd/kubernetes-key.pem', members: 3 })
 */
export function etcdHealthy(params: PerHostParams<EtcdHealthParams>, options?: TaskOptions): Task<void> {
  const probe = async (ctx: CheckContext, p: EtcdHealthParams) => {
    const [health, list] = await Promise.all([ctx.probe(etcdctlCommand(p, ['endpoint', 'health'])), ctx.probe(etcdctlCommand(p, ['member', 'list']))]);
    return etcdHealthDrift(p, health, list);
  };
  return defineTask<EtcdHealthParams>(
    {
      kind: 'etcd-health',
      id: (p) => `etcd-health:${p.endpoints.join(',')}`,
      title: (p) => `etcd healthy: ${p.members} started members, ${p.endpoints.length} healthy endpoints`,
      validate: (p) => {
        if (!Array.isArray(p.endpoints) || p.endpoints.length === 0 || !p.endpoints.every((e) => typeof e === 'string' && /^https:\/\/[^\s,]+$/.test(e))) {
          throw new Error('endpoints must be https:// client URLs');
        }
        requireAbsolutePath('cacert', p.cacert);
        requireAbsolutePath('cert', p.cert);
        requireAbsolutePath('key', p.key);
        if (!Number.isInteger(p.members) || p.members < 1) throw new Error(`members must be a positive integer, got ${JSON.stringify(p.members)}`);
      },
      async check(ctx, p) {
        let drift = await probe(ctx, p);
        if (ctx.checkMode) return drift.length && ctx.pendingChanges.length ? drift.map((d) => ({ ...d, pending: ctx.pendingChanges.join(', ') })) : drift;
        // Applying: members (re)started by this play may still be joining; reading again is harmless.
        const deadline = Date.now() + (p.timeoutMs ?? 60_000);
        while (drift.length && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          drift = await probe(ctx, p);
        }
        return drift;
      },
      async apply(_ctx, _p, drift) {
        // Nothing to change from here: a cluster still unhealthy after the wait is a failure.
        throw new Error(`etcd is not healthy: ${drift.map((d) => `${d.subject}: ${String(d.current)} (want ${String(d.desired)})`).join('; ')}`);
      },
    },
    params,
    options,
  );
}
