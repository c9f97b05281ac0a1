/**
 * The steps of kubeadm's upgrade procedure on one node ("Upgrading kubeadm clusters"), each an
 * idempotent task, in the order the upgrade playbook runs them:
 *
 *   apt-mark unhold kubeadm && apt-get install -y kubeadm=1.35.1-1.1 && apt-mark hold kubeadm
 *   kubeadm upgrade plan v1.35.1 && kubeadm upgrade apply v1.35.1 -y      (the first control plane)
 *   kubeadm upgrade node                                                   (the other nodes)
 *   kubectl cordon NODE; kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…
 *   apt-mark unhold kubelet kubectl && apt-get install -y kubelet=… kubectl=… && apt-mark hold kubelet kubectl
 *   systemctl daemon-reload && systemctl restart kubelet; the node Ready at the new version
 *   kubectl uncordon NODE
 *
 * A node's state is read from the API server with the node's own kubelet credentials
 * (/etc/kubernetes/kubelet.conf may read its own Node), so check mode needs no other host; what
 * needs cluster-admin (cordon, drain, uncordon) runs on the first control plane with admin.conf.
 * Cordoning writes {@link UPGRADE_CORDON_MARKER} on the node first: only a node the upgrade
 * cordoned is uncordoned by it, and an interrupted run uncordons it once it is upgraded.
 */
