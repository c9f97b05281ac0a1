/**
 * The steps of etcd's restore procedure ("Restoring an etcd cluster" in Kubernetes' "Operating etcd
 * clusters"; etcd's "Disaster recovery"), for kubeadm's stacked members (static Pods) and the hard
 * way's (etcd.service): stop etcd and the API servers, restore the snapshot on every member into a
 * new data directory with the member's own --name and --initial-advertise-peer-urls and the whole
 * --initial-cluster, put it in place, start etcd, then the API servers. Each task is an action: it
 * changes on every apply.
 */
import { defineTask, sh, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { etcdctlCommand, type EtcdLayout } from './etcd-snapshot.js';

export const MANIFESTS_DIR = '/etc/kubernetes/manifests';
/** Where the static Pod manifests wait while the control plane is stopped (outside the kubelet's directory). */
export const PARKED_MANIFESTS_DIR = '/etc/kubernetes/capstan-restore-parked';
/** The snapshot's copy on each member during the restore. */
export const REMOTE_SNAPSHOT = '/var/lib/capstan-etcd-restore.db';
/** The hard way's etcd unit (tasks/etcd.ts writes it). */
export const HARD_WAY_ETCD_UNIT = '/etc/systemd/system/etcd.service';

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

/** The --name, --initial-advertise-peer-urls and --data-dir of the hard way's etcd.service (`--flag value` or `--flag=value`). Pure. */
export function parseEtcdUnit(text: string): EtcdManifestMember {
  const flag = (name: string) => new RegExp(`--${name}[= ](\\S+)`).exec(text)?.[1];
  const name = flag('name');
  const peerUrl = flag('initial-advertise-peer-urls')?.split(',')[0];
  if (!name || !peerUrl) throw new Error(`${HARD_WAY_ETCD_UNIT} has no --name or --initial-advertise-peer-urls: not the hard way's etcd member`);
  return { name, peerUrl, dataDir: flag('data-dir') ?? '/var/lib/etcd' };
}

/** This host's member: kubeadm's manifest (in place or parked by an interrupted restore), or the hard way's unit. */
async function readMember(ctx: { host: { name: string }; readText(path: string): Promise<string | null> }, layout: EtcdLayout): Promise<EtcdManifestMember> {
  if (layout === 'hard-way') {
    const unit = await ctx.readText(HARD_WAY_ETCD_UNIT);
    if (unit === null) throw new Error(`${HARD_WAY_ETCD_UNIT} not found on ${ctx.host.name}: not a hard-way etcd member`);
    return parseEtcdUnit(unit);
  }
  const text = (await ctx.readText(`${MANIFESTS_DIR}/etcd.yaml`)) ?? (await ctx.readText(`${PARKED_MANIFESTS_DIR}/etcd.yaml`));
  if (text === null) throw new Error(`${MANIFESTS_DIR}/etcd.yaml not found on ${ctx.host.name}: not a control plane with stacked etcd`);
  return parseEtcdManifest(text);
}

export interface RestoreLayoutParams {
  /** Default 'kubeadm' (static Pods); 'hard-way': etcd.service and kube-apiserver.service. */
  layout?: EtcdLayout;
}

/**
 * Reads this host's etcd member (read-only, never changes): kubeadm's manifest (in place, or parked
 * by an interrupted restore, so a re-run finds it) or the hard way's unit. The value is the member.
 *
 * @example const members = await play('etcd members', 'control_plane', [etcdManifestMember()]);
 */
export function etcdManifestMember(params: PerHostParams<RestoreLayoutParams> = {}, options?: TaskOptions): Task<EtcdManifestMember> {
  const found = new Map<string, EtcdManifestMember>();
  return defineTask<RestoreLayoutParams, EtcdManifestMember>(
    {
      kind: 'etcd-member',
      id: () => 'etcd-member:manifest',
      title: (p) => `etcd member of this host (its ${p.layout === 'hard-way' ? 'etcd.service' : 'static Pod manifest'})`,
      async check(ctx, p) {
        found.set(ctx.host.name, await readMember(ctx, p.layout ?? 'kubeadm'));
        return [];
      },
      async apply() {},
      async result(ctx) {
        const member = found.get(ctx.host.name);
        if (!member) throw new Error(`the etcd member of ${ctx.host.name} was not read`);
        return member;
      },
    },
    params,
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

/** `systemctl <action>` of each unit that exists (a controller without kube-apiserver yet is fine). */
function systemctlExisting(action: 'stop' | 'start', units: readonly string[]) {
  return sh`for u in ${units}; do if systemctl cat "$u" >/dev/null 2>&1; then systemctl ${action} "$u"; fi; done`;
}

/**
 * Stops etcd and the API server on this host: kubeadm's static Pod manifests leave
 * /etc/kubernetes/manifests (parked beside it) and the kubelet stops them; the hard way's units are
 * stopped. Then waits until nothing listens on 2379 and 6443.
 *
 * @example await play('stop etcd and API servers', 'control_plane', [stopEtcdStaticPods()]);
 */
export function stopEtcdStaticPods(params: PerHostParams<RestoreLayoutParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<RestoreLayoutParams>(
    {
      kind: 'etcd-restore',
      id: () => 'etcd-restore:stop',
      title: (p) => (p.layout === 'hard-way' ? 'etcd and kube-apiserver services stopped' : 'etcd and kube-apiserver static Pods stopped (manifests parked)'),
      verify: false,
      async check() {
        return [{ subject: 'etcd, kube-apiserver', current: 'running', desired: 'stopped' }];
      },
      async apply(ctx, p) {
        await ctx.run(p.layout === 'hard-way' ? systemctlExisting('stop', ['kube-apiserver.service', 'etcd.service']) : moveManifests('park', ['kube-apiserver', 'etcd']));
        await ctx.run(waitPortClosed(2379, 120), { timeoutMs: 150_000 });
        await ctx.run(waitPortClosed(6443, 120), { timeoutMs: 150_000 });
      },
    },
    params,
    options,
  );
}

export interface RestoreDataParams extends RestoreLayoutParams {
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
 * ({@link stopEtcdStaticPods}). A data directory restored as root stays root's: both layouts run etcd as root.
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
        const member = await readMember(ctx, p.layout ?? 'kubeadm');
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

export interface StartParams extends RestoreLayoutParams {
  component: 'etcd' | 'kube-apiserver';
}

/**
 * Starts etcd or the API server again (kubeadm: its parked manifest goes back and the kubelet starts
 * it; the hard way: its unit, when the host has one) and waits: for etcd until its member answers
 * `etcdctl endpoint health` (which needs a quorum: start it on every member in one play), for the
 * API server until /readyz answers ok. In --check it predicts the start that the restore's stop makes
 * necessary (a pending change): use it after {@link stopEtcdStaticPods}.
 *
 * @example await play('start etcd', 'control_plane', [startStaticPod({ component: 'etcd' })]);
 */
export function startStaticPod(params: PerHostParams<StartParams>, options?: TaskOptions): Task<void> {
  return defineTask<StartParams>(
    {
      kind: 'etcd-restore',
      id: (p) => `etcd-restore:start:${p.component}`,
      title: (p) => `${p.component} started and healthy`,
      validate: (p) => {
        if (p.component !== 'etcd' && p.component !== 'kube-apiserver') throw new Error(`component must be etcd or kube-apiserver, got ${JSON.stringify(p.component)}`);
      },
      async check(ctx, p) {
        const stopped = p.layout === 'hard-way'
          ? (await ctx.probe(sh`systemctl cat ${`${p.component}.service`} >/dev/null 2>&1 && ! systemctl is-active --quiet ${`${p.component}.service`}`)).code === 0
          : (await ctx.stat(`${PARKED_MANIFESTS_DIR}/${p.component}.yaml`)) !== null;
        if (stopped) return [{ subject: p.component, current: 'stopped', desired: 'running' }];
        // --check of a restore: the stop before this has not happened, so this start is predicted from it.
        return ctx.checkMode ? [{ subject: p.component, current: 'running', desired: 'started again on the restored data', pending: 'etcd and kube-apiserver stopped for the restore' }] : [];
      },
      async apply(ctx, p) {
        const layout = p.layout ?? 'kubeadm';
        // --no-block: a member's start waits for a quorum, which the other members' starts (same play) make.
        await ctx.run(layout === 'hard-way' ? sh`systemctl start --no-block ${`${p.component}.service`}` : moveManifests('unpark', [p.component]));
        const ready = p.component === 'etcd' ? sh`${etcdctlCommand(layout, ['endpoint', 'health'])} >/dev/null 2>&1` : sh`curl -fsk https://127.0.0.1:6443/readyz >/dev/null 2>&1`;
        const result = await ctx.exec(sh`i=0; until ${ready}; do i=$((i+1)); [ $i -le 120 ] || exit 1; sleep 1; done`, { timeoutMs: 150_000 });
        if (result.code !== 0) throw new Error(`${p.component} did not become healthy on ${ctx.host.name} within 120 s`);
      },
    },
    params,
    options,
  );
}
