/**
 * Saves an etcd snapshot of the cluster to this machine (etcd's "Backing up an etcd cluster"):
 * `etcdctl snapshot save` on the first control plane (kubeadm topologies: stacked etcd, kubeadm's
 * /etc/kubernetes/pki/etcd certificates) or the first controller (the hard way: /etc/etcd), after
 * `etcdctl endpoint health` says its member is healthy; copied here as
 * `<dir>/etcd-<host>-<UTC time>.db`, mode 0600, with `<file>.sha256` beside it. The run prints the
 * file's path (the task's change); `--check` prints where it would save and saves nothing.
 *
 * Variables: `dir` (default `etcd-backups`, relative to the current directory).
 * Needs `etcdctl` on the member's host (Debian's etcd-client; the hard way installs it).
 *
 * @example capstan run playbooks/etcd-backup.ts -i inventory/ha.yaml
 * @example capstan run playbooks/etcd-backup.ts -i inventory/hard-way.yaml -e dir=/srv/backups --check
 */
import { InputError, playbook } from '../runner/index.js';
import { etcdSnapshot } from '../tasks/index.js';
import { clusterSource } from './vars.js';

/** The example inventory this playbook is written for (any kubeadm or hard-way inventory will do). */
export const exampleInventory = new URL('../inventory/ha.yaml', import.meta.url);

export default playbook('etcd-backup', async (ctx) => {
  const { inventory, play } = ctx;
  const group = inventory.groups.has('control_plane') ? 'control_plane' : inventory.groups.has('controllers') ? 'controllers' : undefined;
  if (!group) throw new InputError(`etcd-backup.ts needs a control_plane (kubeadm) or controllers (the hard way) group; ${inventory.source} has neither`);
  const dir = clusterSource(ctx, group).string('dir', 'etcd-backups', /^[^\0]+$/, 'a directory on this machine');
  const members = ctx.selectHosts(group);
  if (members.length === 0) throw new InputError(`no host of ${group} is selected (check --limit): no etcd member to snapshot`);
  await play('etcd snapshot', members[0]!.name, [etcdSnapshot({ dir, layout: group === 'control_plane' ? 'kubeadm' : 'hard-way' })]);
});
