import { defineTask, sh, type ApplyContext, type CheckContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireAbsolutePath } from './validate.js';

/*
 * systemd services, unit files and service handlers.
 *
 * Every probe is one round trip: `systemctl is-enabled`, `systemctl is-active` and
 * `systemctl show -p …` printed together as key=value lines, parsed by the pure functions below.
 */

/* ------------------------------------------------------------------ unit names */

/** systemd's unit name alphabet (systemd.unit(5)): letters, digits, ":", "-", "_", ".", "\\" and one "@" for templates. */
const UNIT_NAME = /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|target|timer|mount|automount|swap|path|slice|scope|device)$/;

/** `containerd` → `containerd.service`; names with a unit type suffix are kept. Pure. */
export function unitName(name: string): string {
  return /\.(service|socket|target|timer|mount|automount|swap|path|slice|scope|device)$/.test(name) ? name : `${name}.service`;
}

/** The name used in ids: services without their `.service` suffix, other units as they are. Pure. */
function shortName(name: string): string {
  return unitName(name).replace(/\.service$/, '');
}

function requireUnitName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.startsWith('-') || name.length > 255 || !UNIT_NAME.test(unitName(name))) {
    throw new Error(`not a systemd unit name: ${JSON.stringify(name)}`);
  }
}

/**
 * A service unit as the seeds' heredocs write them: `ExecStart=` with one argument (or flag) per
 * line and ` \` continuations, `Restart=on-failure`, `RestartSec=5`, wanted by multi-user.target.
 * Pure.
 */
export function renderServiceUnit(unit: { description: string; documentation: string; type?: string; execStart: readonly string[] }): string {
  const exec = unit.execStart.map((part, i, all) => `${i === 0 ? 'ExecStart=' : '  '}${part}${i < all.length - 1 ? ' \\' : ''}`);
  return [
    '[Unit]',
    `Description=${unit.description}`,
    `Documentation=${unit.documentation}`,
    '',
    '[Service]',
    ...(unit.type ? [`Type=${unit.type}`] : []),
    ...exec,
    'Restart=on-failure',
    'RestartSec=5',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/* ------------------------------------------------------------------ probing */

/** What one probe tells about a unit. */
export interface UnitState {
  /** False when the host is not run by systemd (no /run/systemd/system). */
  systemd: boolean;
  /** `systemctl is-enabled`: enabled, disabled, static, masked, alias, indirect, generated, … ('' when unknown). */
  enabled: string;
  /** `systemctl is-active`: active, inactive, failed, activating, deactivating, reloading. */
  active: string;
  /** LoadState: loaded, not-found, masked, bad-setting, error. */
  loadState: string;
  subState: string;
  needDaemonReload: boolean;
  mainPid: number;
  canReload: boolean;
  /** When the unit last became active (ActiveEnterTimestamp), in Unix seconds with microseconds when systemd printed them; null when never. */
  activeSince: number | null;
  /** Whether `activeSince` has microseconds (systemd ≥ 248 prints them with `--timestamp=us+utc`) or whole seconds only. */
  activeSincePrecise: boolean;
  /** Modification times (Unix seconds with nanoseconds) of the `restartOn` paths that exist. */
  mtimes: Record<string, number>;
}

/** The probe for one unit: is-enabled, is-active, show -p … and the mtimes of `paths`, as key=value lines. */
export function unitProbe(unit: string, paths: readonly string[] = []) {
  // TZ=UTC: ActiveEnterTimestamp is printed in the local zone, whose abbreviation may be ambiguous; in
  // UTC it parses exactly. Microseconds (systemd ≥ 248) and nanosecond mtimes (date -r): in whole
  // seconds, a config written in the second the service started looked older than the start, and
  // the restart it needed was missed. Older systemds reject --timestamp and print whole seconds.
  const properties = sh`-p LoadState -p ActiveState -p SubState -p NeedDaemonReload -p MainPID -p CanReload -p ActiveEnterTimestamp -- ${unit}`;
  return sh`if [ -d /run/systemd/system ]; then echo Systemd=yes; else echo Systemd=no; exit 0; fi
printf 'IsEnabled=%s\\n' "$(systemctl is-enabled -- ${unit} 2>/dev/null)"
printf 'IsActive=%s\\n' "$(systemctl is-active -- ${unit} 2>/dev/null)"
TZ=UTC LC_ALL=C systemctl show --timestamp=us+utc ${properties} 2>/dev/null || TZ=UTC LC_ALL=C systemctl show ${properties}
${paths.length ? sh`for f in ${paths}; do if [ -e "$f" ]; then printf 'Mtime=%s %s\\n' "$(date -r "$f" +%s.%N)" "$f"; fi; done` : sh`true`}`;
}

/**
 * True when a file modified at `mtime` changed after the unit became active. With whole-second
 * start times (systemd < 248) the file counts only from the next second, as before: a restart
 * the comparison cannot tell from a change would repeat on every run.
 */
export function changedSinceStart(mtime: number, state: Pick<UnitState, 'activeSince' | 'activeSincePrecise'>): boolean {
  if (state.activeSince === null) return false;
  return state.activeSincePrecise ? mtime > state.activeSince : Math.floor(mtime) > state.activeSince;
}

/**
 * Parses `systemctl show`'s `ActiveEnterTimestamp` printed with TZ=UTC ("Sat 2026-11-21 21:56:19 UTC",
 * or with microseconds "Sat 2026-11-21 21:56:19.152667 UTC") to Unix seconds, keeping the fraction. Pure.
 */
export function parseSystemdTimestamp(text: string): number | null {
  const match = /(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)? UTC$/.exec(text.trim());
  if (!match) return null;
  const [y, mo, d, h, mi, s] = match.slice(1, 7).map(Number) as number[];
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, s!) / 1000 + Number(`0${match[7] ?? ''}`);
}

/** Parses the output of {@link unitProbe}. Pure. */
export function parseUnitState(output: string): UnitState {
  const values = new Map<string, string>();
  const mtimes: Record<string, number> = {};
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'Mtime') {
      const match = /^(\d+(?:\.\d+)?) (.+)$/.exec(value);
      if (match) mtimes[match[2]!] = Number(match[1]);
    } else if (!values.has(key)) {
      values.set(key, value.trim());
    }
  }
  const get = (key: string) => values.get(key) ?? '';
  return {
    systemd: get('Systemd') === 'yes',
    enabled: get('IsEnabled'),
    active: get('IsActive') || get('ActiveState'),
    loadState: get('LoadState'),
    subState: get('SubState'),
    needDaemonReload: get('NeedDaemonReload') === 'yes',
    mainPid: Number(get('MainPID')) || 0,
    canReload: get('CanReload') === 'yes',
    activeSince: parseSystemdTimestamp(get('ActiveEnterTimestamp')),
    activeSincePrecise: /:\d{2}\.\d+ UTC$/.test(get('ActiveEnterTimestamp')),
    mtimes,
  };
}

