import { RefusalError, TaskError, TransportError, errorMessage } from './errors.js';
import { showDrift, describeDrift } from './drift.js';
import type { Host } from './host.js';
import type { ShownDrift, TaskStatus } from './events.js';
import { awaitedChanges, pathsIn, type PendingChange, type Prerequisite } from './prerequisites.js';
import { Pending, type ApplyContext, type BoundTask, type CheckContext, type Drift, type HostView } from './task.js';

/** What one task did on one host. */
export interface TaskOutcome {
  status: TaskStatus;
  drift: ShownDrift[];
  message?: string;
  value?: unknown;
  /** The host became unreachable during this task. */
  unreachable?: boolean;
  durationMs: number;
  /** The drift as the check found it (check mode): what an apply of the same state acts on. */
  found?: Drift[];
}

/** Per-host state carried from task to task within a run. */
export interface HostRunState {
  /** Titles of tasks that would change (check mode), in order: later checks may depend on them. */
  pendingChanges: string[];
  /** What each of those changes (by title) will provide; a title missing here provides nothing known. */
  provisions?: Map<string, readonly Prerequisite[]>;
}

/** The pending changes of a host with what each provides. */
function pendingOf(state: HostRunState): PendingChange[] {
  return state.pendingChanges.map((title) => ({ title, provides: state.provisions?.get(title) ?? [] }));
}

/** Records a change that --check predicts, with what it provides: its own declaration and the files its drift writes. */
function recordPending(state: HostRunState, task: BoundTask, drift: readonly Drift[]): void {
  state.pendingChanges.push(task.title);
  const files = drift.flatMap((d) => (d.file === undefined ? [] : [{ file: d.file }]));
  (state.provisions ??= new Map()).set(task.title, [...task.provides, ...files]);
}

/**
 * The read-only context: reads are answered from the host's prefetched batch when it has them.
 * `pendingChanges` are those the task waits for (see CheckContext.pendingChanges).
 */
export function checkContext(host: Host, view: HostView, checkMode: boolean, state: HostRunState, needs: readonly Prerequisite[] = []): CheckContext {
  const readFile = async (path: string) => {
    const hit = host.cached({ kind: 'read', path });
    return hit?.kind === 'read' ? hit.content : host.readFile(path);
  };
  return {
    host: view,
    checkMode,
    probe: async (command, options) => {
      const hit = options?.stdin === undefined ? host.cached({ kind: 'exec', command }) : undefined;
      return hit?.kind === 'exec' ? hit.result : host.exec(command, options);
    },
    readFile,
    readText: async (path) => (await readFile(path))?.toString('utf8') ?? null,
    stat: async (path) => {
      const hit = host.cached({ kind: 'stat', path });
      return hit?.kind === 'stat' ? hit.stat : host.stat(path);
    },
    pendingChanges: awaitedChanges(pendingOf(state), needs),
  };
}

function applyContext(host: Host, base: CheckContext, log: (line: string) => void, onHost: (name: string) => Promise<Host>): ApplyContext {
  return {
    ...base,
    run: (command, options) => host.run(command, options),
    exec: (command, options) => host.exec(command, options),
    writeFile: (path, content, options) => host.writeFile(path, content, options),
    log,
    reconnect: (timeoutMs) => host.reconnect(timeoutMs),
    onHost: async (name) => {
      const other = await onHost(name);
      other.invalidate(); // whatever it had prefetched may change now
      return {
        name,
        run: (command, options) => other.run(command, options),
        exec: (command, options) => other.exec(command, options),
        readFile: (path) => other.readFile(path),
      };
    },
  };
}

/**
 * The task contract: check → (check mode: report) → apply → check again. Drift left after apply
 * is a failure ("did not converge"). In check mode a check that fails while earlier tasks on the
 * host would change is reported as "would change (pending …)", because its failure may be caused
 * by a state those changes would create (a package not yet installed, a directory not yet made).
 * The pending reason names the changes the task waits for: those providing what it `needs` or a
 * file its error names (runner/prerequisites.ts), else every earlier change, since it may need any.
 */
export async function runTask(
  host: Host,
  view: HostView,
  task: BoundTask,
  options: {
    checkMode: boolean;
    state: HostRunState;
    log: (line: string) => void;
    onHost?: (name: string) => Promise<Host>;
    /**
     * The drift this run's own check pass found (`run --confirm`), nothing having changed on the host
     * since: applied as it is, without checking again. Verified after apply like any other.
     */
    checked?: Drift[];
  },
): Promise<TaskOutcome> {
  const started = Date.now();
  const done = (outcome: Omit<TaskOutcome, 'durationMs'>): TaskOutcome => ({ ...outcome, durationMs: Date.now() - started });
  const ctx = checkContext(host, view, options.checkMode, options.state, task.needs);
  let drift: Drift[];
  try {
    drift = options.checked ?? (await task.check(ctx));
  } catch (error) {
    if (error instanceof TransportError) return done({ status: 'failed', drift: [], message: errorMessage(error), unreachable: true });
    if (options.checkMode && options.state.pendingChanges.length > 0 && !(error instanceof RefusalError)) {
      const reason = awaitedChanges(pendingOf(options.state), [...task.needs, ...pathsIn(errorMessage(error))]).join(', ');
      recordPending(options.state, task, []);
      return done({
        status: 'changed',
        drift: [{ subject: 'would change', pending: reason }],
        message: `would change (pending: ${reason}); check could not run yet: ${firstLine(errorMessage(error))}`,
        value: new Pending(`${task.title} on ${view.name}`),
      });
    }
    return done({ status: 'failed', drift: [], message: `check failed: ${errorMessage(error)}` });
  }
  if (drift.length === 0) {
    try {
      return done({ status: 'ok', drift: [], ...(await resultOf(task, ctx)) });
    } catch (error) {
      return done({ status: 'failed', drift: [], message: `in sync, but its value could not be read: ${errorMessage(error)}`, ...(error instanceof TransportError ? { unreachable: true } : {}) });
    }
  }
  const shown = drift.map(showDrift);
  if (options.checkMode) {
    recordPending(options.state, task, drift);
    return done({ status: 'changed', drift: shown, value: new Pending(`${task.title} on ${view.name}`), found: drift });
  }
  try {
    host.invalidate(); // from here on the host changes: nothing read before may be trusted
    await task.apply(applyContext(host, ctx, options.log, options.onHost ?? noOtherHosts), drift);
    if (task.verify) {
      const left = await task.check(ctx);
      if (left.length > 0) {
        throw new TaskError(`did not converge: ${left.map((d) => describeDrift(showDrift(d))).join('; ')}`, { host: view.name, task: task.id });
      }
    }
    return done({ status: 'changed', drift: shown, ...(await resultOf(task, ctx)) });
  } catch (error) {
    const unreachable = error instanceof TransportError;
    return done({ status: 'failed', drift: shown, message: errorMessage(error), ...(unreachable ? { unreachable } : {}) });
  }
}

async function noOtherHosts(name: string): Promise<Host> {
  throw new TaskError(`no other hosts are reachable from here (asked for ${name})`);
}

async function resultOf(task: BoundTask, ctx: CheckContext): Promise<{ value?: unknown; message?: string }> {
  if (!task.result) return {};
  const value = await task.result(ctx);
  const message = task.report && !(value instanceof Pending) ? task.report(value) : undefined;
  return message ? { value, message } : { value };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}
