import type { Facts } from './facts.js';
import type { FileStat, Probe, RunOptions, RunResult, WriteOptions } from './contract.js';
import type { Command } from './quote.js';
import type { Secret } from './secret.js';
import { InputError } from './errors.js';
import type { Prerequisite } from './prerequisites.js';

/** What a task sees of the host it is bound to: its name, merged inventory vars and facts. */
export interface HostView {
  name: string;
  vars: Record<string, unknown>;
  facts: Facts;
}

/** A parameter that is either a value or a function of the host (its vars and facts). */
export type PerHost<T> = T | ((host: HostView) => T);
export type PerHostParams<P> = { [K in keyof P]: PerHost<P[K]> };

export type DriftValue = string | Secret | null;

/**
 * One difference between a host and what a task wants. `current`/`desired` are short values
 * ("0644", "absent", the line), or whole file contents when `file` is set (rendered as a unified
 * diff with --diff). A Secret renders as ***. `pending` says the difference is predicted from a
 * change still pending in check mode ("would change (pending: …)").
 */
export interface Drift {
  subject: string;
  current?: DriftValue;
  desired?: DriftValue;
  file?: string;
  pending?: string;
}

/**
 * The read-only context `check` gets: probes, reads and stats. It has no write method, so a check
 * cannot change a host by construction; `probe` is for commands that only read.
 */
export interface CheckContext {
  host: HostView;
  /** True in --check: nothing will be applied. */
  checkMode: boolean;
  probe(command: Command, options?: RunOptions): Promise<RunResult>;
  readFile(path: string): Promise<Buffer | null>;
  readText(path: string): Promise<string | null>;
  stat(path: string): Promise<FileStat | null>;
  /**
   * Titles of the earlier changes on this host that this task waits for (check mode only; empty when
   * applying): those that provide what the task `needs`, or, when it declares no needs or none of them
   * is pending, every earlier change that would be made.
   */
  pendingChanges: readonly string[];
}

/** What `apply` gets: the check context plus commands that change things and atomic file writes. */
export interface ApplyContext extends CheckContext {
  /** Runs a command that must succeed (throws CommandError otherwise). */
  run(command: Command, options?: RunOptions): Promise<RunResult>;
  /** Runs a command and returns its result whatever the exit code. */
  exec(command: Command, options?: RunOptions): Promise<RunResult>;
  writeFile(path: string, content: string | Buffer | Secret, options?: WriteOptions): Promise<void>;
  /** A line of progress shown with -v. */
  log(line: string): void;
  /** Closes the connection and connects again, retrying until the timeout (for reboots). */
  reconnect(timeoutMs?: number): Promise<void>;
  /**
   * Another inventory host, over its own (shared, reused) connection: for work that spans hosts,
   * such as minting a join token on a control plane just before this host joins.
   */
  onHost(name: string): Promise<OtherHost>;
}

/** What a task may do on another host: run commands and read files. */
export interface OtherHost {
  name: string;
  run(command: Command, options?: RunOptions): Promise<RunResult>;
  exec(command: Command, options?: RunOptions): Promise<RunResult>;
  readFile(path: string): Promise<Buffer | null>;
}

/**
 * A task family: how to identify, check and converge one kind of thing. Parameters arrive already
 * resolved for the host (per-host functions called).
 */
export interface TaskSpec<P, R = void> {
  /** Family name, the prefix of every id: `file`, `line`, `sysctl`. */
  kind: string;
  /** Canonical identity: two tasks with the same id on one host must want the same state. */
  id(params: P): string;
  title(params: P): string;
  /** The desired state compared for conflicts between tasks of the same id; default: the params. */
  desired?(params: P): unknown;
  /**
   * Further identities this task owns beside its id, each with the state it wants — e.g. one per
   * sysctl key of a multi-key ensureSysctl — so conflicts are caught per key, not only per task.
   */
  claims?(params: P): { id: string; desired: unknown }[];
  /** Throws (any Error; its message is kept) when the parameters are invalid. Runs before any connection when possible. */
  validate?(params: P): void;
  check(ctx: CheckContext, params: P): Promise<Drift[]>;
  /**
   * The reads `check` will make (files, stats, read-only commands). Optional, and only a speed-up:
   * the engine makes the declared reads of all of a host's tasks in one round trip before checking,
   * and the check's own ctx.readFile/stat/probe calls are answered from that batch.
   */
  probes?(params: P): Probe[];
  apply(ctx: ApplyContext, params: P, drift: Drift[]): Promise<void>;
  /**
   * What the check needs that an earlier task may create (a program, a unit file, a started unit):
   * in --check, the pending change that provides it is the one this task waits for (runner/prerequisites.ts).
   */
  needs?(params: P): Prerequisite[];
  /** What applying this task creates beside the files its drift names (packages, a started kubelet). */
  provides?(params: P): Prerequisite[];
  /** Check again after apply and fail with "did not converge" if drift is left. Default true. */
  verify?: boolean | ((params: P) => boolean);
  /** A value for later plays (e.g. a cluster handle). In check mode after drift, the value is Pending. */
  result?(ctx: CheckContext, params: P): Promise<R>;
  /**
   * What the task found, for the operator (a table of certificate lifetimes, say), from its result:
   * shown beside the task's status even when it is in sync, and as the JSON event's `message`.
   */
  report?(value: R, params: P): string | undefined;
  /** Parameter names whose function values are real functions, not per-host values. */
  functionParams?: readonly (keyof P)[];
}

