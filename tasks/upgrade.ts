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
 * Cordoning writes UPGRADE_CORDON_MARKER (tasks/upgrade-facts.ts) on the node first: only a node
 * the upgrade cordoned is uncordoned by it, and an interrupted run uncordons it once it is upgraded.
 * Here: the packages and kubeadm's steps; the node's own (cordon … uncordon) are in tasks/upgrade-node.ts.
 */import { defineTask, raw, sh, type ApplyContext, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { APT_GET_UPDATE, dpkgQueryCommand, parseDpkgQuery } from './apt.js';
import { manifestImageTag, readOwnNode } from './upgrade-facts.js';
import { pendingOf, sleep, stillCordoned, tail, validateStep, type UpgradeStepParams } from './upgrade-step.js';

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
