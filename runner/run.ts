import pLimit from 'p-limit';
import { CapstanError, InputError, PlaybookError, TransportError, errorMessage } from './errors.js';
import { exitCodeOf } from './exit-codes.js';
import { runTask, type HostRunState, type TaskOutcome } from './engine.js';
import type { HostRecap, HostUsage, ReportTable, Reporter, RunEvent } from './events.js';
import type { Host } from './host.js';
import type { Inventory, InventoryHost } from './inventory/index.js';
import { PlayResult, serialBatches, type HostPlayResult, type PlayOptions, type Playbook, type PlaybookContext } from './playbook.js';
import type { BoundTask, HostView, Task } from './task.js';
import type { Probe } from './contract.js';
import { Confirmation } from './confirm.js';
import { HandlerLedger, PENDING_HANDLERS_FILE, PENDING_HANDLERS_PROBE } from './handlers.js';
import { acquireLock, describeHolder, lockHolderOf, type HeldLock, type LockHolder } from './lock.js';
import { CheckResults, type CheckedChange, type TaskPlace } from './check-results.js';

export interface RunSettings {
  inventory: Inventory;
  checkMode: boolean;
  /** --limit pattern: intersected with every play's pattern. */
  limit?: string;
  forks: number;
  extraVars: Record<string, unknown>;
  reporter: Reporter;
  /** Makes the Host (and its transport) for an inventory host; called once per host per run. */
  connect: (host: InventoryHost) => Host;
  /** Aborted on Ctrl-C: hosts finish the task in flight and start no other; later plays do not start. */
  signal?: AbortSignal;
  /** The operator's confirmation for destructive playbooks; default: only `-e confirm=` counts. */
  confirmation?: Confirmation;
  /**
   * Host locks (runner/lock.ts): an applying run takes each host's lock before its first task, waiting
   * up to `timeoutMs` for another run's; a check run takes none and notes a lock that is held. Unset: no locks.
   */
  lock?: { holder: LockHolder; timeoutMs: number };
}

export interface RunSummary {
  recap: Record<string, HostRecap>;
  /** Ansible's: 0 ok, 1 bad input, 2 a task failed, 4 a host unreachable, 99 interrupted. */
  exitCode: number;
  /** Hosts that failed or were unreachable, for a --limit @retry re-run. */
  failedHosts: string[];
  /** The run's wall time, as in the recap event. */
  durationMs: number;
}

/**
 * Validates a whole playbook before any connection: patterns, options, task parameters, id
 * conflicts. Returns the hosts its plays select (in inventory order), for checks of their
 * connection settings before any host is contacted.
 */
export async function planPlaybook(playbook: Playbook, settings: PlanSettings): Promise<InventoryHost[]> {
  return (await plan(playbook, settings)).hosts;
}

/** What planning needs of the run settings. */
export type PlanSettings = Pick<RunSettings, 'inventory' | 'limit' | 'extraVars' | 'checkMode' | 'confirmation'>;

/** A play as the planning pass sees it: the hosts it would run on (runOnce: the first) and its tasks. */
export interface PlannedPlay {
  title: string;
  pattern: string;
  hosts: InventoryHost[];
  tasks: Task<unknown>[];
  options: PlayOptions;
}

/**
 * The plays a playbook would run, in order, validated as {@link planPlaybook} does, without any
 * connection (for --list-hosts and --list-tasks). Hosts that drop out during a real run are still listed.
 */
export async function planPlays(playbook: Playbook, settings: PlanSettings): Promise<PlannedPlay[]> {
  return (await plan(playbook, settings)).plays;
}

