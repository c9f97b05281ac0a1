import type { Reporter, RunEvent } from '../events.js';

/**
 * One JSON object per line per event (--json). The last line is the recap:
 * {"type":"recap","hosts":{"<name>":{"ok":N,"changed":N,"failed":N,"skipped":N,"unreachable":false}},"durationMs":N,
 *  "usage":{"<name>":{"connections":N,"sessions":N,"roundTrips":N}}} (and "profile" with --profile).
 * Secrets were replaced before events were made; Secret.toJSON is a second guard.
 */
export class JsonReporter implements Reporter {
  /** With `diff` false, file diffs are left out of task events (a big file would make megabytes of JSON). */
  constructor(
    private readonly write: (text: string) => void,
    private readonly options: { diff: boolean } = { diff: true },
  ) {}

  emit(event: RunEvent): void {
    if (event.type === 'recap') {
      const hosts: Record<string, unknown> = {};
      for (const [name, h] of Object.entries(event.hosts)) {
        hosts[name] = { ok: h.ok, changed: h.changed, failed: h.failed, skipped: h.skipped, unreachable: h.unreachable };
      }
      this.write(
        `${JSON.stringify({ type: 'recap', hosts, durationMs: event.durationMs, ...(event.usage ? { usage: event.usage } : {}), ...(event.profile ? { profile: event.profile } : {}) })}\n`,
      );
      return;
    }
    if (event.type === 'task' && !this.options.diff) {
      this.write(`${JSON.stringify({ ...event, drift: event.drift.map(({ diff: _diff, ...rest }) => rest) })}\n`);
      return;
    }
    this.write(`${JSON.stringify(event)}\n`);
  }

  close(): void {}
}
