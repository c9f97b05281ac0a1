/**
 * The steps of etcd's restore procedure for kubeadm's stacked members ("Restoring an etcd cluster"
 * in Kubernetes' "Operating etcd clusters"; etcd's "Disaster recovery"): stop the static Pods of
 * etcd and the API server, restore the snapshot on every member into a new data directory with the
 * member's own --name and --initial-advertise-peer-urls and the whole --initial-cluster, put it in
 * place, start etcd, then the API servers. Each task is an action: it changes on every apply.
 */
import { defineTask, sh, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';

export const MANIFESTS_DIR = '/etc/kubernetes/manifests';
/** Where the static Pod manifests wait while the control plane is stopped (outside the kubelet's directory). */
export const PARKED_MANIFESTS_DIR = '/etc/kubernetes/capstan-restore-parked';
/** The snapshot's copy on each member during the restore. */
export const REMOTE_SNAPSHOT = '/var/lib/capstan-etcd-restore.db';

/** A member as its etcd.yaml manifest names it. */
export interface EtcdManifestMember {
  name: string;
  peerUrl: string;
  dataDir: string;
}

/** The --name, --initial-advertise-peer-urls and --data-dir of kubeadm's etcd manifest. Pure. */
export function parseEtcdManifest(text: string): EtcdManifestMember {
  const flag = (name: string) => new RegExp(`^\\s*- --${name}=(\\S+)\\s*$`, 'm').exec(text)?.[1];
  const name = flag('name');
  const peerUrl = flag('initial-advertise-peer-urls')?.split(',')[0];
  if (!name || !peerUrl) throw new Error(`${MANIFESTS_DIR}/etcd.yaml has no --name or --initial-advertise-peer-urls: not kubeadm's stacked etcd`);
  return { name, peerUrl, dataDir: flag('data-dir') ?? '/var/lib/etcd' };
}

/**
 * Reads this control plane's etcd member from its manifest (read-only, never changes; looked for in
 * the parked directory too, so a re-run after an interrupted restore finds it). The value is the member.
 *
 * @example const members = await play('etcd members', 'control_plane', [etcdManifestMember()]);
 */
export function etcdManifestMember(options?: TaskOptions): Task<EtcdManifestMember> {
  const found = new Map<string, EtcdManifestMember>();
  return defineTask<Record<string, never>, EtcdManifestMember>(
    {
      kind: 'etcd-member',
      id: () => 'etcd-member:manifest',
      title: () => 'etcd member of this control plane (its static Pod manifest)',
      async check(ctx) {
        const text = (await ctx.readText(`${MANIFESTS_DIR}/etcd.yaml`)) ?? (await ctx.readText(`${PARKED_MANIFESTS_DIR}/etcd.yaml`));
        if (text === null) throw new Error(`${MANIFESTS_DIR}/etcd.yaml not found on ${ctx.host.name}: not a control plane with stacked etcd`);
        found.set(ctx.host.name, parseEtcdManifest(text));
        return [];
      },
      async apply() {},
      async result(ctx) {
        const member = found.get(ctx.host.name);
        if (!member) throw new Error(`the etcd manifest of ${ctx.host.name} was not read`);
        return member;
      },
    },
    {},
    options,
  );
}

/** Moves the manifests of `components` between the kubelet's directory and the parked one. */
function moveManifests(direction: 'park' | 'unpark', components: readonly string[]) {
  const [from, to] = direction === 'park' ? [MANIFESTS_DIR, PARKED_MANIFESTS_DIR] : [PARKED_MANIFESTS_DIR, MANIFESTS_DIR];
  return sh`install -d -m 700 ${PARKED_MANIFESTS_DIR} && for c in ${components}; do if [ -e ${from}/$c.yaml ]; then mv -f ${from}/$c.yaml ${to}/$c.yaml; fi; done`;
}

/** Until nothing listens on `port` (the kubelet stopped the static Pod), or fails after `seconds`. */
function waitPortClosed(port: number, seconds: number) {
  return sh`i=0; while ss -Htln ${`sport = :${port}`} | grep -q .; do i=$((i+1)); [ $i -le ${String(seconds)} ] || { echo "port ${String(port)} still open after ${String(seconds)}s" >&2; exit 1; }; sleep 1; done`;
}

/**
 * Stops etcd and the API server on this control plane as kubeadm's procedure does: their static
 * Pod manifests leave /etc/kubernetes/manifests (parked beside it), and the task waits until the
 * kubelet has stopped them (nothing on 2379 and 6443).
 *
 * @example await play('stop etcd and API servers', 'control_plane', [stopEtcdStaticPods()]);
 */
export function stopEtcdStaticPods(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'etcd-restore',
      id: () => 'etcd-restore:stop',
      title: () => 'etcd and kube-apiserver static Pods stopped (manifests parked)',
      verify: false,
      async check(ctx) {
        const running = await ctx.stat(`${MANIFESTS_DIR}/etcd.yaml`);
        return [{ subject: 'static pods', current: running ? 'etcd, kube-apiserver running' : 'parked', desired: 'stopped' }];
      },
      async apply(ctx) {
        await ctx.run(moveManifests('park', ['kube-apiserver', 'etcd']));
        await ctx.run(waitPortClosed(2379, 120), { timeoutMs: 150_000 });
        await ctx.run(waitPortClosed(6443, 120), { timeoutMs: 150_000 });
      },
    },
    {},
    options,
  );
}

export interface RestoreDataParams {
  /** The snapshot's bytes (read on this machine, checked against its .sha256). */
  snapshot: Buffer;
  /** Every member, for --initial-cluster. */
  members: readonly EtcdManifestMember[];
  /** --initial-cluster-token of the restored cluster (a new one: old members cannot talk to it). */
  clusterToken: string;
}

