/**
 * Restores a cluster's etcd from a snapshot (playbooks/etcd-backup.ts's), following etcd's documented
 * procedure, and asks first: every change since the snapshot is lost. kubeadm topologies (group
 * control_plane): the stacked members, static Pods; the hard way (group controllers): etcd.service.
 *
 *   confirm         the cluster's name typed on a terminal, or -e confirm=<name>; nothing is
 *                   contacted before (the snapshot file and its .sha256 are checked first)
 *   etcd members    each member's --name, peer URL and data dir, from its etcd manifest (the hard
 *                   way: /etc/systemd/system/etcd.service)
 *   stop            etcd and kube-apiserver everywhere: static Pods (manifests parked), or units
 *   restore         on every member: `etcdutl snapshot restore` (etcd 3.4: `etcdctl snapshot
 *                   restore`) with its --name, --initial-advertise-peer-urls and the whole
 *                   --initial-cluster into a new data dir; the old one kept as <dir>.before-restore-<time>
 *   start etcd      every member at once (a quorum is needed for health), then the API servers,
 *                   each waited for (etcdctl endpoint health, /readyz)
 *
 * Variables: `snapshot` (required: the file on this machine), `cluster_name` (what must be typed;
 * default "kubernetes").
 *
 * @example capstan run playbooks/etcd-restore.ts -i inventory/ha.yaml -e snapshot=etcd-backups/etcd-cp1-20261203T080000Z.db
 * @example capstan run playbooks/etcd-restore.ts -i inventory/hard-way.yaml -e snapshot=etcd-backups/etcd-controller-0-20261203T080000Z.db --check
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { InputError, playbook } from '../runner/index.js';
import { etcdManifestMember, restoreEtcdData, startStaticPod, stopEtcdStaticPods, type EtcdManifestMember } from '../tasks/etcd-restore.js';
import { clusterSource } from './vars.js';

/** The example inventory this playbook is written for (any kubeadm topology's inventory will do). */
export const exampleInventory = new URL('../inventory/ha.yaml', import.meta.url);

/** The snapshot's bytes, checked against `<file>.sha256` when it exists (etcd-backup.ts writes one). */
function readSnapshot(path: string): Buffer {
  if (!existsSync(path)) throw new InputError(`snapshot ${path} does not exist on this machine`);
  const data = readFileSync(path);
  if (existsSync(`${path}.sha256`)) {
    const recorded = readFileSync(`${path}.sha256`, 'utf8').split(/\s+/)[0];
    const actual = createHash('sha256').update(data).digest('hex');
    if (recorded !== actual) throw new InputError(`snapshot ${path} does not match ${basename(path)}.sha256 (${actual} ≠ ${recorded}): not restoring a damaged file`);
  }
  return data;
}

export default playbook('etcd-restore', async (ctx) => {
  const { inventory, play } = ctx;
  const group = inventory.groups.has('control_plane') ? 'control_plane' : inventory.groups.has('controllers') ? 'controllers' : undefined;
  if (!group) throw new InputError(`etcd-restore.ts needs a control_plane (kubeadm) or controllers (the hard way) group; ${inventory.source} has neither`);
  const layout = group === 'control_plane' ? 'kubeadm' : 'hard-way';
  const vars = clusterSource(ctx, group);
  const clusterName = vars.string('cluster_name', 'kubernetes', /^[A-Za-z0-9._-]+$/, 'a cluster name (letters, digits, . _ -)');
  if (!vars.has('snapshot')) throw new InputError('etcd-restore.ts needs -e snapshot=FILE (a snapshot saved by playbooks/etcd-backup.ts)');
  const path = vars.string('snapshot', '', /^[^\0]+$/, 'a file on this machine');
  const snapshot = readSnapshot(path);
  const controlPlanes = ctx.selectHosts(group).map((h) => h.name);
  if (controlPlanes.length === 0) throw new InputError(`no host of ${group} is selected (check --limit): nothing to restore`);
  await ctx.confirm({
    action: `etcd restore of ${path} onto ${controlPlanes.join(', ')} of cluster "${clusterName}": every change since the snapshot is lost`,
    answer: clusterName,
  });

  const read = etcdManifestMember({ layout });
  const found = await play('etcd members', group, [read]);
  const members = controlPlanes.map((name) => found.value(read, name)).filter((m): m is EtcdManifestMember => typeof m === 'object' && m !== null && 'peerUrl' in m);
  await play('stop etcd and API servers', group, [stopEtcdStaticPods({ layout })], { anyErrorsFatal: true });
  const clusterToken = `capstan-restore-${Date.now().toString(36)}`;
  await play('restore etcd data', group, [restoreEtcdData({ snapshot, members, clusterToken, layout })], { anyErrorsFatal: true });
  await play('start etcd', group, [startStaticPod({ component: 'etcd', layout })], { anyErrorsFatal: true });
  await play('start API servers', group, [startStaticPod({ component: 'kube-apiserver', layout })]);
});
