/** The public API for playbooks and task authors. */
export { playbook, PlayResult } from './playbook.js';
export type { Playbook, PlaybookContext, PlayOptions, HostPlayResult } from './playbook.js';
export type { ReportTable } from './events.js';
export { defineTask, Pending } from './task.js';
export type { Task, TaskSpec, TaskOptions, Drift, CheckContext, ApplyContext, HostView, PerHost, PerHostParams, BoundTask } from './task.js';
export { sh, raw, quote, Command } from './quote.js';
export { Secret, isSecret } from './secret.js';
export type { Facts } from './facts.js';
export type { FileStat, Probe, ProbeAnswer, RunOptions, RunResult, WriteOptions } from './contract.js';
export { CapstanError, InputError, TransportError, CommandError, TaskError, PlaybookError, RefusalError } from './errors.js';
export { writeLocalFileAtomic } from './local-file.js';
