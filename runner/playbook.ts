import type { Inventory, InventoryHost } from './inventory/index.js';
import { Pending, type Task } from './task.js';
import type { ConfirmRequest } from './confirm.js';
import type { ReportTable } from './events.js';

/** How a play runs across its hosts. Data on the play, not flags inside one loop. */
export interface PlayOptions {
  /** Run on the first matched host only (kubeadm init). */
  runOnce?: boolean;
  /** Hosts per batch: a count, a percentage ("30%"), or a list of batch sizes ([1, "50%"]); control-plane joins use 1. */
  serial?: number | string | (number | string)[];
  /** Stop the playbook when more than this percentage of a batch's hosts failed. */
  maxFailPercent?: number;
  /** Stop the playbook when any host of this play failed. */
  anyErrorsFatal?: boolean;
}

export type HostPlayStatus = 'ok' | 'changed' | 'failed' | 'unreachable';

export interface HostPlayResult {
  status: HostPlayStatus;
  /** Values produced by tasks (see TaskSpec.result), by task. */
  values: Map<Task<unknown>, unknown>;
}

/**
 * What a play returns: per-host outcomes and task values, for later plays (the join command from an
 * init, say). During planning (the pass before any connection) it is empty.
 */
export class PlayResult {
  constructor(
    readonly title: string,
    readonly hosts: Map<string, HostPlayResult> = new Map(),
    readonly planned = false,
  ) {}

  get changed(): boolean {
    return [...this.hosts.values()].some((h) => h.status === 'changed');
  }

  get failedHosts(): string[] {
    return [...this.hosts].filter(([, h]) => h.status === 'failed' || h.status === 'unreachable').map(([name]) => name);
  }

  /** The value a task produced on a host (the first host that has one when `host` is omitted). */
  value<R>(task: Task<R>, host?: string): R | Pending | undefined {
    if (host !== undefined) return this.hosts.get(host)?.values.get(task) as R | Pending | undefined;
    for (const result of this.hosts.values()) {
      if (result.values.has(task)) return result.values.get(task) as R | Pending;
    }
    return this.planned ? new Pending(`${this.title} (not run yet)`) : undefined;
  }
}

export interface PlaybookContext {
  /**
   * Runs `tasks` in order on every host matching `pattern` (Ansible patterns), hosts in parallel.
   * Hosts that failed or were unreachable in earlier plays are left out.
   */
  play(title: string, pattern: string, tasks: Task<unknown>[], options?: PlayOptions): Promise<PlayResult>;
  /** True in --check. */
  readonly checkMode: boolean;
  /** Extra variables from the command line (-e key=value), over every inventory var. */
  readonly extraVars: Readonly<Record<string, unknown>>;
  readonly inventory: Inventory;
  /** True during the planning pass that validates the playbook before any connection. */
  readonly planning: boolean;
  /** Selects the inventory's hosts matching `pattern`, as a play would (--limit applied), in inventory order. */
  selectHosts(pattern: string): InventoryHost[];
  /**
   * For destructive playbooks: the operator must type `answer` on a terminal (asked once, while
   * planning, before any host is contacted) or pass `-e confirm=<answer>`; otherwise the run stops
   * with nothing changed. Resolves at once in --check.
   */
  confirm(request: ConfirmRequest): Promise<void>;
  /**
   * Shows the operator a table (what a read-only playbook found, the plan of a multi-step one): aligned
   * columns on the terminal, one `report` event in --json. Ignored while planning, shown in --check.
   * Cells are printed as given: never put a secret in one.
   */
  report(table: ReportTable): void;
}

export interface Playbook {
  readonly name: string;
  readonly body: (ctx: PlaybookContext) => Promise<void>;
}

/**
 * Declares a playbook. The body is plain TypeScript: loops, conditions and helpers are the
 * language's own. It runs twice: once to plan (validating every play and task before any host is
 * contacted; plays return empty results), then for real. So a body should not depend on side effects.
 *
 * @example
 * export default playbook('motd', async ({ play }) => {
 *   await play('message of the day', 'all', [ensureFile({ path: '/etc/motd', content: 'hello\n' })]);
 * });
 */
export function playbook(name: string, body: (ctx: PlaybookContext) => Promise<void>): Playbook {
  return { name, body };
}

/** Splits hosts into serial batches (Ansible's semantics: the last size repeats). Pure. */
export function serialBatches<T>(hosts: T[], serial: PlayOptions['serial']): T[][] {
  if (serial === undefined) return hosts.length ? [hosts] : [];
  const sizes = Array.isArray(serial) ? serial : [serial];
  const batches: T[][] = [];
  let index = 0;
  let step = 0;
  while (index < hosts.length) {
    const spec = sizes[Math.min(step, sizes.length - 1)]!;
    const size = batchSize(spec, hosts.length);
    batches.push(hosts.slice(index, index + size));
    index += size;
    step++;
  }
  return batches;
}

function batchSize(spec: number | string, total: number): number {
  if (typeof spec === 'number') return Math.max(1, Math.floor(spec));
  const match = /^(\d+(?:\.\d+)?)%$/.exec(spec.trim());
  if (match) return Math.max(1, Math.floor((Number(match[1]) / 100) * total));
  const count = Number(spec);
  if (Number.isFinite(count) && count > 0) return Math.floor(count);
  throw new Error(`serial must be a count or a percentage, not ${JSON.stringify(spec)}`);
}
