import { randomBytes } from 'node:crypto';
import type { CommandInput, StdinDialogue } from './types.js';

/**
 * The stdin side of `sudo -S -p <marker> … sh -c 'printf <ready> >&2; <command>'`: the password is
 * written only when sudo prints the prompt marker on stderr, and the command's own stdin only once the
 * command runs (the ready marker, printed by the shell sudo started). When sudo does not ask (cached
 * credentials, NOPASSWD), the password is never sent and stdin reaches the command intact; before this,
 * the password was prepended to stdin and became the command's input whenever sudo did not read it.
 *
 * A second prompt means the password was wrong: stdin is closed instead of repeating it, so sudo fails
 * at once ("no password was provided") rather than waiting. Both markers are random per command (a host
 * cannot have prepared output that matches them) and are removed from the stderr handed back, which
 * therefore holds only what sudo and the command printed ("Sorry, try again.", the command's errors).
 *
 * @example
 * const dialogue = new SudoPrompt(password, Buffer.from('input'));
 * const text = `sudo -S -p ${quote(dialogue.prompt)} -- sh -c ${quote(`${dialogue.readyCommand}; cat`)}`;
 * await transport.exec(new Command(text, 'sudo … cat'), { dialogue });
 */
export class SudoPrompt implements StdinDialogue {
  /** What sudo prints when it wants the password (`-p`): letters, digits and dashes, no `%` escapes. */
  readonly prompt: string;
  /** What the command's shell prints on stderr before the command runs. */
  readonly ready: string;
  readonly #password: Buffer;
  readonly #stdin: Buffer;
  #input: CommandInput | undefined;
  /** Writes decided before `start` handed over the command's stdin (the transport calls it first; this is in case). */
  #queued: ((input: CommandInput) => void)[] = [];
  /** stderr received before the command started (sudo's part), searched for the markers. */
  #held = Buffer.alloc(0);
  #promptsSeen = 0;
  #running = false;
  #inputEnded = false;

  constructor(password: string | Buffer, stdin: string | Buffer | undefined, nonce = randomBytes(12).toString('hex')) {
    if (!/^[0-9a-f]{16,}$/.test(nonce)) throw new TypeError('the prompt nonce must be at least 16 hex digits');
    this.prompt = `[capstan-sudo-prompt-${nonce}]`;
    this.ready = `[capstan-sudo-ready-${nonce}]`;
    this.#password = Buffer.from(password);
    this.#stdin = stdin === undefined ? Buffer.alloc(0) : Buffer.from(stdin);
  }

  /** Shell text that announces the command (put it first in the `sh -c` script sudo runs). */
  get readyCommand(): string {
    return `printf '%s' '${this.ready}' >&2`;
  }

  /** True once sudo asked for the password (and it was sent). */
  get asked(): boolean {
    return this.#promptsSeen > 0;
  }

  start(input: CommandInput): void {
    this.#input = input;
    for (const send of this.#queued.splice(0)) send(input);
  }

  stderr(chunk: Buffer): Buffer {
    if (this.#running) return chunk;
    this.#held = Buffer.concat([this.#held, chunk]);
    const text = this.#held.toString('latin1');
    const prompts = count(text, this.prompt);
    if (text.includes(this.ready)) {
      this.#running = true;
      this.#promptsSeen = prompts;
      const held = this.#stripped();
      this.#endInput(this.#stdin);
      return held;
    }
    for (; this.#promptsSeen < prompts; this.#promptsSeen++) {
      if (this.#promptsSeen === 0) {
        const line = Buffer.concat([this.#password, Buffer.from('\n')]);
        this.#send((input) => input.write(line));
      } else {
        this.#endInput();
      }
    }
    return Buffer.alloc(0);
  }

  end(): Buffer {
    return this.#running ? Buffer.alloc(0) : this.#stripped();
  }

  /** The held stderr without the markers. */
  #stripped(): Buffer {
    const text = this.#held.toString('latin1').split(this.prompt).join('').replace(this.ready, '');
    this.#held = Buffer.alloc(0);
    return Buffer.from(text, 'latin1');
  }

  #endInput(data?: Buffer): void {
    if (this.#inputEnded) return;
    this.#inputEnded = true;
    this.#send((input) => input.end(data));
  }

  #send(action: (input: CommandInput) => void): void {
    if (this.#input) action(this.#input);
    else this.#queued.push(action);
  }
}

function count(text: string, needle: string): number {
  let found = 0;
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) found++;
  return found;
}
