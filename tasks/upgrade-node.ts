/**
 * The node's own steps of kubeadm's upgrade (see tasks/upgrade.ts for the whole procedure): cordon,
 * drain, restart the kubelet and wait for Ready at the new version, uncordon.
 */
import { defineTask, sh, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { readOwnNode, UPGRADE_CORDON_MARKER } from './upgrade-facts.js';
import { admin, drainOrUncordon, pendingOf, sleep, stillCordoned, validateDrainTimeout, validateStep, type UpgradeStepParams } from './upgrade-step.js';

/* ------------------------------------------------------------------ cordon, drain, uncordon */

/**
 * Cordons the node for its upgrade (`kubectl cordon`, on the first control plane), after writing
 * {@link UPGRADE_CORDON_MARKER} on it. In sync when its kubelet already runs the target, or it is
 * cordoned already (by an interrupted run, or by its operator: then it is left cordoned afterwards).
 *
 * @example cordonForUpgrade({ node: 'worker1', version: 'v1.35.1', adminHost: 'cp1' })
 */
export function cordonForUpgrade(params: PerHostParams<UpgradeStepParams>, options?: TaskOptions): Task<void> {
  return defineTask<UpgradeStepParams>(
    {
      kind: 'upgrade-cordon',
      id: () => 'upgrade-cordon',
      title: (p) => `cordon ${p.node}`,
      validate: validateStep,
      async check(ctx, p) {
        const node = await readOwnNode(ctx, p.node);
        if (node.kubeletVersion === p.version || node.unschedulable) return [];
        return [{ subject: 'scheduling', current: 'schedulable', desired: 'cordoned', ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        await ctx.run(sh`mkdir -p -m 0755 /var/lib/capstan`);
        await ctx.writeFile(UPGRADE_CORDON_MARKER, `${p.version}\n`, { mode: '0644' });
        const admin_ = await ctx.onHost(p.adminHost);
        ctx.log((await admin_.run(admin(sh`cordon ${p.node}`))).stdout.trim());
      },
    },
    params,
    options,
  );
}

export interface DrainParams extends UpgradeStepParams {
  /** kubectl drain's --timeout, in seconds (default 300). */
  timeoutSeconds?: number;
}

/**
 * `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…s` on the first control
 * plane. When the drain fails (a PodDisruptionBudget, a pod without a controller, the timeout) the
 * node is uncordoned again and the run stops, saying so and what to do. Drift while the node's
 * kubelet is not at the target (a drained node has nothing to read back: not verified).
 *
 * @example drainForUpgrade({ node: 'worker1', version: 'v1.35.1', adminHost: 'cp1', timeoutSeconds: 300 })
 */
export function drainForUpgrade(params: PerHostParams<DrainParams>, options?: TaskOptions): Task<void> {
  return defineTask<DrainParams>(
    {
      kind: 'upgrade-drain',
      id: () => 'upgrade-drain',
      title: (p) => `drain ${p.node}`,
      validate: (p) => {
        validateStep(p);
        validateDrainTimeout(p.timeoutSeconds);
      },
      verify: false,
      async check(ctx, p) {
        const node = await readOwnNode(ctx, p.node);
        return node.kubeletVersion === p.version ? [] : [{ subject: 'pods', current: `running on ${p.node}`, desired: 'evicted (DaemonSets stay)', ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        const other = await ctx.onHost(p.adminHost);
        await drainOrUncordon((command, options) => other.exec(command, options), (line) => ctx.log(line), {
          node: p.node,
          timeoutSeconds: p.timeoutSeconds ?? 300,
          afterUncordon: () => ctx.exec(sh`rm -f -- ${UPGRADE_CORDON_MARKER}`),
          state: (uncordoned, why) => (uncordoned ? `${p.node} was uncordoned; its kubelet was not upgraded` : `${p.node} is STILL CORDONED (kubectl uncordon failed: ${why})`),
        });
      },
    },
    params,
    options,
  );
}

/**
 * Uncordons a node that {@link cordonForUpgrade} cordoned (its marker is there), once it is
 * upgraded, and removes the marker. A node its operator cordoned is left as it was.
 *
 * @example uncordonAfterUpgrade({ node: 'worker1', version: 'v1.35.1', adminHost: 'cp1' })
 */
export function uncordonAfterUpgrade(params: PerHostParams<UpgradeStepParams>, options?: TaskOptions): Task<void> {
  return defineTask<UpgradeStepParams>(
    {
      kind: 'upgrade-uncordon',
      id: () => 'upgrade-uncordon',
      title: (p) => `uncordon ${p.node}`,
      validate: validateStep,
      async check(ctx, p) {
        const marker = await ctx.stat(UPGRADE_CORDON_MARKER);
        if (marker !== null) return [{ subject: 'scheduling', current: 'cordoned for the upgrade', desired: 'schedulable', ...pendingOf(ctx, p) }];
        // In --check the cordon before it is only pending: the node would be cordoned, then uncordoned.
        return ctx.checkMode && ctx.pendingChanges.some((title) => title === `cordon ${p.node}`)
          ? [{ subject: 'scheduling', current: 'cordoned for the upgrade', desired: 'schedulable', ...pendingOf(ctx, p) }]
          : [];
      },
      async apply(ctx, p) {
        const other = await ctx.onHost(p.adminHost);
        ctx.log((await other.run(admin(sh`uncordon ${p.node}`))).stdout.trim());
        await ctx.run(sh`rm -f -- ${UPGRADE_CORDON_MARKER}`);
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ the kubelet */

export interface KubeletRestartParams extends UpgradeStepParams {
  /** Seconds to wait for the node to report the new version, then for Ready (default 300). */
  timeoutSeconds?: number;
}

/**
 * `systemctl daemon-reload && systemctl restart kubelet`, then waits until the node reports the
 * target as its kubelet version. In sync when it does. (The package upgrade does not restart a
 * running kubelet: this is the operator's step in kubeadm's guide.)
 *
 * @example restartKubeletForUpgrade({ node: 'worker1', version: 'v1.35.1', adminHost: 'cp1' })
 */
export function restartKubeletForUpgrade(params: PerHostParams<KubeletRestartParams>, options?: TaskOptions): Task<void> {
  return defineTask<KubeletRestartParams>(
    {
      kind: 'upgrade-kubelet-restart',
      id: () => 'upgrade-kubelet-restart',
      title: (p) => `restart kubelet (${p.version})`,
      validate: validateStep,
      async check(ctx, p) {
        const node = await readOwnNode(ctx, p.node);
        return node.kubeletVersion === p.version ? [] : [{ subject: 'running kubelet', current: node.kubeletVersion, desired: p.version, ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        await ctx.run(sh`systemctl daemon-reload`);
        await ctx.run(sh`systemctl restart kubelet`);
        const timeout = p.timeoutSeconds ?? 300;
        const deadline = Date.now() + timeout * 1000;
        for (;;) {
          const result = await ctx.exec(sh`kubectl --kubeconfig=/etc/kubernetes/kubelet.conf get node ${p.node} -o ${'jsonpath={.status.nodeInfo.kubeletVersion}'}`);
          if (result.code === 0 && result.stdout.trim() === p.version) return;
          if (Date.now() > deadline) throw new Error(`${p.node} does not report kubelet ${p.version} ${timeout} s after the restart (it reports ${result.stdout.trim() || result.stderr.trim()})\n${stillCordoned(p.node)}`);
          await sleep(1000);
        }
      },
    },
    params,
    options,
  );
}

/**
 * Waits until the node is Ready with its kubelet at the target. In sync when it is.
 *
 * @example nodeReadyAtVersion({ node: 'worker1', version: 'v1.35.1', adminHost: 'cp1', timeoutSeconds: 300 })
 */
export function nodeReadyAtVersion(params: PerHostParams<KubeletRestartParams>, options?: TaskOptions): Task<void> {
  return defineTask<KubeletRestartParams>(
    {
      kind: 'upgrade-node-ready',
      id: () => 'upgrade-node-ready',
      title: (p) => `${p.node} Ready at ${p.version}`,
      validate: validateStep,
      async check(ctx, p) {
        const node = await readOwnNode(ctx, p.node);
        return node.ready && node.kubeletVersion === p.version
          ? []
          : [{ subject: 'node', current: `${node.ready ? 'Ready' : 'NotReady'} ${node.kubeletVersion}`, desired: `Ready ${p.version}`, ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        const timeout = p.timeoutSeconds ?? 300;
        const deadline = Date.now() + timeout * 1000;
        for (;;) {
          const node = await readOwnNode(ctx, p.node);
          if (node.ready && node.kubeletVersion === p.version) return;
          if (Date.now() > deadline) throw new Error(`${p.node} is not Ready at ${p.version} after ${timeout} s (${node.ready ? 'Ready' : 'NotReady'}, kubelet ${node.kubeletVersion})\n${stillCordoned(p.node)}`);
          await sleep(1000);
        }
      },
    },
    params,
    options,
  );
}
