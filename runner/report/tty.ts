import { Listr, type ListrTaskWrapper } from 'listr2';
import type { Reporter, RunEvent } from '../events.js';
import { driftLines, escapeControl, finishedLine, recapTable, statusWord } from './format.js';
import { TaskGrouper } from './group.js';
import { profileLines, usageLines } from './profile.js';
import { tableLines } from './table.js';

interface Row {
  ok: number;
  changed: number;
  failed: number;
  done: () => void;
  fail: (message: string) => void;
  wrapper?: ListrTaskWrapper<unknown, never, never>;
  /** Notes and -v lines of this host, printed under its name when the play ends. */
  details: string[];
  current: string;
}

/**
 * Live view on a terminal: one listr2 row per host with its current task and ok/changed counts;
 * when the play ends, what changed (or failed) is printed under the names of the hosts it happened
 * on, the same change with the same diff on several hosts once (never interleaved).
 */
export class TtyReporter implements Reporter {
  #checkMode = false;
  #rows = new Map<string, Row>();
  #grouper?: TaskGrouper;
  #running?: Promise<unknown>;

  readonly #write: (text: string) => void;

  constructor(
    write: (text: string) => void,
    private readonly options: { diff: boolean; verbose: boolean },
  ) {
    this.#write = (text) => write(escapeControl(text));
  }

  async emit(event: RunEvent): Promise<void> {
    switch (event.type) {
      case 'start':
        this.#checkMode = event.check;
        this.#write(`PLAYBOOK ${event.playbook}${event.check ? ' (check mode: nothing will be changed)' : ''}\n`);
        break;
      case 'play':
        this.#startPlay(event.title, event.hosts);
        this.#grouper = new TaskGrouper(event.batches ?? [event.hosts]);
        break;
      case 'task-start': {
        const row = this.#rows.get(event.host);
        if (row) this.#update(event.host, row, event.title);
        break;
      }
      case 'task': {
        const row = this.#rows.get(event.host);
        if (!row) break;
        if (event.status === 'ok' || event.status === 'skipped') row.ok++;
        if (event.status === 'changed') row.changed++;
        if (event.status === 'failed') row.failed++;
        // An ok task's message is what it found for the operator (TaskSpec.report): shown as a change is.
        if (event.status === 'changed' || event.status === 'failed' || event.message) this.#grouper?.add(event);
        this.#update(event.host, row, event.title);
        if (event.status === 'failed') row.fail(escapeControl(`${event.title}: ${event.message ?? 'failed'}`));
        break;
      }
      case 'log':
        if (this.options.verbose) this.#rows.get(event.host)?.details.push(`    ${event.line}`);
        break;
      case 'notice': {
        const row = this.#rows.get(event.host);
        if (row) {
          row.details.push(`  NOTE | ${event.line}`);
          this.#update(event.host, row, event.line);
        } else {
          this.#write(`${event.host} | NOTE | ${event.line}\n`);
        }
        break;
      }
      case 'report':
        this.#write(`\n${tableLines(event).join('\n')}\n`);
        break;
      case 'unreachable':
        this.#rows.get(event.host)?.fail(escapeControl(`UNREACHABLE: ${event.message}`));
        break;
      case 'host-done': {
        const row = this.#rows.get(event.host);
        if (row?.wrapper) row.wrapper.title = escapeControl(`${event.host}  ${row.ok} ok, ${row.changed} ${this.#checkMode ? 'to change' : 'changed'}${row.failed ? `, ${row.failed} failed` : ''}`);
        row?.done();
        break;
      }
      case 'play-end':
        await this.#endPlay();
        break;
      case 'error':
        await this.#endPlay();
        this.#write(`ERROR: ${event.message}\n`);
        break;
      case 'recap':
        this.#write(`\nRECAP\n${[...recapTable(event.hosts), ...(event.profile ? [...profileLines(event.profile), ...usageLines(event.usage)] : []), finishedLine(event.durationMs)].join('\n')}\n`);
        break;
    }
  }

  #startPlay(title: string, hosts: string[]): void {
    this.#write(`\nPLAY [${title}]\n`);
    this.#rows.clear();
    // Rows exist before listr2 starts its tasks (it starts them asynchronously), so no event is lost.
    const finished = new Map<string, Promise<void>>();
    for (const host of hosts) {
      let done!: () => void;
      let fail!: (message: string) => void;
      finished.set(host, new Promise<void>((resolve, reject) => ((done = resolve), (fail = (m) => reject(new Error(m))))));
      this.#rows.set(host, { ok: 0, changed: 0, failed: 0, done, fail, details: [], current: '' });
    }
    const list = new Listr(
      hosts.map((host) => ({
        title: host,
        task: (_ctx: unknown, wrapper: ListrTaskWrapper<unknown, never, never>) => {
          const row = this.#rows.get(host)!;
          row.wrapper = wrapper;
          if (row.current) this.#update(host, row, row.current);
          return finished.get(host)!;
        },
      })),
      { concurrent: true, exitOnError: false },
    );
    for (const promise of finished.values()) promise.catch(() => undefined);
    this.#running = list.run().catch(() => undefined);
  }

  #update(host: string, row: Row, current: string): void {
    row.current = current;
    if (row.wrapper) row.wrapper.title = escapeControl(`${host}  ${row.ok} ok, ${row.changed} ${this.#checkMode ? 'to change' : 'changed'}  ▸ ${current}`);
  }

  async #endPlay(): Promise<void> {
    for (const row of this.#rows.values()) row.done();
    await this.#running;
    this.#running = undefined;
    this.#writeChanges();
    for (const [host, row] of this.#rows) {
      if (row.details.length) this.#write(`${host}\n${row.details.join('\n')}\n`);
    }
    this.#rows.clear();
  }

  /** The play's changes and failures, under a line naming their hosts (one line for consecutive results of the same hosts). */
  #writeChanges(): void {
    let header = '';
    const lines: string[] = [];
    for (const { hosts, event } of this.#grouper?.rest() ?? []) {
      if (hosts.join(', ') !== header) lines.push((header = hosts.join(', ')));
      const message = event.message ? `: ${event.message}` : '';
      lines.push(`  ${statusWord(event.status, this.#checkMode)} | ${event.title}${message}`, ...driftLines(event, this.options.diff));
    }
    this.#grouper = undefined;
    if (lines.length) this.#write(`${lines.join('\n')}\n`);
  }

  close(): Promise<void> {
    return this.#endPlay();
  }
}