async function probeUnit(ctx: CheckContext, unit: string, paths: readonly string[] = []): Promise<UnitState> {
  const result = await ctx.probe(unitProbe(unit, paths));
  if (result.code !== 0) throw new Error(`cannot probe ${unit}: ${result.stderr.trim() || `exit ${result.code}`}`);
  const state = parseUnitState(result.stdout);
  if (!state.systemd) throw new Error(`${unit}: this host is not run by systemd (no /run/systemd/system)`);
  return state;
}

/* ------------------------------------------------------------------ ensureService */

export interface ServiceParams {
  /** The unit: `containerd` means `containerd.service`. */
  name: string;
  /** Started at boot (`systemctl enable`) or not (`systemctl disable`). Omit to leave as it is. */
  enabled?: boolean;
  /** Running now (`systemctl start`) or stopped (`systemctl stop`). Omit to leave as it is. */
  running?: boolean;
  /**
   * Files the running service reads (its configuration): when one was modified after the service
   * last started, the service is restarted. This verifies the effect rather than remembering the
   * edit, so a run that changed the file but stopped before its handler ran is caught up by the
   * next run. Compared in whole seconds: a file modified within the same second after the start is
   * not seen (handlers cover the normal path).
   */
  restartOn?: readonly string[];
}

/** States of `systemctl is-enabled` that satisfy `enabled: true` (its exit status is 0 for these and they persist across reboots). */
const ENABLED_STATES = new Set(['enabled', 'alias', 'static', 'indirect', 'generated', 'transient']);
/** States of `systemctl is-enabled` that satisfy `enabled: false`: nothing starts the unit at boot by itself. */
const DISABLED_STATES = new Set(['disabled', 'masked', 'masked-runtime', 'static', 'indirect', 'generated', 'transient', '']);
/** `systemctl is-active` states that count as running. */
const RUNNING_STATES = new Set(['active', 'reloading']);

