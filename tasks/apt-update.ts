/**
 * apt's package lists: which hosts changed a key or repository in this run (their lists are stale),
 * and the one `apt-get update` per host that refreshes them (see apt.ts for why it is not a plain handler).
 */
import { defineTask, raw, sh, type ApplyContext, type Command, type HostView, type Task, type TaskOptions } from '../runner/index.js';

/* ------------------------------------------------------------------ per-host apt state */

/** What changed on a host in this run that apt's package lists do not reflect yet. */
const staleLists = new WeakMap<HostView, Set<string>>();

export function markStale(host: HostView, reason: string): void {
  const reasons = staleLists.get(host) ?? new Set<string>();
  reasons.add(reason);
  staleLists.set(host, reasons);
}

export function staleReasons(host: HostView): string[] {
  return [...(staleLists.get(host) ?? [])];
}

export function clearStale(host: HostView): void {
  staleLists.delete(host);
}

/** Environment for every apt-get: no prompts, English messages (we match a few of them). */
export const APT_ENV = raw('DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8');
/** Wait for a dpkg lock held by unattended-upgrades or cloud-init instead of failing at once. */
export const LOCK_TIMEOUT = ['-o', 'DPkg::Lock::Timeout=300'];

/** `apt-get update` that fails when any source fails (`-o` is ignored by apt versions that lack it). */
export const APT_GET_UPDATE: Command = sh`${APT_ENV} apt-get update -q ${LOCK_TIMEOUT} -o APT::Update::Error-Mode=any`;

export async function runAptUpdate(ctx: ApplyContext): Promise<void> {
  const result = await ctx.exec(APT_GET_UPDATE);
  if (result.code !== 0) {
    const problems = `${result.stdout}\n${result.stderr}`.split('\n').filter((line) => /^(E|W|Err):/.test(line.trim()));
    throw new Error(`apt-get update failed (exit ${result.code}):\n${problems.join('\n') || tail(result.stderr)}`);
  }
  ctx.log('apt-get update: package lists refreshed');
  clearStale(ctx.host);
}

export function tail(text: string, lines = 15): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/* ------------------------------------------------------------------ aptUpdate */

let aptUpdateTask: Task<void> | undefined;

/**
 * Runs `apt-get update` on a host whose package lists are stale because a key or repository
 * changed earlier in this run (and no ensurePackages has refreshed them since); ok otherwise.
 * One shared task, so as a handler (ensureAptKey/ensureAptRepo notify it by default) it runs once
 * per host per play however many repositories changed.
 *
 * @example ensureAptRepo(kubernetesRepo('1.34.2').repo, { notify: [aptUpdate()] })
 */
export function aptUpdate(): Task<void> {
  aptUpdateTask ??= defineTask<Record<string, never>>(
    {
      kind: 'apt-update',
      id: () => 'apt-update',
      title: () => 'apt-get update',
      async check(ctx) {
        const reasons = staleReasons(ctx.host);
        return reasons.length ? [{ subject: 'package lists', current: `stale (${reasons.join(', ')} changed)`, desired: 'updated' }] : [];
      },
      async apply(ctx) {
        await runAptUpdate(ctx);
      },
    },
    {},
  );
  return aptUpdateTask;
}

/** The options with the shared aptUpdate handler added to `notify`. */
export function notifyingUpdate(options: TaskOptions = {}): TaskOptions {
  const handler = aptUpdate();
  const notify = options.notify ?? [];
  return { ...options, notify: notify.includes(handler as Task<unknown>) ? notify : [...notify, handler as Task<unknown>] };
}
