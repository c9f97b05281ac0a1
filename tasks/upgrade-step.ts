/**
 * What every step of the upgrade (tasks/upgrade.ts, tasks/upgrade-node.ts) and of a removal (tasks/remove-node.ts) shares: the node it is
 * about, the target, where cluster-admin kubectl runs, and how a step says what it waits for in --check.
 */
import { sh, type CheckContext, type Command, type RunOptions, type RunResult } from '../runner/index.js';
import { ADMIN_CONF } from './kubeadm.js';

/** What every per-node step knows. */
export interface UpgradeStepParams {
  /** The node's name in the cluster. */
  node: string;
  /** The target, "v1.35.1". */
  version: string;
  /** The inventory name of the first control plane, where kubectl runs with admin.conf. */
  adminHost: string;
  /** In --check: the change on another host this step waits for ("kubeadm upgrade apply v1.35.1 on cp1"). */
  after?: string;
}

const VERSION = /^v\d+\.\d+\.\d+$/;
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** A Kubernetes node name (a DNS subdomain), as every step that names a node takes it. */
export function validateNodeName(node: unknown): void {
  if (typeof node !== 'string' || !NODE_NAME.test(node)) throw new Error(`node must be a Kubernetes node name, got ${JSON.stringify(node)}`);
}

/** kubectl drain's --timeout in seconds, when given: a whole number above 0. */
export function validateDrainTimeout(timeoutSeconds: number | undefined): void {
  if (timeoutSeconds !== undefined && !(Number.isInteger(timeoutSeconds) && timeoutSeconds > 0)) throw new Error(`timeoutSeconds must be a whole number > 0, got ${timeoutSeconds}`);
}

export function validateStep(p: UpgradeStepParams): void {
  validateNodeName(p.node);
  if (typeof p.version !== 'string' || !VERSION.test(p.version)) throw new Error(`version must be like v1.35.1, got ${JSON.stringify(p.version)}`);
  if (typeof p.adminHost !== 'string' || p.adminHost === '') throw new Error('adminHost must name the first control plane');
}

/** The pending note of a check-mode drift: the other host's change it follows, else the last earlier change on this host. */
export function pendingOf(ctx: CheckContext, p: { after?: string }): { pending?: string } {
  if (!ctx.checkMode) return {};
  // One cause is enough to read: the other host's change this node waits for, else the change just before on this host.
  const reason = p.after ?? ctx.pendingChanges.at(-1);
  return reason ? { pending: reason } : {};
}

export const admin = (args: ReturnType<typeof sh>) => sh`kubectl --kubeconfig=${ADMIN_CONF} ${args}`;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const tail = (text: string, lines = 12) => text.trim().split('\n').slice(-lines).join('\n');

/** After a failure past the drain: what the operator is told (the node is left cordoned, on purpose). */
export const stillCordoned = (node: string) =>
  `${node} is left cordoned and drained: run the same command again to finish its upgrade (it is uncordoned once Ready at the new version), or \`kubectl uncordon ${node}\` to put it back in service as it is`;

/**
 * `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…s` through `exec` (a
 * control plane with admin.conf), its output logged. When the drain fails (a PodDisruptionBudget,
 * a pod without a controller, the timeout) the node is uncordoned again, `afterUncordon` runs when
 * that worked, and an Error says what failed, `state(uncordoned)` (what the failure leaves), and what to do.
 */
export async function drainOrUncordon(
  exec: (command: Command, options?: RunOptions) => Promise<RunResult>,
  log: (line: string) => void,
  p: { node: string; timeoutSeconds: number; state: (uncordoned: boolean, uncordonError: string) => string; afterUncordon?: () => Promise<unknown> },
): Promise<void> {
  const drain = await exec(admin(sh`drain ${p.node} --ignore-daemonsets --delete-emptydir-data ${`--timeout=${p.timeoutSeconds}s`}`), { timeoutMs: (p.timeoutSeconds + 60) * 1000 });
  for (const line of `${drain.stdout}${drain.stderr}`.split('\n').filter(Boolean)) log(line);
  if (drain.code === 0) return;
  const uncordon = await exec(admin(sh`uncordon ${p.node}`));
  if (uncordon.code === 0) await p.afterUncordon?.();
  throw new Error(
    `kubectl drain ${p.node} failed (exit ${drain.code}):\n${tail(drain.stderr || drain.stdout)}\n` +
      `${p.state(uncordon.code === 0, uncordon.stderr.trim())}. Make the drain possible (a PodDisruptionBudget that allows an eviction, a controller for bare pods, or a longer drain_timeout), then run the same command again.`,
  );
}
