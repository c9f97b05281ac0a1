/**
 * Rebooting a host and waiting for it to come back (a new boot id), when a change needs it.
 */
import { defineTask, sh, TransportError, type ApplyContext, type CheckContext, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';

/** Debian's "reboot needed" flag (also read by unattended-upgrades and motd); `reboot({ ifRequired: true })` honours it. */
export const REBOOT_REQUIRED = '/run/reboot-required';

/** How ensureKernelCmdline titles start (reboot({ ifRequired }) recognises them among pending changes in check mode). */
export const CMDLINE_TITLE = 'kernel command line';

export const DEFAULT_REBOOT_TIMEOUT_MS = 600_000;

/**
 * Which boot the host is in: the kernel's boot id, and the start time of PID 1 (so a container
 * restarted by its host, whose kernel boot id stays, counts as rebooted too).
 */
export const BOOT_IDENTITY = sh`cat /proc/sys/kernel/random/boot_id && sed 's/^.*) //' /proc/1/stat | cut -d ' ' -f 20`;

/**
 * Reboots so that the SSH command returns before the connection drops: a systemd timer two seconds
 * out (or a detached `sleep 2; reboot` without systemd).
 */
export const REBOOT_COMMAND = sh`if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then exec systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot; else nohup sh -c 'sleep 2; exec reboot' >/dev/null 2>&1 & fi`;

async function bootIdentity(ctx: CheckContext): Promise<string> {
  const result = await ctx.probe(BOOT_IDENTITY);
  if (result.code !== 0) throw new Error(`cannot read the boot id: ${result.stderr.trim() || `exit ${result.code}`}`);
  return result.stdout.trim().split('\n').join(' ');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Reboots the host and waits until it answers again in a new boot (boot id changed), reconnecting
 * as often as needed; throws (TransportError: the host counts as unreachable) after `timeoutMs`.
 */
export async function rebootAndWait(ctx: ApplyContext, timeoutMs: number, pollMs = 2_000): Promise<void> {
  const before = await bootIdentity(ctx);
  const deadline = Date.now() + timeoutMs;
  ctx.log(`rebooting (boot ${before.split(' ')[0]})`);
  await ctx.run(REBOOT_COMMAND);
  for (;;) {
    await sleep(pollMs);
    const left = deadline - Date.now();
    if (left <= 0) throw new TransportError(`the host did not come back in a new boot within ${Math.round(timeoutMs / 1000)} s`);
    // A reconnect can succeed before the reboot has even started: only a new boot id ends the wait.
    await ctx.reconnect(left);
    let now: string;
    try {
      now = await bootIdentity(ctx);
    } catch (error) {
      if (error instanceof TransportError) continue; // the connection dropped as the host went down
      throw error;
    }
    if (now !== before) {
      ctx.log(`back in a new boot (${now.split(' ')[0]})`);
      return;
    }
  }
}

export function validateTimeout(timeoutMs: unknown): void {
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 1_000)) {
    throw new Error(`timeoutMs must be a number of milliseconds ≥ 1000, got ${JSON.stringify(timeoutMs)}`);
  }
}

export interface RebootParams {
  /** How long to wait for SSH in a new boot; default 600000 (10 minutes). */
  timeoutMs?: number;
  /** Reboot only when /run/reboot-required exists (set by ensureKernelCmdline, and by Debian packages). */
  ifRequired?: boolean;
}

/**
 * Reboots the host and waits for it: the reboot is scheduled so the SSH command returns first,
 * then Capstan reconnects until `timeoutMs` and verifies the boot id changed. Run it only when
 * needed: as a handler (`notify: [restart]` on the tasks that need it; handlers run once at the end
 * of the play where something changed), with `when`, or with `ifRequired` (Debian's
 * /run/reboot-required flag). Check mode reports "would change: reboot" and does nothing.
 *
 * @example
 * const restart = reboot({ timeoutMs: 300_000 });
 * await play('pi', 'pis', [ensureKernelCmdline({ add: ['cgroup_memory=1', 'cgroup_enable=memory'] }, { notify: [restart] })]);
 * @example reboot({ ifRequired: true })
 */
export function reboot(params: PerHostParams<RebootParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<RebootParams>(
    {
      kind: 'reboot',
      id: () => 'reboot',
      title: (p) => (p.ifRequired ? 'reboot if required' : 'reboot'),
      validate: (p) => validateTimeout(p.timeoutMs),
      // apply verifies the new boot itself; a check after it would want to reboot again.
      verify: false,
      async check(ctx, p) {
        if (p.ifRequired) {
          if (await ctx.stat(REBOOT_REQUIRED)) return [{ subject: 'reboot', current: `required (${REBOOT_REQUIRED})`, desired: 'rebooted' }];
          // Check mode: an earlier kernel command line change would set the flag.
          const pending = ctx.pendingChanges.filter((title) => title.startsWith(CMDLINE_TITLE));
          return pending.length ? [{ subject: 'reboot', desired: 'rebooted', pending: pending.join(', ') }] : [];
        }
        return [{ subject: 'reboot', current: `boot ${(await bootIdentity(ctx)).split(' ')[0]}`, desired: 'a new boot' }];
      },
      apply: (ctx, p) => rebootAndWait(ctx, p.timeoutMs ?? DEFAULT_REBOOT_TIMEOUT_MS),
    },
    params,
    options,
  );
}