import { raw, sh } from '../runner/quote.js';
import { defineTask, type ApplyContext, type CheckContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/task.js';
import { APT_GET_UPDATE, dpkgQueryCommand, parseDpkgQuery } from './apt.js';
import { ADMIN_CONF } from './kubeadm.js';
import { manifestImageTag, readOwnNode, UPGRADE_CORDON_MARKER } from './upgrade-facts.js';

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

function validateStep(p: UpgradeStepParams): void {
  if (typeof p.node !== 'string' || !NODE_NAME.test(p.node)) throw new Error(`node must be a Kubernetes node name, got ${JSON.stringify(p.node)}`);
  if (typeof p.version !== 'string' || !VERSION.test(p.version)) throw new Error(`version must be like v1.35.1, got ${JSON.stringify(p.version)}`);
  if (typeof p.adminHost !== 'string' || p.adminHost === '') throw new Error('adminHost must name the first control plane');
}

/** The pending note of a check-mode drift: the other host's change it follows, else the last earlier change on this host. */
function pendingOf(ctx: CheckContext, p: { after?: string }): { pending?: string } {
  if (!ctx.checkMode) return {};
  // One cause is enough to read: the other host's change this node waits for, else the change just before on this host.
  const reason = p.after ?? ctx.pendingChanges.at(-1);
  return reason ? { pending: reason } : {};
}

const admin = (args: ReturnType<typeof sh>) => sh`kubectl --kubeconfig=${ADMIN_CONF} ${args}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tail = (text: string, lines = 12) => text.trim().split('\n').slice(-lines).join('\n');

/** After a failure past the drain: what the operator is told (the node is left cordoned, on purpose). */
const stillCordoned = (node: string) =>
  `${node} is left cordoned and drained: run the same command again to finish its upgrade (it is uncordoned once Ready at the new version), or \`kubectl uncordon ${node}\` to put it back in service as it is`;

/* ------------------------------------------------------------------ packages */

export interface UpgradePackagesParams {
  /** kubeadm, or kubelet and kubectl. */
  packages: readonly string[];
  /** The exact Debian version, "1.35.1-1.1". */
  debianVersion: string;
  /** Past the drain: a failure says the node stays cordoned. */
  cordonedNode?: string;
  after?: string;
}

/**
 * Packages at an exact version, held: `apt-mark unhold`, `apt-get install <p>=<version>`,
 * `apt-mark hold` (kubeadm's upgrade guide). An install that fails is held again, so the packages
 * never stay unheld; apt's lists are refreshed once when apt does not know the version yet.
 *
 * @example upgradePackages({ packages: ['kubeadm'], debianVersion: '1.35.1-1.1' })
 */
export function upgradePackages(params: PerHostParams<UpgradePackagesParams>, options?: TaskOptions): Task<void> {
  return defineTask<UpgradePackagesParams>(
    {
      kind: 'upgrade-packages',
      id: (p) => `upgrade-packages:${[...p.packages].sort().join(',')}`,
      title: (p) => `${p.packages.join(' + ')} ${p.debianVersion} (held)`,
      validate: (p) => {
        if (!Array.isArray(p.packages) || p.packages.length === 0 || !p.packages.every((name) => /^[a-z0-9][a-z0-9+.-]+$/.test(name))) throw new Error(`packages must be package names, got ${JSON.stringify(p.packages)}`);
        if (typeof p.debianVersion !== 'string' || !/^[0-9][A-Za-z0-9.+~:-]*$/.test(p.debianVersion)) throw new Error(`debianVersion must be a Debian version like 1.35.1-1.1, got ${JSON.stringify(p.debianVersion)}`);
      },
      async check(ctx, p) {
        const result = await ctx.probe(dpkgQueryCommand(p.packages));
        const installed = parseDpkgQuery(result.stdout);
        const drift: Drift[] = [];
        const off = p.packages.filter((name) => installed.get(name)?.version !== p.debianVersion || !installed.get(name)?.installed);
        if (off.length) {
          drift.push({ subject: 'version', current: off.map((name) => `${name} ${installed.get(name)?.installed ? installed.get(name)!.version : 'absent'}`).join(', '), desired: off.map((name) => `${name} ${p.debianVersion}`).join(', '), ...pendingOf(ctx, p) });
        }
        const unheld = p.packages.filter((name) => !installed.get(name)?.held);
        if (unheld.length) drift.push({ subject: 'hold', current: `${unheld.join(', ')} not held`, desired: 'held' });
        return drift;
      },
      async apply(ctx, p) {
        const specs = p.packages.map((name) => `${name}=${p.debianVersion}`);
        await ctx.run(sh`apt-mark unhold ${p.packages}`);
        const install = sh`${raw('DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8')} apt-get install -y -q -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 --allow-downgrades ${specs}`;
        try {
          let result = await ctx.exec(install);
          if (result.code !== 0 && /Version '[^']*' for '[^']*' was not found|Unable to locate package/.test(`${result.stdout}\n${result.stderr}`)) {
            ctx.log('apt does not know this version yet: apt-get update, then install again');
            await ctx.run(APT_GET_UPDATE);
            result = await ctx.exec(install);
          }
          if (result.code !== 0) throw new Error(`apt-get install ${specs.join(' ')} failed (exit ${result.code}):\n${tail(`${result.stdout}\n${result.stderr}`)}`);
          for (const line of result.stdout.replace(/\r/g, '').split('\n').filter((l) => /^(Setting up|Unpacking) /.test(l))) ctx.log(line);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          throw new Error(p.cordonedNode ? `${message}\n${stillCordoned(p.cordonedNode)}` : message);
        } finally {
          await ctx.run(sh`apt-mark hold ${p.packages}`);
        }
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ kubeadm upgrade apply / node */

const APISERVER_MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';

async function waitReadyz(ctx: ApplyContext, address: string, timeoutSeconds: number): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const result = await ctx.exec(sh`curl -sk --max-time 5 -o /dev/null -w ${'%{http_code}'} ${`https://${address}:6443/readyz`}`);
    if (result.stdout.trim() === '200') return;
    if (Date.now() > deadline) throw new Error(`the API server on ${address} is not ready (/readyz) ${timeoutSeconds} s after its upgrade`);
    await sleep(1000);
  }
}

export interface KubeadmUpgradeParams extends UpgradeStepParams {
  /** apply: the first control plane; node: the others (control planes and workers). */
  mode: 'apply' | 'node';
  controlPlane: boolean;
  /** Control planes: the node's address, whose /readyz is waited for. */
  address?: string;
  /** Seconds to wait for /readyz after the upgrade (default 300). */
  readyTimeoutSeconds?: number;
}

/**
 * `kubeadm upgrade apply vX.Y.Z -y` on the first control plane (after `kubeadm upgrade plan`, whose
 * answer is logged with -v), `kubeadm upgrade node` on the others; a control plane then waits for
 * its API server's /readyz. In sync on a control plane whose kube-apiserver manifest runs the
 * target; on a worker, when its kubelet runs the target (kubeadm upgrade node only rewrites its
 * kubelet configuration, which the kubelet step after it puts to use).
 *
 * @example kubeadmUpgrade({ mode: 'apply', controlPlane: true, node: 'cp1', version: 'v1.35.1', adminHost: 'cp1', address: '192.168.0.150' })
 */
export function kubeadmUpgrade(params: PerHostParams<KubeadmUpgradeParams>, options?: TaskOptions): Task<void> {
  return defineTask<KubeadmUpgradeParams>(
    {
      kind: 'kubeadm-upgrade',
      id: () => 'kubeadm-upgrade',
      title: (p) => (p.mode === 'apply' ? `kubeadm upgrade apply ${p.version}` : 'kubeadm upgrade node'),
      validate: (p) => {
        validateStep(p);
        if (p.mode !== 'apply' && p.mode !== 'node') throw new Error(`mode must be apply or node, got ${JSON.stringify(p.mode)}`);
        if (p.mode === 'apply' && !p.controlPlane) throw new Error('kubeadm upgrade apply runs on a control plane');
        if (p.controlPlane && !p.address) throw new Error('a control plane needs its address (its API server\'s /readyz is waited for)');
      },
      // A worker's `upgrade node` leaves nothing to read until its kubelet restarts (the next steps).
      verify: (p) => p.controlPlane,
      async check(ctx, p) {
        if (p.controlPlane) {
          const tag = manifestImageTag(await ctx.readText(APISERVER_MANIFEST));
          return tag === p.version ? [] : [{ subject: 'control plane', current: tag ?? 'no kube-apiserver manifest', desired: p.version, ...pendingOf(ctx, p) }];
        }
        const node = await readOwnNode(ctx, p.node);
        return node.kubeletVersion === p.version ? [] : [{ subject: 'kubelet configuration', current: node.kubeletVersion, desired: p.version, ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        if (p.mode === 'apply') {
          const plan = await ctx.exec(sh`kubeadm upgrade plan ${p.version}`, { timeoutMs: 300_000 });
          for (const line of `${plan.stdout}${plan.stderr}`.split('\n')) ctx.log(`upgrade plan: ${line}`);
          if (plan.code !== 0) throw new Error(`kubeadm upgrade plan ${p.version} failed (exit ${plan.code}):\n${tail(plan.stderr || plan.stdout)}`);
        }
        const command = p.mode === 'apply' ? sh`kubeadm upgrade apply ${p.version} -y` : sh`kubeadm upgrade node`;
        const result = await ctx.exec(command, { timeoutMs: 1_200_000 });
        for (const line of result.stdout.split('\n').filter(Boolean)) ctx.log(line);
        if (result.code !== 0) throw new Error(`${command.display} failed (exit ${result.code}):\n${tail(`${result.stdout}\n${result.stderr}`)}`);
        if (p.controlPlane) await waitReadyz(ctx, p.address!, p.readyTimeoutSeconds ?? 300);
      },
    },
    params,
    options,
  );
}

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
        if (p.timeoutSeconds !== undefined && !(Number.isInteger(p.timeoutSeconds) && p.timeoutSeconds > 0)) throw new Error(`timeoutSeconds must be a whole number > 0, got ${p.timeoutSeconds}`);
      },
      verify: false,
      async check(ctx, p) {
        const node = await readOwnNode(ctx, p.node);
        return node.kubeletVersion === p.version ? [] : [{ subject: 'pods', current: `running on ${p.node}`, desired: 'evicted (DaemonSets stay)', ...pendingOf(ctx, p) }];
      },
      async apply(ctx, p) {
        const other = await ctx.onHost(p.adminHost);
        const timeout = p.timeoutSeconds ?? 300;
        const drain = await other.exec(admin(sh`drain ${p.node} --ignore-daemonsets --delete-emptydir-data ${`--timeout=${timeout}s`}`), { timeoutMs: (timeout + 60) * 1000 });
        for (const line of `${drain.stdout}${drain.stderr}`.split('\n').filter(Boolean)) ctx.log(line);
        if (drain.code === 0) return;
        const uncordon = await other.exec(admin(sh`uncordon ${p.node}`));
        if (uncordon.code === 0) await ctx.exec(sh`rm -f -- ${UPGRADE_CORDON_MARKER}`);
        const state = uncordon.code === 0 ? `${p.node} was uncordoned; its kubelet was not upgraded` : `${p.node} is STILL CORDONED (kubectl uncordon failed: ${uncordon.stderr.trim()})`;
        throw new Error(
          `kubectl drain ${p.node} failed (exit ${drain.code}):\n${tail(drain.stderr || drain.stdout)}\n` +
            `${state}. Make the drain possible (a PodDisruptionBudget that allows an eviction, a controller for bare pods, or a longer drain_timeout), then run the same command again.`,
        );
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
