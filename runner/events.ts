/** Everything a run reports, as data: reporters (listr2, plain lines, JSON) only render these. */

export type TaskStatus = 'ok' | 'changed' | 'failed' | 'skipped';

/** A drift as shown to people and in JSON: secrets already replaced, file drift as a unified diff. */
export interface ShownDrift {
  subject: string;
  current?: string | null;
  desired?: string | null;
  pending?: string;
  /** Unified diff of a file's content (always computed; shown by humans only with --diff). */
  diff?: string;
}

export type RunEvent =
  | { type: 'start'; playbook: string; check: boolean; hosts: number }
  | { type: 'play'; title: string; pattern: string; hosts: string[] }
  | { type: 'task'; host: string; task: string; title: string; status: TaskStatus; drift: ShownDrift[]; message?: string; durationMs: number }
  | { type: 'task-start'; host: string; task: string; title: string }
  | { type: 'log'; host: string; task: string; line: string }
  /** Something the operator must see even without -v (a host lock waited for, taken over, or held by another run). */
  | { type: 'notice'; host: string; line: string }
  | { type: 'unreachable'; host: string; message: string }
  | { type: 'host-done'; host: string }
  | { type: 'play-end'; title: string }
  | { type: 'error'; message: string }
  | { type: 'recap'; hosts: Record<string, HostRecap> };

export interface HostRecap {
  ok: number;
  changed: number;
  failed: number;
  skipped: number;
  unreachable: boolean;
}

/** A sink for events. `emit` may be async (listr2 waits for its rows); the runner awaits it. */
export interface Reporter {
  emit(event: RunEvent): void | Promise<void>;
  close(): void | Promise<void>;
}
