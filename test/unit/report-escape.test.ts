import { expect } from 'chai';
import type { RunEvent } from '../../runner/events.js';
import { JsonReporter } from '../../runner/report/json.js';
import { PlainReporter } from '../../runner/report/plain.js';
import { TtyReporter } from '../../runner/report/tty.js';

/** What a hostile or broken host can put in a message: clear screen, set the terminal title, a bell, a CSI sequence. */
const HOSTILE = 'boom\x1b[2J\x1b]0;pwned\x07 and \x9b31m tab\there\nsecond line\r';

const failed: RunEvent = { type: 'task', host: 'node1', task: 'command:x', title: 'run x', status: 'failed', drift: [], message: HOSTILE, durationMs: 1 };

describe('reporters: control characters from hosts are escaped for humans, raw in --json', () => {
  it('plain: escapes ESC, BEL, C1 and CR as \\xNN, keeps newlines and tabs', () => {
    let text = '';
    const reporter = new PlainReporter((t) => (text += t), { diff: false, verbose: true });
    reporter.emit({ type: 'start', playbook: 'p', check: false, hosts: 1 });
    reporter.emit(failed);
    reporter.emit({ type: 'log', host: 'node1', line: 'out\x1b[31mred' } as RunEvent);
    expect(text).to.equal(
      'PLAYBOOK p\n' +
        'node1 | FAILED | run x: boom\\x1b[2J\\x1b]0;pwned\\x07 and \\x9b31m tab\there\n    second line\\x0d\n' +
        'node1 |   out\\x1b[31mred\n',
    );
  });

  it('tty: the per-host details and errors carry no raw control characters', async () => {
    let text = '';
    const reporter = new TtyReporter((t) => (text += t), { diff: false, verbose: false });
    await reporter.emit({ type: 'play', title: 'p', pattern: 'all', hosts: ['node1'] });
    await reporter.emit(failed);
    await reporter.emit({ type: 'error', message: 'bad\x1b[2J' });
    await reporter.close();
    expect(text).to.include('  FAILED | run x: boom\\x1b[2J\\x1b]0;pwned\\x07 and \\x9b31m tab\there\nsecond line\\x0d');
    expect(text).to.include('ERROR: bad\\x1b[2J\n');
    expect(text).to.not.match(/[\x1b\x07\x9b\r]/);
  });

  it('--json keeps the message raw (JSON escapes it)', () => {
    let text = '';
    const reporter = new JsonReporter((t) => (text += t));
    reporter.emit(failed);
    const line = text.split('\n').find((l) => l.includes('"run x"'))!;
    expect(JSON.parse(line).message).to.equal(HOSTILE);
  });
});
