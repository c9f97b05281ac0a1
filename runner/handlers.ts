import { sh } from './quote.js';
import type { Host } from './host.js';
import type { Probe } from './contract.js';

/** Where a host remembers handlers that were notified but have not run yet. */
export const PENDING_HANDLERS_FILE = '/var/lib/capstan/pending-handlers';
export const PENDING_HANDLERS_PROBE: Probe = { kind: 'read', path: PENDING_HANDLERS_FILE };

/**
 * The handlers notified on one host and not yet run, kept in a small file ON the host. A restart
 * notified by a config change is recorded before anything else can fail, so if a later task fails
 * (or the controller dies) the next run still restarts the service. (Ansible loses these:
 * ansible/ansible#10498.) In check mode the ledger is read but never written.
 */
export class HandlerLedger {
  #ids = new Set<string>();

  constructor(
    private readonly host: Host,
    private readonly checkMode: boolean,
  ) {}

  /** Handler ids left pending by an earlier run (the read is usually answered by the batched probe). */
  async load(): Promise<ReadonlySet<string>> {
    const cached = this.host.cached(PENDING_HANDLERS_PROBE);
    const content = cached?.kind === 'read' ? cached.content : await this.host.readFile(PENDING_HANDLERS_FILE);
    this.#ids = new Set(parseLedger(content?.toString('utf8') ?? ''));
    return this.#ids;
  }

  /** Records handler ids as pending, on the host, before the run goes on. */
  async record(ids: readonly string[]): Promise<void> {
    const fresh = ids.filter((id) => !this.#ids.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) this.#ids.add(id);
    if (!this.checkMode) await this.#save();
  }

  /** Forgets handlers that have run. */
  async done(ids: readonly string[]): Promise<void> {
    const known = ids.filter((id) => this.#ids.delete(id));
    if (known.length > 0 && !this.checkMode) await this.#save();
  }

  async #save(): Promise<void> {
    if (this.#ids.size === 0) {
      await this.host.run(sh`rm -f -- ${PENDING_HANDLERS_FILE}`);
      return;
    }
    await this.host.run(sh`mkdir -p -m 0700 /var/lib/capstan`);
    await this.host.writeFile(PENDING_HANDLERS_FILE, formatLedger([...this.#ids]), { mode: '0600' });
  }
}

/** One handler id per line; blank lines and # comments ignored (pure). */
export function parseLedger(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

export function formatLedger(ids: readonly string[]): string {
  return `# Handlers notified by Capstan that have not run yet; the next run runs them.\n${ids.map((id) => `${id}\n`).join('')}`;
}
