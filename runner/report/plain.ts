import type { Reporter, RunEvent } from '../events.js';
import { driftLines, escapeControl, finishedLine, recapTable, statusWord } from './format.js';
import { profileLines } from './profile.js';
import { tableLines } from './table.js';

/**
 * Plain lines for logs and pipes: every line starts with the host name, so lines from hosts running
 * in parallel stay readable when they interleave.
 */
export class PlainReporter implements Reporter {
  #checkMode = false;

  constructor(
    private readonly write: (text: string) => void,
    private readonly options: { diff: boolean; verbose: boolean },
  ) {}

  emit(event: RunEvent): void {
    const out = (line: string) => this.write(`${escapeControl(line)}\n`);
    switch (event.type) {
      case 'start':
        this.#checkMode = event.check;
        out(`PLAYBOOK ${event.playbook}${event.check ? ' (check mode: nothing will be changed)' : ''}`);
        break;
      case 'play':
        out(`\nPLAY [${event.title}] ${event.pattern} → ${event.hosts.length ? event.hosts.join(', ') : 'no hosts'}`);
        break;
      case 'task': {
        const message = event.message ? `: ${event.message.split('\n').join('\n    ')}` : '';
        out(`${event.host} | ${statusWord(event.status, this.#checkMode)} | ${event.title}${message}`);
        if (event.status === 'changed' || (event.status === 'failed' && event.drift.length)) {
          for (const line of driftLines(event, this.options.diff)) out(line);
        }
        break;
      }
      case 'log':
        if (this.options.verbose) out(`${event.host} |   ${event.line}`);
        break;
      case 'notice':
        out(`${event.host} | NOTE | ${event.line}`);
        break;
      case 'report':
        out('');
        for (const line of tableLines(event)) out(line);
        break;
      case 'unreachable':
        out(`${event.host} | UNREACHABLE | ${event.message}`);
        break;
      case 'error':
        out(`ERROR: ${event.message}`);
        break;
      case 'recap':
        out('\nRECAP');
        for (const line of recapTable(event.hosts)) out(line);
        for (const line of event.profile ? profileLines(event.profile) : []) out(line);
        out(finishedLine(event.durationMs));
        break;
      default:
        break;
    }
  }

  close(): void {}
}
