/**
 * An etcd snapshot, saved on a healthy member with `etcdctl snapshot save` and copied to this
 * machine: what etcd's "Backing up an etcd cluster" procedure does, for the kubeadm (stacked) and
 * the hard way's layouts. The snapshot holds every Secret of the cluster: the local copy is 0600.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { defineTask, sh, writeLocalFileAtomic, type CheckContext, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';

/** Where a member's client certificates are: kubeadm's /etc/kubernetes/pki/etcd, or the hard way's /etc/etcd. */
export type EtcdLayout = 'kubeadm' | 'hard-way';

/** etcdctl's TLS files per layout (kubeadm's as in Kubernetes' "Operating etcd clusters" page). */
export const ETCD_CLIENT_FILES: Record<EtcdLayout, { cacert: string; cert: string; key: string }> = {
  kubeadm: { cacert: '/etc/kubernetes/pki/etcd/ca.crt', cert: '/etc/kubernetes/pki/etcd/server.crt', key: '/etc/kubernetes/pki/etcd/server.key' },
  'hard-way': { cacert: '/etc/etcd/ca.pem', cert: '/etc/etcd/kubernetes.pem', key: '/etc/etcd/kubernetes-key.pem' },
};

/** The member's client URL on the host itself (both layouts listen there). */
export const LOCAL_ETCD_ENDPOINT = 'https://127.0.0.1:2379';

export interface EtcdSnapshotParams {
  /** Directory on this machine for the snapshot and its .sha256 (created 0700 if missing). */
  dir: string;
  /** Default 'kubeadm'. */
  layout?: EtcdLayout;
  /** The moment in the file name; default now (tests pass a fixed one). */
  now?: () => Date;
}

/** `etcdctl` with the layout's certificates against the local member (API v3: etcd 3.4 needs it said). */
export function etcdctlCommand(layout: EtcdLayout, args: readonly string[]) {
  const files = ETCD_CLIENT_FILES[layout];
  return sh`ETCDCTL_API=3 etcdctl --endpoints=${LOCAL_ETCD_ENDPOINT} --cacert=${files.cacert} --cert=${files.cert} --key=${files.key} ${args}`;
}

/** The snapshot's file name: `etcd-<host>-<UTC time>.db`, sortable by time. Pure. */
export function snapshotFileName(host: string, at: Date): string {
  const stamp = at.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
  return `etcd-${host}-${stamp}.db`;
}

/** A sha256sum line for `file` (so `sha256sum -c` checks it in its directory). Pure. */
export function sha256Line(data: Buffer, file: string): string {
  return `${createHash('sha256').update(data).digest('hex')}  ${basename(file)}\n`;
}

/** Why the local member is not healthy (`etcdctl endpoint health`), or null when it is. */
async function unhealthyReason(ctx: CheckContext, layout: EtcdLayout): Promise<string | null> {
  const result = await ctx.probe(etcdctlCommand(layout, ['endpoint', 'health']));
  if (result.code === 0) return null;
  const why = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-3).join('; ');
  return `the etcd member on ${ctx.host.name} (${LOCAL_ETCD_ENDPOINT}, ${layout} certificates) is not healthy: ${why || `etcdctl exit ${result.code}`}`;
}

async function requireHealthy(ctx: CheckContext, layout: EtcdLayout): Promise<void> {
  const reason = await unhealthyReason(ctx, layout);
  if (reason !== null) throw new Error(reason);
}

/**
 * Read-only: whether this host's etcd member answers `etcdctl endpoint health` (healthy, and the
 * cluster has a leader). Never changes anything; its value says, for choosing where to snapshot.
 *
 * @example
 * const probe = etcdMemberHealth({ layout: 'kubeadm' });
 * const health = await play('etcd member health', 'control_plane', [probe]);
 * const healthy = health.value(probe, 'cp1') === true;
 */
export function etcdMemberHealth(params: PerHostParams<{ layout?: EtcdLayout }> = {}, options?: TaskOptions): Task<boolean> {
  const answers = new Map<string, boolean>();
  return defineTask<{ layout?: EtcdLayout }, boolean>(
    {
      kind: 'etcd-health',
      id: () => 'etcd-health:local',
      title: () => 'etcd member health (etcdctl endpoint health)',
      async check(ctx, p) {
        answers.set(ctx.host.name, (await unhealthyReason(ctx, p.layout ?? 'kubeadm')) === null);
        return [];
      },
      async apply() {},
      async result(ctx) {
        return answers.get(ctx.host.name) === true;
      },
    },
    params,
    options,
  );
}