/** `etcdutl snapshot restore` (etcd ≥ 3.5), else etcd 3.4's `etcdctl snapshot restore`, into `dataDir`. */
export function restoreCommand(member: EtcdManifestMember, members: readonly EtcdManifestMember[], clusterToken: string, dataDir: string) {
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const args = ['snapshot', 'restore', REMOTE_SNAPSHOT, `--name=${member.name}`, `--initial-cluster=${initialCluster}`,
    `--initial-cluster-token=${clusterToken}`, `--initial-advertise-peer-urls=${member.peerUrl}`, `--data-dir=${dataDir}`];
  return sh`if command -v etcdutl >/dev/null; then etcdutl ${args}; else ETCDCTL_API=3 etcdctl ${args}; fi`;
}

/**
 * Restores the snapshot into this member's data directory: copied here (0600), restored into a new
 * directory with this member's name and peer URL, the old data directory kept beside it as
 * `<data-dir>.before-restore-<time>`, the restored one put in its place. etcd must be stopped
 * ({@link stopEtcdStaticPods}).
 *
 * @example await play('restore', 'control_plane', [restoreEtcdData({ snapshot: Buffer.alloc(0), members: [], clusterToken: 'restored-1' })]);
 */
export function restoreEtcdData(params: PerHostParams<RestoreDataParams>, options?: TaskOptions): Task<void> {
  return defineTask<RestoreDataParams>(
    {
      kind: 'etcd-restore',
      id: () => 'etcd-restore:data',
      title: (p) => `etcd data restored from the snapshot (${p.members.length} members)`,
      desired: (p) => ({ members: p.members, token: p.clusterToken, bytes: p.snapshot.length }),
      validate: (p) => {
        if (!/^[A-Za-z0-9._-]+$/.test(p.clusterToken)) throw new Error(`clusterToken must be letters, digits, . _ -, got ${JSON.stringify(p.clusterToken)}`);
      },
      verify: false,
      async check(ctx, p) {
        return [{ subject: 'etcd data', current: 'the cluster\'s current state', desired: `the snapshot's (${p.snapshot.length} bytes)` }];
      },
      async apply(ctx, p) {
        const text = (await ctx.readText(`${PARKED_MANIFESTS_DIR}/etcd.yaml`)) ?? (await ctx.readText(`${MANIFESTS_DIR}/etcd.yaml`));
        if (text === null) throw new Error('the etcd manifest is gone');
        const member = parseEtcdManifest(text);
        if (!p.members.some((m) => m.name === member.name)) throw new Error(`member ${member.name} is not among ${p.members.map((m) => m.name).join(', ')}`);
        if ((await ctx.exec(sh`ss -Htln ${'sport = :2379'} | grep -q .`)).code === 0) throw new Error('etcd still listens on 2379: stop it first');
        await ctx.writeFile(REMOTE_SNAPSHOT, p.snapshot, { mode: '0600' });
        const fresh = `${member.dataDir}.capstan-restored`;
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
        try {
          await ctx.run(sh`rm -rf -- ${fresh}`);
          await ctx.run(restoreCommand(member, p.members, p.clusterToken, fresh), { timeoutMs: 600_000 });
          await ctx.run(sh`chmod 700 ${fresh} && if [ -e ${member.dataDir} ]; then mv ${member.dataDir} ${`${member.dataDir}.before-restore-${stamp}`}; fi && mv ${fresh} ${member.dataDir}`);
          ctx.log(`member ${member.name}: data restored; the previous data is in ${member.dataDir}.before-restore-${stamp}`);
        } finally {
          await ctx.exec(sh`rm -f -- ${REMOTE_SNAPSHOT}`);
        }
      },
    },
    params,
    options,
  );
}

/**
 * Puts parked static Pod manifests back (the kubelet starts them) and waits: for etcd until its
 * member answers `etcdctl endpoint health` (which needs a quorum: start it on every member in one
 * play), for the API server until /readyz answers ok.
 *
 * @example await play('start etcd', 'control_plane', [startStaticPod({ component: 'etcd' })]);
 */
export function startStaticPod(params: PerHostParams<{ component: 'etcd' | 'kube-apiserver' }>, options?: TaskOptions): Task<void> {
  return defineTask<{ component: 'etcd' | 'kube-apiserver' }>(
    {
      kind: 'etcd-restore',
      id: (p) => `etcd-restore:start:${p.component}`,
      title: (p) => `${p.component} static Pod started and healthy`,
      validate: (p) => {
        if (p.component !== 'etcd' && p.component !== 'kube-apiserver') throw new Error(`component must be etcd or kube-apiserver, got ${JSON.stringify(p.component)}`);
      },
      async check(ctx, p) {
        return (await ctx.stat(`${PARKED_MANIFESTS_DIR}/${p.component}.yaml`)) ? [{ subject: p.component, current: 'stopped', desired: 'running' }] : [];
      },
      async apply(ctx, p) {
        await ctx.run(moveManifests('unpark', [p.component]));
        const ready = p.component === 'etcd'
          ? sh`ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key endpoint health >/dev/null 2>&1`
          : sh`curl -fsk https://127.0.0.1:6443/readyz >/dev/null 2>&1`;
        const result = await ctx.exec(sh`i=0; until ${ready}; do i=$((i+1)); [ $i -le 120 ] || exit 1; sleep 1; done`, { timeoutMs: 150_000 });
        if (result.code !== 0) throw new Error(`${p.component} did not become healthy on ${ctx.host.name} within 120 s`);
      },
    },
    params,
    options,
  );
}