/**
 * What differs between a unit's state and what is wanted (pure). Throws, with a message saying
 * what to do, when it cannot be converged by this task: the unit does not exist, or it is masked
 * (an administrator's explicit "never start this", which a playbook must not silently undo).
 */
export function serviceDrift(unit: string, state: UnitState, wanted: Pick<ServiceParams, 'enabled' | 'running' | 'restartOn'>): Drift[] {
  const masked = state.enabled.startsWith('masked') || state.loadState === 'masked';
  const running = RUNNING_STATES.has(state.active);
  const drift: Drift[] = [];
  if (state.loadState === 'not-found' && (wanted.enabled === true || wanted.running === true)) {
    throw new Error(`${unit} not found: no unit file for it (is its package installed, or its unit written?)`);
  }
  if (masked && (wanted.enabled === true || wanted.running === true)) {
    throw new Error(
      `${unit} is masked (systemctl is-enabled: ${state.enabled || 'masked'}), so it cannot be ${wanted.enabled ? 'enabled' : 'started'}; ` +
        `someone masked it on purpose: unmask it (systemctl unmask ${unit}) if it should run`,
    );
  }
  if (state.needDaemonReload) drift.push({ subject: 'daemon-reload', current: 'unit file changed on disk', desired: 'reloaded' });
  if (wanted.enabled === true && !ENABLED_STATES.has(state.enabled)) drift.push({ subject: 'enabled', current: state.enabled || 'unknown', desired: 'enabled' });
  if (wanted.enabled === false && !DISABLED_STATES.has(state.enabled)) drift.push({ subject: 'enabled', current: state.enabled, desired: 'disabled' });
  if (wanted.running === true && !running) drift.push({ subject: 'running', current: state.active || 'unknown', desired: 'active' });
  if (wanted.running === false && (running || state.active === 'activating')) drift.push({ subject: 'running', current: state.active, desired: 'inactive' });
  // A stale configuration matters only for a service that runs and stays running.
  if (running && wanted.running !== false && state.activeSince !== null) {
    const stale = (wanted.restartOn ?? []).filter((path) => state.mtimes[path] !== undefined && changedSinceStart(state.mtimes[path]!, state));
    if (stale.length > 0) {
      drift.push({ subject: 'restart', current: `started ${isoSeconds(state.activeSince)}, before ${stale.join(', ')} changed`, desired: 'restarted' });
    }
  }
  return drift;
}

/**
 * What a service task owns (pure): the unit itself (shared by every task on it) and, separately,
 * each aspect it sets — enabled, running, the files it restarts on — so two tasks on one unit
 * conflict only when they want different values of the same aspect.
 */
