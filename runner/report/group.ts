import type { RunEvent } from '../events.js';

type TaskEvent = Extract<RunEvent, { type: 'task' }>;

/** One task result shared by several hosts: the same status, message and drift (diffs included). */
export interface TaskGroup {
  hosts: string[];
  event: TaskEvent;
}

/** A task's n-th result on each host of a play, grouped by what was reported. */
interface Slot {
  /** The hosts expected to report this task: the play's, or the serial batch of the first that did. */
  expected: readonly string[];
  reported: Set<string>;
  groups: Map<string, TaskGroup>;
}

/**
 * Groups a play's task results across hosts, so that the same change with the same diff on several
 * hosts is shown once with the host list. Results come in as hosts report them (in parallel, in any
 * order); a task's groups are ready once every host expected to report it has done so or has finished
 * the play, and tasks come out in the order they were first reported. The grouping does not depend
 * on timing: a host that finished without reporting a task (it failed before, or skipped it) is not
 * waited for, and one still running always is.
 */
export class TaskGrouper {
  readonly #slots: { key: string; slot: Slot }[] = [];
  readonly #occurrences = new Map<string, number>();
  readonly #done = new Set<string>();

  /** `batches`: the play's hosts, one batch per serial step (hosts of different batches never wait for each other). */
  constructor(private readonly batches: readonly (readonly string[])[]) {}

  add(event: TaskEvent): void {
    const occurrence = (this.#occurrences.get(`${event.host}\0${event.task}`) ?? 0) + 1;
    this.#occurrences.set(`${event.host}\0${event.task}`, occurrence);
    const batch = this.batches.find((hosts) => hosts.includes(event.host)) ?? [event.host];
    // The same task on another batch is another slot: its hosts run after this batch has finished.
    const key = `${event.task}\0${occurrence}\0${this.batches.indexOf(batch)}`;
    let entry = this.#slots.find((s) => s.key === key);
    if (!entry) this.#slots.push((entry = { key, slot: { expected: batch, reported: new Set(), groups: new Map() } }));
    entry.slot.reported.add(event.host);
    const what = JSON.stringify([event.title, event.status, event.message ?? null, event.drift]);
    const group = entry.slot.groups.get(what);
    if (group) group.hosts.push(event.host);
    else entry.slot.groups.set(what, { hosts: [event.host], event });
  }

  /** The host will report nothing more in this play. */
  hostDone(host: string): void {
    this.#done.add(host);
  }

  /** The groups of the tasks every expected host has reported (or finished without), in order; each is given once. */
  ready(): TaskGroup[] {
    const out: TaskGroup[] = [];
    while (this.#slots.length) {
      const { slot } = this.#slots[0]!;
      if (!slot.expected.every((host) => slot.reported.has(host) || this.#done.has(host))) break;
      this.#slots.shift();
      out.push(...this.#ordered(slot));
    }
    return out;
  }

  /** Every group not given yet (the play ended or stopped). */
  rest(): TaskGroup[] {
    return this.#slots.splice(0).flatMap(({ slot }) => this.#ordered(slot));
  }

  /** A slot's groups, each with its hosts in the play's order (not the order they happened to finish in). */
  #ordered(slot: Slot): TaskGroup[] {
    const order = this.batches.flat();
    const rank = (host: string) => (order.includes(host) ? order.indexOf(host) : order.length);
    const groups = [...slot.groups.values()].map((g) => ({ ...g, hosts: [...g.hosts].sort((a, b) => rank(a) - rank(b)) }));
    return groups.sort((a, b) => rank(a.hosts[0]!) - rank(b.hosts[0]!));
  }
}
