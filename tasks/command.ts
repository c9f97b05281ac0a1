import { Command, defineTask, sh, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireAbsolutePath } from './validate.js';

export interface CommandParams {
  /** What to run: an argv (each element quoted) or a command built with the `sh` template. */
  run: readonly string[] | Command;
  /** Skip when this path exists (the command creates it); checked again after running. */
  creates?: string;
  /** Skip when this path does not exist (the command removes it). */
  removes?: string;
  /** Skip when this read-only probe exits 0; it runs in --check too, so it must not change anything. */
  unless?: readonly string[] | Command;
  /** A title for output; default: the command itself. */
  name?: string;
}

function toCommand(value: readonly string[] | Command): Command {
  return value instanceof Command ? value : sh`${value}`;
}

/**
 * Runs a command unless its guard says the work is done. With a guard (`creates`, `removes`,
 * `unless`), check mode is honest — the guard is evaluated and the command reported as "would run"
 * only when needed — and after running, the guard must hold (else "did not converge"). Without a
 * guard the command runs on every apply and always reports changed: prefer a real task.
 *
 * @example command({ run: ['kubeadm', 'init', '--config', '/etc/kubernetes/kubeadm.yaml'], creates: '/etc/kubernetes/admin.conf' })
 */
export function command(params: PerHostParams<CommandParams>, options?: TaskOptions): Task<string> {
  return defineTask<CommandParams, string>(
    {
      kind: 'command',
      id: (p) => `command:${toCommand(p.run).display}`,
      title: (p) => p.name ?? `run ${toCommand(p.run).display}`,
      desired: (p) => ({ run: toCommand(p.run).display, creates: p.creates, removes: p.removes, unless: p.unless && toCommand(p.unless).display }),
      validate: (p) => {
        if (!(p.run instanceof Command) && (!Array.isArray(p.run) || p.run.length === 0 || !p.run.every((a) => typeof a === 'string'))) {
          throw new Error('run must be a non-empty argv array or a command built with sh``');
        }
        if (p.creates !== undefined) requireAbsolutePath('creates', p.creates);
        if (p.removes !== undefined) requireAbsolutePath('removes', p.removes);
      },
      verify: (p) => p.creates !== undefined || p.removes !== undefined || p.unless !== undefined,
      probes: (p) => [
        ...(p.creates !== undefined ? [{ kind: 'stat' as const, path: p.creates }] : []),
        ...(p.removes !== undefined ? [{ kind: 'stat' as const, path: p.removes }] : []),
        ...(p.unless !== undefined ? [{ kind: 'exec' as const, command: toCommand(p.unless) }] : []),
      ],
      async check(ctx, p) {
        if (p.creates !== undefined && (await ctx.stat(p.creates))) return [];
        if (p.removes !== undefined && !(await ctx.stat(p.removes))) return [];
        if (p.unless !== undefined && (await ctx.probe(toCommand(p.unless))).code === 0) return [];
        return [{ subject: 'run', desired: toCommand(p.run).display }];
      },
      async apply(ctx, p) {
        const result = await ctx.run(toCommand(p.run));
        for (const line of result.stdout.split('\n').filter(Boolean).slice(-20)) ctx.log(line);
      },
    },
    params,
    options,
  );
}
