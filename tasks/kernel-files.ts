/**
 * What the kernel families share: the header of the files Capstan owns in /etc/modules-load.d and
 * /etc/sysctl.d, the claims a multi-key task makes, and byte-exact reads of those files.
 */
import type { CheckContext, TaskSpec } from '../runner/index.js';

/** The first line of every file Capstan owns in /etc/modules-load.d and /etc/sysctl.d. */
export const MANAGED_HEADER = '# Managed by Capstan';

/**
 * One identity a task claims beside its own id, with the state it wants there. A task that manages
 * several things (a sysctl drop-in with several keys) claims each, so that two tasks wanting
 * different values for one key can be rejected when the playbook loads. The engine checks only
 * `id` + `desired` today; `claims` on a spec is ready for it to check too (runner/run.ts `claim`).
 */
export interface Claim {
  id: string;
  desired: unknown;
}

export type SpecWithClaims<P, R = void> = TaskSpec<P, R> & { claims(params: P): Claim[] };

/** Reads a file as latin1 text, so that writing it back with `Buffer.from(text, 'latin1')` keeps every byte. */
export async function readBytesAsText(ctx: CheckContext, path: string): Promise<string | null> {
  const bytes = await ctx.readFile(path);
  return bytes === null ? null : bytes.toString('latin1');
}

export function decodeBase64(data: string): string {
  return Buffer.from(data, 'base64').toString('latin1');
}
