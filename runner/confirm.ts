import { InputError } from './errors.js';

/** What a destructive playbook asks the operator before it changes anything. */
export interface ConfirmRequest {
  /** What will happen, in one sentence ("kubeadm reset on k8s-01, k8s-02: the cluster's state is deleted"). */
  action: string;
  /** What the operator must type (the cluster's name): a word they have to know, not "y". */
  answer: string;
}

/** Reads one line the operator types; resolves with null when there is no terminal to ask on. */
export type AskLine = (prompt: string) => Promise<string | null>;

/**
 * The operator's confirmation of a destructive run, asked once per `capstan run` however often the
 * playbook body runs (planning, then the run). Given by `-e confirm=<answer>`, or typed on a
 * terminal while planning, before any host is contacted. Without either, the run stops before
 * contact. `--check` asks nothing: it changes nothing.
 */
export class Confirmation {
  readonly #confirmed = new Set<string>();

  constructor(
    private readonly settings: { checkMode: boolean; extraVars: Readonly<Record<string, unknown>> },
    private readonly askLine: AskLine = async () => null,
  ) {}

  /** Resolves once confirmed; throws InputError (nothing changed) otherwise. */
  async require(request: ConfirmRequest): Promise<void> {
    if (this.settings.checkMode || this.#confirmed.has(request.answer)) return;
    const given = this.settings.extraVars.confirm;
    if (given !== undefined) {
      if (String(given) !== request.answer) {
        throw new InputError(`-e confirm=${String(given)} does not match "${request.answer}", so nothing was changed: ${request.action}`);
      }
      this.#confirmed.add(request.answer);
      return;
    }
    const typed = await this.askLine(`${request.action}\nType "${request.answer}" to go on: `);
    if (typed === null) {
      throw new InputError(`${request.action}: this needs a confirmation and there is no terminal to ask on; pass -e confirm=${request.answer} (nothing was changed)`);
    }
    if (typed.trim() !== request.answer) throw new InputError(`not confirmed ("${typed.trim()}" is not "${request.answer}"), so nothing was changed`);
    this.#confirmed.add(request.answer);
  }
}

/** Asks on the controlling terminal (stdin and stderr both TTYs), else answers null; Ctrl-C or Ctrl-D at the prompt answer null too. */
export const askOnTerminal: AskLine = async (prompt) => {
  if (!hasTerminal()) return null;
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise<string | null>((resolve) => {
    let answered = false;
    const answer = (value: string | null) => {
      if (answered) return;
      answered = true;
      rl.close();
      resolve(value);
    };
    rl.on('SIGINT', () => {
      process.stderr.write('\n');
      answer(null);
    });
    rl.on('close', () => answer(null));
    rl.question(prompt, (line) => answer(line));
  });
};

/** Whether there is a person to ask: stdin and stderr are both terminals (`run --confirm` needs one). */
export function hasTerminal(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

/**
 * `run --confirm`'s question, after the change table: true only for "y" or "yes" (any case). Enter,
 * anything else, Ctrl-C or Ctrl-D at the prompt, or no terminal, is no.
 */
export async function confirmApply(ask: AskLine = askOnTerminal): Promise<boolean> {
  const answer = await ask('apply these changes? [y/N] ');
  return answer !== null && /^y(es)?$/i.test(answer.trim());
}