export function serviceClaims(p: Pick<ServiceParams, 'name' | 'enabled' | 'running' | 'restartOn'>): { id: string; desired: unknown }[] {
  const id = `service:${shortName(p.name)}`;
  return [
    { id, desired: unitName(p.name) },
    ...(p.enabled === undefined ? [] : [{ id: `${id}:enabled`, desired: p.enabled }]),
    ...(p.running === undefined ? [] : [{ id: `${id}:running`, desired: p.running }]),
    ...(p.restartOn === undefined ? [] : [{ id: `${id}:restart-on`, desired: [...p.restartOn].sort() }]),
  ];
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

function validateService(p: ServiceParams): void {
  requireUnitName(p.name);
  for (const key of ['enabled', 'running'] as const) {
    if (p[key] !== undefined && typeof p[key] !== 'boolean') throw new Error(`${key} must be true or false`);
  }
  if (p.enabled === undefined && p.running === undefined) throw new Error('say what is wanted: enabled, running, or both');
  if (p.restartOn !== undefined) {
    if (!Array.isArray(p.restartOn)) throw new Error('restartOn must be a list of absolute paths');
    p.restartOn.forEach((path, i) => requireAbsolutePath(`restartOn[${i}]`, path));
    if (p.running === false) throw new Error('restartOn makes no sense for a service that must be stopped');
  }
}

/**
 * Ensures a systemd service is enabled at boot and/or running now, as wanted. A unit file changed
 * on disk (`NeedDaemonReload=yes`) is picked up with `systemctl daemon-reload` first. With
 * `restartOn`, a running service started before one of those files last changed is restarted (and
 * must be active afterwards). A masked unit, or one that does not exist, fails with a message
 * saying so; a missing unit wanted disabled and stopped is in sync. Id: `service:<name>`.
 *
 * To restart a service when another task changes its configuration, use a handler:
 * `ensureFile({ …config… }, { notify: [restartService('containerd')] })`.
 *
 * @param name the unit; `containerd` means `containerd.service`
 * @param wanted.enabled `systemctl enable` / `disable`
 * @param wanted.running `systemctl start` / `stop`
 * @param wanted.restartOn absolute paths of files the service reads
 * @example ensureService('containerd', { enabled: true, running: true, restartOn: ['/etc/containerd/config.toml'] })
 * @example ensureService('dphys-swapfile', { enabled: false, running: false })
 */
export function ensureService(name: string, wanted: PerHostParams<Omit<ServiceParams, 'name'>>, options?: TaskOptions): Task<void> {
  return defineTask<ServiceParams>(
    {
      kind: 'service',
      id: (p) => `service:${shortName(p.name)}`,
      title: (p) => `service ${shortName(p.name)} ${[p.enabled === undefined ? '' : p.enabled ? 'enabled' : 'disabled', p.running === undefined ? '' : p.running ? 'running' : 'stopped'].filter(Boolean).join(', ')}`,
      // Each aspect is claimed on its own: `{ enabled: true }` before kubeadm init and `{ running: true }`
      // after it want compatible states of one unit; `enabled: true` here and `enabled: false` there do not.
      desired: (p) => ({ name: unitName(p.name), enabled: p.enabled, running: p.running, restartOn: p.restartOn ? [...p.restartOn].sort() : undefined }),
      claims: (p) => serviceClaims(p),
      validate: validateService,
      // The unit file (a package's, or one written) and, to be running, what starts it (kubeadm init starts the kubelet).
      needs: (p) => (p.enabled === true || p.running === true ? [{ unit: unitName(p.name) }, ...(p.running === true ? [{ running: unitName(p.name) }] : [])] : []),
      probes: (p) => [{ kind: 'exec', command: unitProbe(unitName(p.name), p.restartOn ?? []) }],
      async check(ctx, p) {
        const unit = unitName(p.name);
        const drift = serviceDrift(unit, await probeUnit(ctx, unit, p.restartOn ?? []), p);
        // In --check, a stopped unit after earlier pending changes may be started by them (kubeadm init
        // starts the kubelet): the start is predicted, not certain, and says so.
        if (!ctx.checkMode || !ctx.pendingChanges.length) return drift;
        return drift.map((d) => (d.subject === 'running' && d.desired === 'active' ? { ...d, pending: ctx.pendingChanges.join(', ') } : d));
      },
      async apply(ctx, p, drift) {
        const unit = unitName(p.name);
        const subjects = new Set(drift.map((d) => d.subject));
        if (subjects.has('daemon-reload')) await ctx.run(sh`systemctl daemon-reload`);
        if (subjects.has('enabled')) await ctx.run(p.enabled ? sh`systemctl enable -- ${unit}` : sh`systemctl disable -- ${unit}`);
        if (subjects.has('running') && p.running === false) await ctx.run(sh`systemctl stop -- ${unit}`);
        if (subjects.has('restart')) {
          await ctx.run(sh`systemctl restart -- ${unit}`);
          await waitActive(ctx, unit);
        } else if (subjects.has('running') && p.running === true) {
          await ctx.run(sh`systemctl start -- ${unit}`);
          await waitActive(ctx, unit);
        }
      },
    },
    { ...wanted, name } as PerHostParams<ServiceParams>,
    options,
  );
}

/**
 * After a start or restart: waits (up to `timeoutMs`) until the unit is active, then checks it is
 * still active a second later — a service that starts and dies at once (a bad configuration) is
 * reported here, with the end of its journal, rather than passing as "restarted".
 */
async function waitActive(ctx: ApplyContext, unit: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let state = '';
  for (;;) {
    state = (await ctx.exec(sh`systemctl is-active -- ${unit}`)).stdout.trim();
    if (RUNNING_STATES.has(state)) break;
    if (state !== 'activating' || Date.now() > deadline) {
      throw new Error(`${unit} is ${state || 'unknown'} after being started${await journalTail(ctx, unit)}`);
    }
    await sleep(250);
  }
  await sleep(1000);
  state = (await ctx.exec(sh`systemctl is-active -- ${unit}`)).stdout.trim();
  if (!RUNNING_STATES.has(state)) throw new Error(`${unit} started but is ${state || 'unknown'} a second later${await journalTail(ctx, unit)}`);
}

async function journalTail(ctx: ApplyContext, unit: string): Promise<string> {
  const result = await ctx.exec(sh`journalctl --no-pager -n 10 -o cat -u ${unit}`);
  const lines = result.stdout.trim();
  return lines ? `; its journal ends with:\n${lines}` : '';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/* ------------------------------------------------------------------ handlers */

interface HandlerParams {
  name: string;
}

const handlers = new Map<string, Task<void>>();

/**
 * A handler that restarts a service: put it in `notify` of the tasks that change the service's
 * configuration; the engine runs it once at the end of the play on hosts where one of them
 * changed. It runs `systemctl daemon-reload` first when a unit file changed, then
 * `systemctl restart`, and fails unless the service is active afterwards (and still a second
 * later). In --check it reports "would change" on those hosts.
 *
 * The same handler object is returned for the same unit, so several tasks notifying
 * `restartService('containerd')` restart it once. Id: `service:<name>:restart`.
 *
 * @example
 * const restartContainerd = restartService('containerd');
 * const content = 'version = 2\n';
 * ensureFile({ path: '/etc/containerd/config.toml', content }, { notify: [restartContainerd] })
 */
export function restartService(name: string): Task<void> {
  return handler('restart', name);
}

/**
 * A handler that reloads a service's configuration without restarting it (`systemctl reload`:
 * haproxy keeps its connections). A service that is not running is started instead; a unit that
 * cannot reload (`CanReload=no`) fails, saying to use {@link restartService}. It must be active
 * afterwards. Same object for the same unit; id `service:<name>:reload`.
 *
 * @example
 * const content = 'global\n  maxconn 4096\n';
 * ensureFile({ path: '/etc/haproxy/haproxy.cfg', content }, { notify: [reloadService('haproxy')] })
 */
export function reloadService(name: string): Task<void> {
  return handler('reload', name);
}

function handler(action: 'restart' | 'reload', name: string): Task<void> {
  // Invalid names are rejected by validate (an InputError when the playbook loads).
  const key = `${action}:${unitName(String(name))}`;
  let task = handlers.get(key);
  if (!task) {
    task = defineTask<HandlerParams>(
      {
        kind: 'service',
        id: (p) => `service:${shortName(p.name)}:${action}`,
        title: (p) => `${action} ${shortName(p.name)}`,
        validate: (p) => requireUnitName(p.name),
        // A handler has nothing to compare: being notified is the reason to act.
        check: async () => [{ subject: action, desired: action === 'restart' ? 'restarted' : 'reloaded' }],
        verify: false,
        async apply(ctx, p) {
          const unit = unitName(p.name);
          const state = await probeUnit(ctx, unit);
          if (state.loadState === 'not-found') throw new Error(`cannot ${action} ${unit}: not found`);
          if (state.enabled.startsWith('masked') || state.loadState === 'masked') throw new Error(`cannot ${action} ${unit}: it is masked (systemctl unmask ${unit} if it should run)`);
          if (state.needDaemonReload) await ctx.run(sh`systemctl daemon-reload`);
          if (action === 'restart') {
            await ctx.run(sh`systemctl restart -- ${unit}`);
          } else if (!RUNNING_STATES.has(state.active)) {
            await ctx.run(sh`systemctl start -- ${unit}`);
          } else if (!state.canReload) {
            throw new Error(`${unit} cannot reload its configuration (CanReload=no): notify restartService('${shortName(p.name)}') instead`);
          } else {
            await ctx.run(sh`systemctl reload -- ${unit}`);
          }
          await waitActive(ctx, unit);
        },
      },
      { name },
    );
    handlers.set(key, task);
  }
  return task;
}

/* ------------------------------------------------------------------ ensureSystemdUnit */

export interface SystemdUnitParams {
  /** The unit: `capstan-demo` means `capstan-demo.service`. */
  name: string;
  /** The whole unit file (or drop-in) content; required unless `state: 'absent'`. */
  content?: string;
  /** Write a drop-in `/etc/systemd/system/<unit>.d/<dropIn>.conf` instead of the unit file itself. */
  dropIn?: string;
  state?: 'present' | 'absent';
}

/** Where a unit file or drop-in lives. Pure. */
export function unitFilePath(p: Pick<SystemdUnitParams, 'name' | 'dropIn'>): string {
  const unit = unitName(p.name);
  return p.dropIn === undefined ? `/etc/systemd/system/${unit}` : `/etc/systemd/system/${unit}.d/${p.dropIn}.conf`;
}

/**
 * Ensures a unit file in /etc/systemd/system (or a drop-in beside it, with `dropIn`) has exactly
 * this content (mode 0644), and that systemd has loaded it: after a change, and whenever
 * `NeedDaemonReload=yes` says systemd still runs an older definition, `systemctl daemon-reload`.
 * It does not restart the service: notify {@link restartService} for that. `state: 'absent'`
 * removes the file (then reloads). Id: `systemd-unit:<path>`.
 *
 * @example
 * ensureSystemdUnit({ name: 'kube-apiserver', content: '[Unit]\nDescription=Kubernetes API Server\n…' }, { notify: [restartService('kube-apiserver')] })
 * @example ensureSystemdUnit({ name: 'kubelet', dropIn: '20-node-ip', content: '[Service]\nEnvironment=KUBELET_EXTRA_ARGS=--node-ip=10.0.0.11\n' })
 */
export function ensureSystemdUnit(params: PerHostParams<SystemdUnitParams>, options?: TaskOptions): Task<void> {
  return defineTask<SystemdUnitParams>(
    {
      kind: 'systemd-unit',
      id: (p) => `systemd-unit:${unitFilePath(p)}`,
      title: (p) => `${p.state === 'absent' ? 'no ' : ''}systemd unit ${unitFilePath(p)}`,
      validate: (p) => {
        requireUnitName(p.name);
        if (p.state !== 'absent' && typeof p.content !== 'string') throw new Error('content must be a string');
        if (p.dropIn !== undefined && !/^[A-Za-z0-9_.@-]+$/.test(p.dropIn)) throw new Error(`dropIn must be a plain file name without .conf, got ${JSON.stringify(p.dropIn)}`);
        if (p.state !== undefined && p.state !== 'present' && p.state !== 'absent') throw new Error(`state must be present or absent, got ${JSON.stringify(p.state)}`);
      },
      async check(ctx, p) {
        const path = unitFilePath(p);
        const current = await ctx.readText(path);
        const drift: Drift[] = [];
        if (p.state === 'absent') {
          if (current !== null) drift.push({ subject: 'exists', current: 'present', desired: 'absent' });
        } else {
          if (current !== p.content) drift.push({ subject: 'content', file: path, current, desired: p.content! });
          const stat = current === null ? null : await ctx.stat(path);
          if (stat && stat.mode !== '0644') drift.push({ subject: 'mode', current: stat.mode, desired: '0644' });
        }
        // The file is as wanted, but systemd may still run an older definition (a run stopped before its reload).
        if (drift.length === 0 && current !== null) {
          const state = await probeUnit(ctx, unitName(p.name));
          if (state.needDaemonReload) drift.push({ subject: 'daemon-reload', current: 'unit file changed on disk', desired: 'reloaded' });
        }
        return drift;
      },
      async apply(ctx, p, drift) {
        const path = unitFilePath(p);
        const subjects = new Set(drift.map((d) => d.subject));
        if (p.state === 'absent') {
          await ctx.run(sh`rm -f -- ${path}`);
        } else if (subjects.has('content') || subjects.has('mode')) {
          if (p.dropIn !== undefined) await ctx.run(sh`mkdir -p -- ${`/etc/systemd/system/${unitName(p.name)}.d`}`);
          await ctx.writeFile(path, p.content!, { mode: '0644' });
        }
        await ctx.run(sh`systemctl daemon-reload`);
      },
    },
    params,
    options,
  );
}
