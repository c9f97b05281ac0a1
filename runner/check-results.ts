/**
 * `run --confirm` checks, shows the changes, asks, then applies in the same process. What the check
 * pass found is kept here, task by task, so the apply pass does not check everything again.
 *
 * Reuse is safe only while the check's view of a host is still the host's state: the run holds each
 * SSH host's lock from before its check to the end of its apply (no other Capstan run changes it in
 * between), and a result is reused only for tasks before the host's first change in the apply pass
 * (a change may alter what any later check reads). So, per host: the in-sync tasks before its first
 * change are reported from the check (no round trip), its first change is applied with the drift the
 * check found, then verified; every task after it is checked, applied and verified as in any run.
 * Drift that the check only predicted (pending an earlier change) and handlers are never reused.
 */
import type { TaskOutcome } from './engine.js';
import type { ShownDrift } from './events.js';
import type { BoundTask, Drift } from './task.js';

/** A change the check pass found: the rows of the change table shown before asking. */
export interface CheckedChange {
  play: string;
  host: string;
  task: string;
  title: string;
  drift: ShownDrift[];
  message?: string;
}

/** Where a task ran: the n-th play of the run (and its title), the host, and the task's position in the play (-1: a handler). */
export interface TaskPlace {
  play: number;
  playTitle: string;
  host: string;
  index: number;
}

/** A check-pass result the apply pass may use: in sync (with its value), or the drift to apply. */
export type Reusable = { status: 'ok'; value?: unknown } | { status: 'changed'; drift: Drift[] };

export class CheckResults {
  readonly #results = new Map<string, Reusable>();
  readonly #changes: CheckedChange[] = [];

  /** Keeps a check-pass outcome (handlers, index < 0, are not kept: they run only after a change). */
  record(place: TaskPlace, task: BoundTask, outcome: TaskOutcome): void {
    if (outcome.status === 'changed') {
      this.#changes.push({ play: place.playTitle, host: place.host, task: task.id, title: task.title, drift: outcome.drift, ...(outcome.message === undefined ? {} : { message: outcome.message }) });
    }
    const key = keyOf(place, task);
    if (key === undefined || place.index < 0) return;
    if (outcome.status === 'ok') this.#results.set(key, { status: 'ok', ...(outcome.value === undefined ? {} : { value: outcome.value }) });
    // Predicted drift (pending an earlier change) is a guess about a state that does not exist yet.
    if (outcome.status === 'changed' && outcome.found && !outcome.found.some((d) => d.pending !== undefined)) this.#results.set(key, { status: 'changed', drift: outcome.found });
  }

  /** The check's result for the same task with the same wanted state at the same place, if any. */
  reusable(place: TaskPlace, task: BoundTask): Reusable | undefined {
    const key = keyOf(place, task);
    return key === undefined ? undefined : this.#results.get(key);
  }

  /** Every change the check found, in the order it found them. */
  changes(): readonly CheckedChange[] {
    return this.#changes;
  }
}

/**
 * The same task means: the same play (its place and title), host and position, the same id and the
 * same wanted state — a task bound to a value that was Pending in the check differs, and is checked.
 */
function keyOf(place: TaskPlace, task: BoundTask): string | undefined {
  try {
    return JSON.stringify([place.play, place.playTitle, place.host, place.index, task.id, task.desired]);
  } catch {
    return undefined; // a wanted state that cannot be compared (a cycle): check it again
  }
}
