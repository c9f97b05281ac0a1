/** Everything a run reports, as data: reporters (listr2, plain lines, JSON) only render these. */

export type TaskStatus = 'ok' | 'changed' | 'failed' | 'skipped';

/** A drift as shown to people and in JSON: secrets already replaced, file drift as a unified diff. */
/** A table a playbook shows the operator: a title, column names, and rows of cells in that order. */
export interface ReportTable {
  title: string;
  columns: string[];
  rows: string[][];
}

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
  /** `batches`: the play's serial batches, in order, when it has more than one (hosts of one batch run at once). */
  | { type: 'play'; title: string; pattern: string; hosts: string[]; batches?: string[][] }
  | { type: 'task'; host: string; task: string; title: string; status: TaskStatus; drift: ShownDrift[]; message?: string; durationMs: number }
  | { type: 'task-start'; host: string; task: string; title: string }
  | { type: 'log'; host: string; task: string; line: string }
  /** Something the operator must see even without -v (a host lock waited for, taken over, or held by another run). */
  | { type: 'notice'; host: string; line: string }
  /** A playbook's own table (status, certificate lifetimes, an upgrade plan): data in --json, aligned columns otherwise. */
  | ({ type: 'report' } & ReportTable)
  | { type: 'unreachable'; host: string; message: string }
  /** A host's part of a play is over; `durationMs` is its wall time in the play `play`. */
  | { type: 'host-done'; host: string; play: string; durationMs: number }
  /** `durationMs`: the play's wall time, from its start to its last host's end. */
  | { type: 'play-end'; title: string; durationMs: number }
  | { type: 'error'; message: string }
  /** The last event. `durationMs`: the whole run's wall time; `profile` with --profile. */
  | { type: 'recap'; hosts: Record<string, HostRecap>; durationMs: number; usage?: Record<string, HostUsage>; profile?: RunProfile };

/**
 * What reaching a host cost the run (runner/transport/types.ts TransportUsage): SSH connections,
 * sessions opened (each one sshd + PAM + a logind session on a systemd host) and round trips.
 */
export interface HostUsage {
  connections: number;
  sessions: number;
  roundTrips: number;
}

/** What --profile adds to the recap: the slowest tasks and each play's wall time, per host. */
export interface RunProfile {
  /** Slowest first; at most PROFILE_SLOWEST_TASKS (runner/report/profile.ts). */
  slowest: { host: string; task: string; title: string; durationMs: number }[];
  /** In the order the plays started; `durationMs` is missing for a play that stopped the playbook. */
  plays: { title: string; durationMs?: number; hosts: { host: string; durationMs: number }[] }[];
}

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