async function plan(playbook: Playbook, settings: PlanSettings): Promise<{ hosts: InventoryHost[]; plays: PlannedPlay[] }> {
  const selected = new Set<string>();
  const plays: PlannedPlay[] = [];
  const claims = new Map<string, { desired: string; where: string }>(); // key: host + task id
  const confirmation = settings.confirmation ?? new Confirmation(settings);
  const ctx: PlaybookContext = {
    checkMode: settings.checkMode,
    extraVars: settings.extraVars,
    inventory: settings.inventory,
    planning: true,
    confirm: (request) => confirmation.require(request),
    report: (table) => validateReportTable(table),
    selectHosts: (pattern) => selectHosts(settings.inventory, pattern, settings.limit),
    play: async (title, pattern, tasks, options = {}) => {
      validatePlayOptions(title, options);
      const hosts = selectHosts(settings.inventory, pattern, settings.limit);
      const planned = options.runOnce ? hosts.slice(0, 1) : hosts;
      plays.push({ title, pattern, hosts: planned, tasks, options });
      for (const host of planned) selected.add(host.name);
      tasks.forEach((task, index) => {
        if (!task.static) return; // per-host parameters: validated and checked for conflicts when bound
        for (const host of options.runOnce ? hosts.slice(0, 1) : hosts) {
          claim(claims, host.name, task.static, `play "${title}" task ${index + 1}`);
        }
      });
      return new PlayResult(title, new Map(), true);
    },
  };
  try {
    await playbook.body(ctx);
  } catch (error) {
    if (error instanceof CapstanError) throw error;
    throw new PlaybookError(`playbook "${playbook.name}" threw while planning (before any host was contacted): ${errorMessage(error)}`, { cause: error });
  }
  const hosts = [...settings.inventory.hosts.values()].filter((h) => selected.has(h.name));
  return { hosts, plays };
}

function claim(claims: Map<string, { desired: string; where: string }>, host: string, task: BoundTask, where: string): void {
  for (const owned of task.claims) {
    const key = `${host}\0${owned.id}`;
    const desired = JSON.stringify(owned.desired);
    const previous = claims.get(key);
    if (previous && previous.desired !== desired && previous.where !== where) {
      throw new InputError(`${previous.where} and ${where} both manage ${owned.id} on ${host} but want different states`, { host, task: owned.id });
    }
    if (!previous) claims.set(key, { desired, where });
  }
}

function validatePlayOptions(title: string, options: PlayOptions): void {
  try {
    serialBatches([1, 2, 3], options.serial);
  } catch (error) {
    throw new InputError(`play "${title}": ${errorMessage(error)}`);
  }
  if (options.maxFailPercent !== undefined && !(options.maxFailPercent >= 0 && options.maxFailPercent <= 100)) {
    throw new InputError(`play "${title}": maxFailPercent must be between 0 and 100`);
  }
}

/** A table whose rows do not fit its columns is the playbook's bug: said while planning, before any contact. */
function validateReportTable(table: ReportTable): void {
  const wrong = table.rows.findIndex((row) => row.length !== table.columns.length);
  if (wrong >= 0) throw new InputError(`report "${table.title}": row ${wrong + 1} has ${table.rows[wrong]!.length} cells for ${table.columns.length} columns`);
}

function selectHosts(inventory: Inventory, pattern: string, limit: string | undefined): InventoryHost[] {
  if (pattern.trim() === IMPLICIT_LOCALHOST && !inventory.hosts.has(IMPLICIT_LOCALHOST)) return [implicitLocalhost(inventory)];
  const hosts = inventory.select(pattern);
  if (limit === undefined) return hosts;
  const allowed = new Set(inventory.select(limit).map((h) => h.name));
  return hosts.filter((h) => allowed.has(h.name));
}

const IMPLICIT_LOCALHOST = 'localhost';

/**
 * Ansible's implicit localhost: a play on the pattern 'localhost' when the inventory has no host of
 * that name runs on the machine running capstan, over the local transport, with the 'all' group's
 * vars under `ansible_connection: local`. It is in no group (so 'all' does not select it), the
 * inventory does not list it, and --limit does not drop it: it is where the run itself happens
 * (PKI generation, say), not one of the hosts being managed. The 'all' group's connection vars
 * (ansible_user, ansible_become, …) are for the managed hosts, so they are left out: this runs as
 * the user who runs capstan, without sudo.
 */
function implicitLocalhost(inventory: Inventory): InventoryHost {
  const all = Object.entries(inventory.groups.get('all')?.vars ?? {}).filter(([key]) => !key.startsWith('ansible_'));
  return { name: IMPLICIT_LOCALHOST, vars: { ...structuredClone(Object.fromEntries(all)), ansible_connection: 'local' }, groups: [] };
}

