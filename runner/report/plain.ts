import type { Reporter, RunEvent } from '../events.js';
import { driftLines, escapeControl, finishedLine, recapTable, statusWord } from './format.js';
import { TaskGrouper, type TaskGroup } from './group.js';
import { profileLines, usageLines } from './profile.js';
import { tableLines } from './table.js';

/**
 * Plain lines for logs and pipes: every line starts with the host names, so lines from hosts running
 * in parallel stay readable. The same result on several hosts of a play (same status, message and
 * drift) is one line naming them all — `k8s-01, k8s-02, k8s-03 | would change | sysctl …` — printed
 * once every host running that task has reported it; notes, -v lines and unreachable hosts print at once.
 */
export class PlainReporter implements Reporter {
  #checkMode = false;
  #grouper?: TaskGrouper;

  constructor(
    private readonly write: (text: string) => void,
    private readonly options: { diff: boolean; verbose: boolean },
  ) {}

  #out(line: string): void {
    this.write(`${escapeControl(line)}\n`);
  }

  emit(event: RunEvent): void {
    switch (event.type) {
      case 'start':
        this.#checkMode = event.check;
        this.#out(`PLAYBOOK ${event.playbook}${event.check ? ' (check mode: nothing will be changed)' : ''}`);
        break;
      case 'play':
        this.#flush(true);
        this.#grouper = new TaskGrouper(event.batches ?? [event.hosts]);
        this.#out(`\nPLAY [${event.title}] ${event.pattern} → ${event.hosts.length ? event.hosts.join(', ') : 'no hosts'}`);
        break;
      case 'task':
        if (this.#grouper) {
          this.#grouper.add(event);
          this.#flush(false);
        } else {
          this.#print({ hosts: [event.host], event });
        }
        break;
      case 'host-done':
        this.#grouper?.hostDone(event.host);
        this.#flush(false);
        break;
      case 'play-end':
        this.#flush(true);
        this.#grouper = undefined;
        break;
      case 'log':
        if (this.options.verbose) this.#out(`${event.host} |   ${event.line}`);
        break;
      case 'notice':
        this.#out(`${event.host} | NOTE | ${event.line}`);
        break;
      case 'report':
        this.#out('');
        for (const line of tableLines(event)) this.#out(line);
        break;
      case 'unreachable':
        this.#out(`${event.host} | UNREACHABLE | ${event.message}`);
        break;
      case 'error':
        this.#flush(true);
        this.#out(`ERROR: ${event.message}`);
        break;
      case 'recap':
        this.#flush(true);
        this.#out('\nRECAP');
        for (const line of recapTable(event.hosts)) this.#out(line);
        for (const line of event.profile ? [...profileLines(event.profile), ...usageLines(event.usage)] : []) this.#out(line);
        this.#out(finishedLine(event.durationMs));
        break;
      default:
        break;
    }
  }

  /** Prints the groups that are complete (`all`: every group, the play being over). */
  #flush(all: boolean): void {
    if (!this.#grouper) return;
    for (const group of all ? this.#grouper.rest() : this.#grouper.ready()) this.#print(group);
  }

  #print({ hosts, event }: TaskGroup): void {
    const message = event.message ? `: ${event.message.split('\n').join('\n    ')}` : '';
    this.#out(`${hosts.join(', ')} | ${statusWord(event.status, this.#checkMode)} | ${event.title}${message}`);
    if (event.status === 'changed' || (event.status === 'failed' && event.drift.length)) {
      for (const line of driftLines(event, this.options.diff)) this.#out(line);
    }
  }

  close(): void {
    this.#flush(true);
  }
}