/**
 * Saves a snapshot of the etcd member on this host (`etcdctl snapshot save`, after `endpoint
 * health` says it is healthy) and copies it to `dir` on this machine as `etcd-<host>-<time>.db`,
 * mode 0600, with `<file>.sha256` beside it (checked against the member's own sha256sum of the
 * file, so a copy cut short is an error, not a backup). Every apply is a new snapshot (changed);
 * the drift names the file, so the run prints where it went, and --check where it would go. The
 * task's value is the local path. Run it on one control plane (or controller), e.g. `runOnce`.
 *
 * @example
 * const snapshot = etcdSnapshot({ dir: 'backups' });
 * const saved = await play('etcd snapshot', 'control_plane[0]', [snapshot]);
 * const where = saved.value(snapshot); // the local path (a Pending in --check)
 */
export function etcdSnapshot(params: PerHostParams<EtcdSnapshotParams>, options?: TaskOptions): Task<string> {
  const saved = new Map<string, string>();
  return defineTask<EtcdSnapshotParams, string>(
    {
      kind: 'etcd-snapshot',
      id: (p) => `etcd-snapshot:${resolve(p.dir)}`,
      title: (p) => `etcd snapshot to ${p.dir} on this machine`,
      desired: (p) => ({ dir: resolve(p.dir), layout: p.layout ?? 'kubeadm' }),
      functionParams: ['now'],
      validate: (p) => {
        if (typeof p.dir !== 'string' || p.dir.trim() === '') throw new Error('dir must name a directory on this machine');
        if (p.layout !== undefined && !(p.layout in ETCD_CLIENT_FILES)) throw new Error(`layout must be kubeadm or hard-way, got ${JSON.stringify(p.layout)}`);
        if (existsSync(p.dir) && !statSync(p.dir).isDirectory()) throw new Error(`${p.dir} exists and is not a directory`);
      },
      verify: false,
      async check(ctx, p) {
        await requireHealthy(ctx, p.layout ?? 'kubeadm');
        const path = join(resolve(p.dir), snapshotFileName(ctx.host.name, (p.now ?? (() => new Date()))()));
        return [{ subject: 'snapshot', current: null, desired: path }];
      },
      async apply(ctx, p, drift) {
        const layout = p.layout ?? 'kubeadm';
        const path = String(drift.find((d) => d.subject === 'snapshot')?.desired);
        if (existsSync(path)) throw new Error(`${path} already exists: not overwriting a snapshot`);
        // A private scratch dir on the member: the snapshot holds the cluster's Secrets.
        const saveRun = await ctx.run(sh`umask 077 && d=$(mktemp -d /var/tmp/capstan-etcd-snapshot.XXXXXXXX) && echo "$d"`);
        const scratch = saveRun.stdout.trim();
        try {
          await ctx.run(etcdctlCommand(layout, ['snapshot', 'save', `${scratch}/snapshot.db`]), { timeoutMs: 600_000 });
          const remoteSum = (await ctx.run(sh`sha256sum ${`${scratch}/snapshot.db`}`)).stdout.split(' ')[0];
          const data = (await ctx.run(sh`cat ${`${scratch}/snapshot.db`}`)).bytes;
          const line = sha256Line(data, path);
          if (line.split(' ')[0] !== remoteSum) throw new Error(`the copy of the snapshot from ${ctx.host.name} does not match its sha256 there (${remoteSum})`);
          mkdirSync(resolve(p.dir), { recursive: true, mode: 0o700 });
          writeLocalFileAtomic(path, data, 0o600);
          writeLocalFileAtomic(`${path}.sha256`, line, 0o600);
          saved.set(ctx.host.name, path);
          ctx.log(`snapshot of ${data.length} bytes saved to ${path} (sha256 ${remoteSum})`);
        } finally {
          await ctx.exec(sh`rm -rf -- ${scratch}`);
        }
      },
      async result(ctx) {
        const path = saved.get(ctx.host.name);
        if (path === undefined) throw new Error(`no etcd snapshot was saved from ${ctx.host.name} in this run`);
        return path;
      },
    },
    params,
    options,
  );
}