/** Runs a playbook: plan (no connection), then plays in order; hosts in parallel; tasks in order per host. */
export async function runPlaybook(playbook: Playbook, settings: RunSettings): Promise<RunSummary> {
  // One confirmation for both passes: what the operator confirmed while planning holds for the run.
  const shared = { ...settings, confirmation: settings.confirmation ?? new Confirmation(settings) };
  await planPlaybook(playbook, shared);
  return new PlaybookRun(playbook, shared).run();
}

/** What `run --confirm` came to: applied (the apply pass's summary), or stopped before any change, and why. */
export type ConfirmedRun =
  | { outcome: 'applied'; summary: RunSummary }
  /** The check failed or was interrupted (its summary), found nothing to change, or the operator said no. */
  | { outcome: 'check-failed' | 'nothing-to-change' | 'declined'; summary: RunSummary };

/**
 * `run --confirm`: the check pass (taking each host's lock, as an applying run does, and keeping it),
 * the changes it found shown to `ask`, then — on yes — the apply pass in the same process over the
 * same connections, reusing the check's results where that is safe (runner/check-results.ts).
 * Nothing is applied when the check failed, found nothing, or `ask` says no. The playbook must have
 * been planned in apply mode already (its confirmations asked) before any host was contacted.
 */
export async function runConfirmed(playbook: Playbook, settings: RunSettings, ask: (changes: readonly CheckedChange[]) => Promise<boolean>): Promise<ConfirmedRun> {
  const shared = { ...settings, confirmation: settings.confirmation ?? new Confirmation(settings) };
  const results = new CheckResults();
  const check = new PlaybookRun(playbook, { ...shared, checkMode: true }, { takeLocks: true, record: results, keepOpen: true });
  let applying = false;
  try {
    const summary = await check.run();
    if (summary.exitCode !== 0) return { outcome: 'check-failed', summary };
    if (results.changes().length === 0) return { outcome: 'nothing-to-change', summary };
    if (!(await ask(results.changes())) || settings.signal?.aborted) return { outcome: 'declined', summary };
    applying = true;
    const apply = new PlaybookRun(playbook, { ...shared, checkMode: false }, { takeLocks: true, reuse: results, resources: check.resources });
    return { outcome: 'applied', summary: await apply.run() };
  } finally {
    if (!applying) await check.close();
  }
}

/** Connections, facts and locks of a run, handed from a --confirm check pass to its apply pass. */
interface RunResources {
  hosts: Map<string, Host>;
  views: Map<string, HostView>;
  locks: Map<string, Promise<HeldLock | undefined>>;
  /** Hosts found unreachable: their locks are left to expire. */
  unreachable: Set<string>;
}

interface PassOptions {
  /** Take each host's lock even in check mode (the check pass of --confirm). */
  takeLocks?: boolean;
  /** Keep connections and locks open at the end (for the apply pass that follows; then close()). */
  keepOpen?: boolean;
  /** Record each result (the check pass of --confirm). */
  record?: CheckResults;
  /** Reuse the check pass's results where safe (the apply pass of --confirm). */
  reuse?: CheckResults;
  resources?: RunResources;
}

class PlaybookRun {
  readonly resources: RunResources;
  readonly #hosts: Map<string, Host>;
  readonly #states = new Map<string, HostRunState>();
  readonly #views: Map<string, HostView>;
  readonly #recap: Record<string, HostRecap> = {};
  /** Hosts that dropped out (failed or unreachable); later plays leave them out. */
  readonly #dropped = new Set<string>();
  readonly #claims = new Map<string, { desired: string; where: string }>();
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #confirmation: Confirmation;
  /** Each host's lock (apply) or look at the lock (check), once per run. */
  readonly #locks: Map<string, Promise<HeldLock | undefined>>;
  /** Plays started so far: a play's place in the run, for reusing a check pass's results. */
  #plays = 0;
  /** Hosts changed (or reached from another host) in this pass: no check result is reused on them any more. */
  readonly #touched = new Set<string>();

  constructor(
    readonly playbook: Playbook,
    readonly settings: RunSettings,
    private readonly pass: PassOptions = {},
  ) {
    this.#limit = pLimit(Math.max(1, settings.forks));
    this.#confirmation = settings.confirmation ?? new Confirmation(settings);
    this.resources = pass.resources ?? { hosts: new Map(), views: new Map(), locks: new Map(), unreachable: new Set() };
    this.#hosts = this.resources.hosts;
    this.#views = this.resources.views;
    this.#locks = this.resources.locks;
  }

