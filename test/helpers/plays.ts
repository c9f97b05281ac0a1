import { Confirmation } from '../../runner/confirm.js';
import type { Inventory } from '../../runner/inventory/index.js';
import { PlayResult, type Playbook, type PlaybookContext, type PlayOptions } from '../../runner/playbook.js';

export interface RecordedPlay {
  title: string;
  pattern: string;
  /** Task ids; per-host tasks (bound only when a host is known) as `<kind>*`. */
  tasks: string[];
  options: PlayOptions;
}

/** Runs a playbook's body as the planning pass does (no host contacted) and records its plays. */
export async function plays(book: Playbook, inventory: Inventory, extraVars: Record<string, unknown> = {}): Promise<RecordedPlay[]> {
  const recorded: RecordedPlay[] = [];
  const confirmation = new Confirmation({ checkMode: false, extraVars }); // no terminal: only -e confirm= counts
  const ctx: PlaybookContext = {
    checkMode: false,
    planning: true,
    extraVars,
    inventory,
    confirm: (request) => confirmation.require(request),
    report: () => {},
    selectHosts: (pattern) => inventory.select(pattern),
    play: async (title, pattern, tasks, options = {}) => {
      recorded.push({ title, pattern, tasks: tasks.map((t) => t.static?.id ?? `${t.kind}*`), options });
      return new PlayResult(title, new Map(), true);
    },
  };
  await book.body(ctx);
  return recorded;
}
