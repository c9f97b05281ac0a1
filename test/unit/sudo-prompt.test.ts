import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SudoPrompt } from '../../runner/transport/sudo-prompt.js';
import { LocalTransport } from '../../runner/transport/local.js';
import { Command, quote } from '../../runner/quote.js';

const NONCE = '0123456789abcdef0123';

/** Records what a dialogue writes to the command's stdin, in order, with `<EOF>` for the end. */
function recorder(): { input: { write(data: Buffer): void; end(data?: Buffer): void }; log: string[] } {
  const log: string[] = [];
  return {
    log,
    input: {
      write: (data) => log.push(data.toString()),
      end: (data) => {
        if (data && data.length > 0) log.push(data.toString());
        log.push('<EOF>');
      },
    },
  };
}

describe('sudo prompt dialogue', () => {
  it('sends the password only after the prompt marker, then stdin after the ready marker, and strips both', () => {
    const dialogue = new SudoPrompt('pw', 'INPUT\n', NONCE);
    const { input, log } = recorder();
    dialogue.start(input);
    expect(log).to.deep.equal([]);
    // The marker split over two chunks still counts once it is complete.
    expect(dialogue.stderr(Buffer.from('[capstan-sudo-prompt-0123'))).to.deep.equal(Buffer.alloc(0));
    expect(log).to.deep.equal([]);
    expect(dialogue.stderr(Buffer.from('456789abcdef0123]'))).to.deep.equal(Buffer.alloc(0));
    expect(log).to.deep.equal(['pw\n']);
    const shown = dialogue.stderr(Buffer.from(`[capstan-sudo-ready-${NONCE}]warning: x\n`));
    expect(log).to.deep.equal(['pw\n', 'INPUT\n', '<EOF>']);
    expect(shown.toString()).to.equal('warning: x\n');
    expect(dialogue.stderr(Buffer.from('more\n')).toString()).to.equal('more\n');
    expect(dialogue.end().toString()).to.equal('');
    expect(dialogue.asked).to.equal(true);
  });

  it('never sends the password when sudo does not prompt: stdin reaches the command intact', () => {
    const dialogue = new SudoPrompt('pw', 'INPUT\n', NONCE);
    const { input, log } = recorder();
    dialogue.start(input);
    expect(dialogue.stderr(Buffer.from(`[capstan-sudo-ready-${NONCE}]`)).toString()).to.equal('');
    expect(log).to.deep.equal(['INPUT\n', '<EOF>']);
    expect(dialogue.asked).to.equal(false);
  });

  it('closes stdin instead of repeating a wrong password, and keeps sudo\'s messages', () => {
    const dialogue = new SudoPrompt('wrong', undefined, NONCE);
    const { input, log } = recorder();
    dialogue.start(input);
    dialogue.stderr(Buffer.from(`[capstan-sudo-prompt-${NONCE}]`));
    dialogue.stderr(Buffer.from(`Sorry, try again.\n[capstan-sudo-prompt-${NONCE}]`));
    dialogue.stderr(Buffer.from('\nsudo: no password was provided\n'));
    expect(log).to.deep.equal(['wrong\n', '<EOF>']);
    expect(dialogue.end().toString()).to.equal('Sorry, try again.\n\nsudo: no password was provided\n');
  });

  it('makes a fresh random marker for every command', () => {
    const a = new SudoPrompt('pw', undefined);
    const b = new SudoPrompt('pw', undefined);
    expect(a.prompt).to.match(/^\[capstan-sudo-prompt-[0-9a-f]{24}\]$/);
    expect(a.prompt).not.to.equal(b.prompt);
    expect(a.ready).not.to.equal(b.ready);
    expect(a.prompt).not.to.include('%'); // sudo expands %u, %h, %p in prompts
  });

  describe('through a real pipe (LocalTransport) with a sudo-like program', () => {
    let dir: string;
    let fakeSudo: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'capstan-sudo-prompt-'));
      fakeSudo = join(dir, 'sudo');
      // Like `sudo -S -p PROMPT -- sh -c CMD`: asks (prompt on stderr, one line from stdin) unless
      // ASK=0 (cached credentials), checks the password, then runs the command with the rest of stdin.
      writeFileSync(
        fakeSudo,
        `#!/bin/sh\nprompt=$1; shift\nif [ "$ASK" != 0 ]; then printf '%s' "$prompt" >&2; IFS= read -r pw || exit 1; [ "$pw" = secret ] || { echo 'Sorry, try again.' >&2; exit 1; }; fi\nexec "$@"\n`,
        { mode: 0o755 },
      );
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    const run = async (ask: boolean, password: string) => {
      const dialogue = new SudoPrompt(password, 'line one\nline two\n');
      const inner = `${dialogue.readyCommand}; cat; echo done >&2`;
      const text = `ASK=${ask ? 1 : 0} ${quote(fakeSudo)} ${quote(dialogue.prompt)} sh -c ${quote(inner)}`;
      return new LocalTransport('local').exec(new Command(text, 'fake sudo cat'), { dialogue, timeoutMs: 10_000 });
    };

    it('prompting: the command reads exactly its stdin, not the password', async () => {
      const result = await run(true, 'secret');
      expect(result.code).to.equal(0);
      expect(result.stdout.toString()).to.equal('line one\nline two\n');
      expect(result.stderr.toString()).to.equal('done\n');
    });

    it('not prompting: the password is never written and stdin is intact', async () => {
      const result = await run(false, 'secret');
      expect(result.code).to.equal(0);
      expect(result.stdout.toString()).to.equal('line one\nline two\n');
      expect(result.stderr.toString()).to.equal('done\n');
    });

    it('a wrong password fails with sudo\'s message and no marker', async () => {
      const result = await run(true, 'nope');
      expect(result.code).to.equal(1);
      expect(result.stdout.toString()).to.equal('');
      expect(result.stderr.toString()).to.equal('Sorry, try again.\n');
    });
  });
});