  /**
   * Releases the locks and closes the connections. An unreachable host's lock stays (reconnecting would
   * only delay the end); the next run from this controller takes it over, its process being gone, and
   * any other once its lease runs out.
   */
  async close(): Promise<void> {
    const reachable = [...this.#locks].filter(([name]) => !this.resources.unreachable.has(name));
    await Promise.allSettled(reachable.map(async ([, lock]) => (await lock)?.release()));
    await Promise.allSettled([...this.#hosts.values()].map((host) => host.close()));
  }

  async run(): Promise<RunSummary> {
    const emit = (event: RunEvent) => this.settings.reporter.emit(event);
    const started = performance.now();
    await emit({ type: 'start', playbook: this.playbook.name, check: this.settings.checkMode, hosts: this.settings.inventory.hosts.size });
    let aborted = false;
    let refused = false;
    try {
      await this.playbook.body(this.#context());
    } catch (error) {
      aborted = true;
      // Bad input the playbook found on the hosts (an upgrade's refused target) is exit 1, like bad input found before them.
      refused = error instanceof InputError;
      await emit({ type: 'error', message: errorMessage(error) });
    } finally {
      if (!this.pass.keepOpen) await this.close();
    }
    const durationMs = elapsedSince(started);
    await emit({ type: 'recap', hosts: this.#recap, durationMs, usage: this.#usage() });
    const values = Object.values(this.#recap);
    const exitCode = exitCodeOf({
      interrupted: this.settings.signal?.aborted === true,
      anyUnreachable: values.some((h) => h.unreachable),
      anyFailed: values.some((h) => h.failed > 0) || aborted,
      refusedUnchanged: refused && !values.some((h) => h.changed > 0 || h.failed > 0),
    });
    const failedHosts = Object.entries(this.#recap).filter(([, h]) => h.unreachable || h.failed > 0).map(([name]) => name);
    return { recap: this.#recap, exitCode, failedHosts, durationMs };
  }

  /** Per host contacted, what reaching it cost (the --confirm check pass included: the connections are shared). */
  #usage(): Record<string, HostUsage> {
    const usage: Record<string, HostUsage> = {};
    for (const [name, host] of this.#hosts) {
      const { connections, sessions, commands } = host.transport.usage;
      if (connections + sessions > 0) usage[name] = { connections, sessions, roundTrips: commands };
    }
    return usage;
  }

  #context(): PlaybookContext {
    return {
      checkMode: this.settings.checkMode,
      extraVars: this.settings.extraVars,
      inventory: this.settings.inventory,
      planning: false,
      confirm: (request) => this.#confirmation.require(request),
      report: (table) => {
        validateReportTable(table);
        void this.settings.reporter.emit({ type: 'report', ...table });
      },
      selectHosts: (pattern) => selectHosts(this.settings.inventory, pattern, this.settings.limit),
      play: (title, pattern, tasks, options) => this.#play(title, pattern, tasks, options ?? {}),
    };
  }

  async #play(title: string, pattern: string, tasks: Task<unknown>[], options: PlayOptions): Promise<PlayResult> {
    if (this.settings.signal?.aborted) throw new PlaybookError(`interrupted (Ctrl-C): play "${title}" and the plays after it were not started`);
    const started = performance.now();
    const playNumber = ++this.#plays;
    let hosts = selectHosts(this.settings.inventory, pattern, this.settings.limit).filter((h) => !this.#dropped.has(h.name));
    if (options.runOnce) hosts = hosts.slice(0, 1);
    const batches = serialBatches(hosts, options.serial);
    await this.settings.reporter.emit({
      type: 'play',
      title,
      pattern,
      hosts: hosts.map((h) => h.name),
      ...(batches.length > 1 ? { batches: batches.map((batch) => batch.map((h) => h.name)) } : {}),
    });
    const results = new Map<string, HostPlayResult>();
    for (const batch of batches) {
      await Promise.all(
        batch.map((host) =>
          this.#limit(async () => {
            if (!this.settings.signal?.aborted) results.set(host.name, await this.#runHost({ play: playNumber, playTitle: title }, host, tasks));
          }),
        ),
      );
      const failed = batch.filter((h) => {
        const status = results.get(h.name)?.status;
        return status === 'failed' || status === 'unreachable';
      });
      if (failed.length > 0 && options.anyErrorsFatal) {
        throw new PlaybookError(`play "${title}" failed on ${failed.map((h) => h.name).join(', ')} (anyErrorsFatal): stopping`);
      }
      if (options.maxFailPercent !== undefined && (failed.length / batch.length) * 100 > options.maxFailPercent) {
        throw new PlaybookError(`play "${title}": ${failed.length} of ${batch.length} hosts failed, over maxFailPercent ${options.maxFailPercent}: stopping`);
      }
    }
    await this.settings.reporter.emit({ type: 'play-end', title, durationMs: elapsedSince(started) });
    return new PlayResult(title, results);
  }

  /** The connected Host for an inventory name, made on first use and shared with its own plays. */
  async #hostNamed(name: string): Promise<Host> {
    const inventoryHost = this.settings.inventory.hosts.get(name);
    if (!inventoryHost) throw new InputError(`no host ${name} in ${this.settings.inventory.source}`, { host: name });
    const host = this.#hostFor(inventoryHost);
    await host.connect();
    return host;
  }

  /** The Host for an inventory host, made once per run (its connection is shared by every play and task). */
  #hostFor(inventoryHost: InventoryHost): Host {
    let host = this.#hosts.get(inventoryHost.name);
    if (!host) {
      host = this.settings.connect(inventoryHost);
      this.#hosts.set(inventoryHost.name, host);
    }
    return host;
  }

  #recapOf(name: string): HostRecap {
    return (this.#recap[name] ??= { ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: false });
  }

  async #view(inventoryHost: InventoryHost, host: Host): Promise<HostView> {
    let view = this.#views.get(inventoryHost.name);
    if (!view) {
      await host.connect();
      const facts = await host.facts();
      view = { name: inventoryHost.name, vars: { ...inventoryHost.vars, ...this.settings.extraVars }, facts };
      this.#views.set(inventoryHost.name, view);
    }
    return view;
  }

  async #runHost(play: Pick<TaskPlace, 'play' | 'playTitle'>, inventoryHost: InventoryHost, tasks: Task<unknown>[]): Promise<HostPlayResult> {
    const { playTitle } = play;
    const name = inventoryHost.name;
    const started = performance.now();
    const emit = (event: RunEvent) => this.settings.reporter.emit(event);
    const hostDone = () => emit({ type: 'host-done', host: name, play: playTitle, durationMs: elapsedSince(started) });
    const recap = this.#recapOf(name);
    const values = new Map<Task<unknown>, unknown>();
    let host: Host;
    let view: HostView;
    try {
      host = this.#hostFor(inventoryHost); // inside the try: bad connection vars fail this host, not the run
      view = await this.#view(inventoryHost, host);
    } catch (error) {
      if (error instanceof TransportError) return this.#unreachable(name, errorMessage(error), values, hostDone);
      // Not a network problem (a missing key file, a refused sudo): the host failed, with the reason.
      this.#dropped.add(name);
      recap.failed++;
      await emit({ type: 'task', host: name, task: 'connect', title: 'connect', status: 'failed', drift: [], message: errorMessage(error), durationMs: 0 });
      await hostDone();
      return { status: 'failed', values };
    }
    try {
      await this.#lock(inventoryHost, host);
    } catch (error) {
      if (error instanceof TransportError) return this.#unreachable(name, errorMessage(error), values, hostDone);
      this.#dropped.add(name);
      recap.failed++;
      await emit({ type: 'task', host: name, task: 'lock', title: 'host lock', status: 'failed', drift: [], message: errorMessage(error), durationMs: 0 });
      await hostDone();
      return { status: 'failed', values };
    }
    const state = this.#states.get(name) ?? { pendingChanges: [] };
    this.#states.set(name, state);
    let status: HostPlayResult['status'] = 'ok';
    const boundTasks = new Map<Task<unknown>, BoundTask>();
    const bind = (task: Task<unknown>) => {
      let bound = boundTasks.get(task);
      if (!bound) boundTasks.set(task, (bound = task.bind(view)));
      return bound;
    };
    const queue: { task: Task<unknown>; index: number; handler: boolean }[] = tasks.map((task, index) => ({ task, index, handler: false }));
    /** One round trip for the declared reads of the tasks still to run (see TaskSpec.probes). */
    const prefetch = async (from: number, extra: Probe[] = []) => {
      const probes = queue.slice(from).flatMap(({ task }) => {
        try {
          return task.options.when && !task.options.when(view) ? [] : bind(task).probes;
        } catch {
          return []; // a binding error is reported when the task runs
        }
      });
      await host.prefetch([...extra, ...probes]).catch(() => undefined);
    };
    const ledger = new HandlerLedger(host, this.settings.checkMode);
    // --confirm's apply pass: the tasks whose check result it reuses are not read again (runner/check-results.ts).
    const firstToRead = (): number => {
      if (!this.pass.reuse || this.#touched.has(name)) return 0;
      for (const [index, task] of tasks.entries()) {
        if (task.options.when && !task.options.when(view)) continue;
        let reused;
        try {
          reused = this.pass.reuse.reusable({ ...play, host: name, index }, bind(task));
        } catch {
          return index; // a binding error is reported when the task runs
        }
        if (reused?.status === 'changed') return tasks.length; // once it is applied, the tasks after it are read again
        if (reused?.status !== 'ok') return index;
      }
      return tasks.length;
    };
    const notified = await this.#pendingHandlers(name, tasks, bind, ledger, () => prefetch(firstToRead(), [PENDING_HANDLERS_PROBE]));
    const runOne = async (task: Task<unknown>, index: number): Promise<TaskOutcome | 'skipped'> => {
      if (task.options.when && !task.options.when(view)) return 'skipped';
      const bound = bind(task);
      // Static tasks were checked against each other at planning; per-host ones can only be checked now, against all.
      claim(this.#claims, name, bound, `play "${playTitle}" task ${index + 1}`);
      await emit({ type: 'task-start', host: name, task: bound.id, title: bound.title });
      const place: TaskPlace = { ...play, host: name, index };
      // --confirm's apply pass: the check's result holds until the host's first change (runner/check-results.ts).
      const reused = this.#touched.has(name) ? undefined : this.pass.reuse?.reusable(place, bound);
      const outcome: TaskOutcome =
        reused?.status === 'ok'
          ? { status: 'ok', drift: [], durationMs: 0, ...(reused.value === undefined ? {} : { value: reused.value }) }
          : await runTask(host, view, bound, {
              checkMode: this.settings.checkMode,
              state,
              log: (line) => void emit({ type: 'log', host: name, task: bound.id, line }),
              onHost: (other) => {
                this.#touched.add(other);
                return this.#hostNamed(other);
              },
              ...(reused?.status === 'changed' ? { checked: reused.drift } : {}),
            });
      if (outcome.status !== 'ok') this.#touched.add(name);
      this.pass.record?.record(place, bound, outcome);
      await emit({
        type: 'task',
        host: name,
        task: bound.id,
        title: bound.title,
        status: outcome.status,
        drift: outcome.drift,
        durationMs: outcome.durationMs,
        ...(outcome.message === undefined ? {} : { message: outcome.message }),
      });
      if (outcome.value !== undefined) values.set(task, outcome.value);
      return outcome;
    };
    for (let i = 0; i < queue.length; i++) {
      if (this.settings.signal?.aborted) {
        await emit({ type: 'log', host: name, task: '-', line: `interrupted: ${queue.length - i} task(s) not run` });
        break;
      }
      const { task, index, handler } = queue[i]!;
      let outcome: TaskOutcome | 'skipped';
      try {
        outcome = await runOne(task, index);
      } catch (error) {
        // Binding errors (per-host parameters invalid, conflicting ids) fail this host only.
        outcome = { status: 'failed', drift: [], message: errorMessage(error), durationMs: 0 };
        await emit({ type: 'task', host: name, task: `${task.kind}`, title: task.kind, status: 'failed', drift: [], message: errorMessage(error), durationMs: 0 });
      }
      if (outcome === 'skipped') {
        recap.skipped++;
        // A skipped last task must still let the handlers in: the check at the end of the loop is not reached.
        if (i === queue.length - 1 && notified.length > 0) queue.push(...notified.splice(0).map((h) => ({ task: h, index: -1, handler: true })));
        continue;
      }
      if (outcome.unreachable) {
        return this.#unreachable(name, outcome.message ?? 'connection lost', values, hostDone);
      }
      recap[outcome.status === 'changed' ? 'changed' : outcome.status === 'failed' ? 'failed' : 'ok']++;
      if (outcome.status === 'failed') {
        this.#dropped.add(name);
        status = 'failed';
        break;
      }
      if (handler) await this.#settle(name, () => ledger.done([bind(task).id]));
      if (outcome.status === 'changed') {
        status = 'changed';
        const fresh = (task.options.notify ?? []).filter((h) => !notified.includes(h));
        notified.push(...fresh);
        // Recorded on the host before anything else can fail, so the next run still runs them.
        await this.#settle(name, () => ledger.record(fresh.map((h) => bind(h).id)));
        if (!this.settings.checkMode) await prefetch(i + 1); // the host changed: re-read for the tasks left
      }
      // Handlers run once, after the play's own tasks, in notification order.
      if (i === queue.length - 1 && notified.length > 0) {
        queue.push(...notified.splice(0).map((h) => ({ task: h, index: -1, handler: true })));
      }
    }
    await hostDone();
    return { status, values };
  }

  /**
   * Before a host's first task: takes its lock (apply), or notes who holds it (check). Only hosts
   * reached over SSH: an `ansible_connection: local` host (the implicit localhost included) is the
   * controller itself, often run as a user who cannot write /var/lib/capstan.
   */
  #lock(inventoryHost: InventoryHost, host: Host): Promise<HeldLock | undefined> {
    const settings = this.settings.lock;
    if (!settings || inventoryHost.vars.ansible_connection === 'local') return Promise.resolve(undefined);
    const name = inventoryHost.name;
    let lock = this.#locks.get(name);
    if (!lock) {
      const notice = (line: string) => void this.settings.reporter.emit({ type: 'notice', host: name, line });
      lock = this.settings.checkMode && !this.pass.takeLocks
        ? lockHolderOf(host).then((held) => {
            if (held) notice(`locked by ${describeHolder(held.holder)}: another run is changing this host; this check sees it mid-way`);
            return undefined;
          }, () => undefined) // a look that fails must not fail a check; the next task meets the same problem
        : acquireLock(host, { ...settings, notice });
      this.#locks.set(name, lock);
    }
    return lock;
  }

  /**
   * Handlers of this play that an earlier run notified but never ran (recorded on the host). Also
   * makes the host's first batched read, which carries the ledger file with the tasks' own reads.
   */
  async #pendingHandlers(
    name: string,
    tasks: Task<unknown>[],
    bind: (task: Task<unknown>) => BoundTask,
    ledger: HandlerLedger,
    firstRead: () => Promise<void>,
  ): Promise<Task<unknown>[]> {
    await firstRead();
    const byId = new Map<string, Task<unknown>>();
    for (const handler of tasks.flatMap((t) => t.options.notify ?? [])) {
      try {
        byId.set(bind(handler).id, handler);
      } catch {
        // reported when the handler runs
      }
    }
    const pending = await ledger.load().catch(() => new Set<string>());
    const handlers = [...pending].flatMap((id) => (byId.has(id) ? [byId.get(id)!] : []));
    for (const handler of handlers) {
      await this.settings.reporter.emit({ type: 'log', host: name, task: bind(handler).id, line: 'handler notified by an earlier run that did not finish: it runs at the end of this play' });
    }
    return handlers;
  }

  /** Ledger writes must not fail the host's tasks; a failure is reported and the run goes on. */
  async #settle(name: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      await this.settings.reporter.emit({ type: 'log', host: name, task: '-', line: `could not update ${PENDING_HANDLERS_FILE}: ${errorMessage(error)}` });
    }
  }

  async #unreachable(name: string, message: string, values: Map<Task<unknown>, unknown>, hostDone: () => Promise<void> | void): Promise<HostPlayResult> {
    this.#dropped.add(name);
    this.#recapOf(name).unreachable = true;
    this.resources.unreachable.add(name);
    await this.settings.reporter.emit({ type: 'unreachable', host: name, message });
    await hostDone();
    return { status: 'unreachable', values };
  }
}

/** Milliseconds since a performance.now() reading, whole (the events' unit). */
function elapsedSince(started: number): number {
  return Math.round(performance.now() - started);
}
