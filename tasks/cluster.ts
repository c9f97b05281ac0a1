import { sh } from '../runner/quote.js';
import { defineTask, type CheckContext, type PerHostParams, type Task, type TaskOptions } from '../runner/task.js';
import { ADMIN_CONF } from './kubeadm.js';

const kubectl = (args: ReturnType<typeof sh>) => sh`kubectl --kubeconfig=${ADMIN_CONF} ${args}`;

/** Runs a read-only kubectl query that must succeed; its stdout. */
async function query(ctx: CheckContext, args: ReturnType<typeof sh>): Promise<string> {
  const result = await ctx.probe(kubectl(args));
  if (result.code !== 0) throw new Error(`kubectl ${args.display} failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  return result.stdout;
}

/** "name=Ready name2=NotReady" lines from `kubectl get nodes -o jsonpath` (pure). */
export function parseNodeReadiness(text: string): Map<string, boolean> {
  const nodes = new Map<string, boolean>();
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [name, ready] = line.split(' ');
    if (name) nodes.set(name, ready === 'True');
  }
  return nodes;
}

const READY_JSONPATH = `{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}`;
const TAINT_KEY = 'node-role.kubernetes.io/control-plane';
const TAINTS_JSONPATH = `{range .items[*]}{.metadata.name}{" "}{.spec.taints[*].key}{"\\n"}{end}`;

/**
 * Removes the control-plane NoSchedule taint from every node (seed 002:
 * `kubectl taint nodes --all node-role.kubernetes.io/control-plane-`), so a small cluster schedules
 * workloads on its control planes. Run with `runOnce` on a control plane.
 *
 * @example untaintControlPlanes()
 */
export function untaintControlPlanes(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'untaint',
      id: () => 'untaint-control-planes',
      title: () => 'control planes schedulable (no control-plane taint)',
      async check(ctx) {
        const tainted = (await query(ctx, sh`get nodes -o ${`jsonpath=${TAINTS_JSONPATH}`}`))
          .split('\n')
          .filter((l) => l.split(' ').slice(1).includes(TAINT_KEY))
          .map((l) => l.split(' ')[0]!);
        return tainted.length ? [{ subject: 'tainted nodes', current: tainted.join(', '), desired: 'none' }] : [];
      },
      async apply(ctx) {
        await ctx.run(kubectl(sh`taint nodes --all ${`${TAINT_KEY}-`}`));
      },
    },
    {},
    options,
  );
}

export interface WaitForNodesParams {
  /** How long to wait, in seconds (default 300). */
  timeoutSeconds?: number;
  /** How many nodes must exist and be Ready (default: all that are registered). */
  expected?: number;
}

/**
 * Waits until every node is Ready (after the CNI is up), like
 * `kubectl wait --for=condition=Ready nodes --all`. In sync when all are Ready already.
 *
 * @example waitForNodesReady({ timeoutSeconds: 300, expected: 3 })
 */
export function waitForNodesReady(params: PerHostParams<WaitForNodesParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<WaitForNodesParams>(
    {
      kind: 'nodes-ready',
      id: () => 'nodes-ready',
      title: (p) => `nodes Ready${p.expected ? ` (${p.expected})` : ''}`,
      validate: (p) => {
        if (p.timeoutSeconds !== undefined && !(p.timeoutSeconds > 0)) throw new Error('timeoutSeconds must be positive');
      },
      async check(ctx, p) {
        const nodes = parseNodeReadiness(await query(ctx, sh`get nodes -o ${`jsonpath=${READY_JSONPATH}`}`));
        const notReady = [...nodes].filter(([, ready]) => !ready).map(([name]) => name);
        const drift = [];
        if (notReady.length) drift.push({ subject: 'nodes not Ready', current: notReady.join(', '), desired: 'none' });
        if (p.expected !== undefined && nodes.size < p.expected) drift.push({ subject: 'nodes registered', current: String(nodes.size), desired: String(p.expected) });
        return drift;
      },
      async apply(ctx, p) {
        const deadline = Date.now() + (p.timeoutSeconds ?? 300) * 1000;
        for (;;) {
          const nodes = parseNodeReadiness((await ctx.run(kubectl(sh`get nodes -o ${`jsonpath=${READY_JSONPATH}`}`))).stdout);
          const ready = [...nodes.values()].filter(Boolean).length;
          if (ready === nodes.size && nodes.size >= (p.expected ?? 0)) return;
          if (Date.now() > deadline) throw new Error(`${ready} of ${nodes.size} nodes Ready after ${p.timeoutSeconds ?? 300} s`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      },
    },
    params,
    options,
  );
}

/** Seed 000's smoke test: an nginx Deployment with 3 replicas. */
export const SMOKE_TEST_MANIFEST = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: capstan-smoke-nginx
  namespace: default
  labels:
    app: capstan-smoke-nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: capstan-smoke-nginx
  template:
    metadata:
      labels:
        app: capstan-smoke-nginx
    spec:
      containers:
        - name: nginx
          image: nginx:stable
          ports:
            - containerPort: 80
`;

/** Pods of the smoke-test deployment in phase Running. */
async function runningReplicas(ctx: CheckContext): Promise<number> {
  const result = await ctx.probe(kubectl(sh`get pods -l app=capstan-smoke-nginx -o ${`jsonpath={range .items[*]}{.status.phase}{"\\n"}{end}`}`));
  return result.code === 0 ? result.stdout.split('\n').filter((phase) => phase.trim() === 'Running').length : 0;
}

/** "pod node" lines → pods per node (pure). */
export function podsPerNode(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const node = line.split(' ')[1] || '(unscheduled)';
    counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  return counts;
}

/**
 * Deploys nginx with 3 replicas (seed 000's smoke test), waits until they run, and reports how
 * many pods landed on each node. In sync when the deployment has 3 available replicas.
 *
 * @example smokeTest()
 */
export function smokeTest(params: PerHostParams<{ timeoutSeconds?: number }> = {}, options?: TaskOptions): Task<Record<string, number>> {
  return defineTask<{ timeoutSeconds?: number }, Record<string, number>>(
    {
      kind: 'smoke-test',
      id: () => 'smoke-test',
      title: () => 'smoke test: nginx, 3 replicas',
      async check(ctx) {
        const running = await runningReplicas(ctx);
        return running >= 3 ? [] : [{ subject: 'running nginx replicas', current: String(running), desired: '3' }];
      },
      async apply(ctx, p) {
        await ctx.run(kubectl(sh`apply -f -`), { stdin: SMOKE_TEST_MANIFEST });
        const deadline = Date.now() + (p.timeoutSeconds ?? 300) * 1000;
        for (;;) {
          const running = await runningReplicas(ctx);
          if (running >= 3) return;
          if (Date.now() > deadline) throw new Error(`${running} of 3 nginx replicas running after ${p.timeoutSeconds ?? 300} s`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      },
      async result(ctx) {
        const pods = await ctx.probe(kubectl(sh`get pods -l app=capstan-smoke-nginx -o ${`jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{"\\n"}{end}`}`));
        return Object.fromEntries(podsPerNode(pods.stdout));
      },
    },
    params,
    options,
  );
}