export interface TaskOptions {
  /** Handlers run once at the end of the play on a host where this task changed something. */
  notify?: Task<unknown>[];
  /** Run the task only on hosts where this is true; elsewhere it is reported as skipped. */
  when?: (host: HostView) => boolean;
  /** A title instead of the task's own. */
  title?: string;
}

/** A task resolved for one host. */
export interface BoundTask<R = unknown> {
  id: string;
  title: string;
  desired: unknown;
  /** Every identity the task owns with its desired state: its id, then TaskSpec.claims. */
  claims: { id: string; desired: unknown }[];
  verify: boolean;
  probes: Probe[];
  needs: Prerequisite[];
  provides: Prerequisite[];
  check(ctx: CheckContext): Promise<Drift[]>;
  apply(ctx: ApplyContext, drift: Drift[]): Promise<void>;
  result?(ctx: CheckContext): Promise<R>;
  report?(value: R): string | undefined;
}

/** A task in a playbook: parameters that may depend on the host, bound per host at run time. */
export interface Task<R = unknown> {
  readonly kind: string;
  /** The task bound without a host, when none of its parameters is per-host (validated at load). */
  readonly static?: BoundTask<R>;
  readonly options: TaskOptions;
  bind(host: HostView): BoundTask<R>;
}

/** A value a task could not produce yet because, in check mode, the change that makes it is pending. */
export class Pending {
  constructor(readonly reason: string) {}
  toString(): string {
    return `pending: ${this.reason}`;
  }
}

/**
 * Builds a task from a family spec and its (possibly per-host) parameters. Parameters without
 * per-host functions are validated here, when the playbook loads, before any connection.
 */
export function defineTask<P extends object, R = void>(
  spec: TaskSpec<P, R>,
  params: PerHostParams<P>,
  options: TaskOptions = {},
): Task<R> {
  const literal = new Set<PropertyKey>(spec.functionParams ?? []);
  const perHostKeys = Object.keys(params).filter(
    (key) => typeof (params as Record<string, unknown>)[key] === 'function' && !literal.has(key),
  );
  const bindResolved = (resolved: P): BoundTask<R> => {
    try {
      spec.validate?.(resolved);
    } catch (error) {
      throw new InputError(`invalid parameters for ${spec.kind} task: ${error instanceof Error ? error.message : String(error)}`, {
        task: safeTitle(spec, resolved),
      });
    }
    const id = spec.id(resolved);
    const desired = spec.desired ? spec.desired(resolved) : resolved;
    const bound: BoundTask<R> = {
      id,
      title: options.title ?? spec.title(resolved),
      desired,
      claims: ownedClaims(id, desired, spec.claims?.(resolved) ?? []),
      verify: typeof spec.verify === 'function' ? spec.verify(resolved) : (spec.verify ?? true),
      probes: spec.probes ? spec.probes(resolved) : [],
      needs: spec.needs?.(resolved) ?? [],
      provides: spec.provides?.(resolved) ?? [],
      check: (ctx) => spec.check(ctx, resolved),
      apply: (ctx, drift) => spec.apply(ctx, resolved, drift),
    };
    if (spec.result) bound.result = (ctx) => spec.result!(ctx, resolved);
    if (spec.report) bound.report = (value) => spec.report!(value, resolved);
    return bound;
  };
  const resolve = (host: HostView): P => {
    const out: Record<string, unknown> = { ...(params as Record<string, unknown>) };
    for (const key of perHostKeys) out[key] = (out[key] as (h: HostView) => unknown)(host);
    return out as P;
  };
  const staticTask = perHostKeys.length === 0 ? bindResolved(params as P) : undefined;
  return {
    kind: spec.kind,
    options,
    ...(staticTask ? { static: staticTask } : {}),
    bind: (host) => staticTask ?? bindResolved(resolve(host)),
  };
}

/** The task's own id claim, unless its spec claims that id itself (with a finer-grained desired state). */
function ownedClaims(id: string, desired: unknown, extra: { id: string; desired: unknown }[]): { id: string; desired: unknown }[] {
  return extra.some((claim) => claim.id === id) ? extra : [{ id, desired }, ...extra];
}

function safeTitle<P>(spec: TaskSpec<P, unknown>, params: P): string {
  try {
    return spec.title(params);
  } catch {
    return spec.kind;
  }
}
