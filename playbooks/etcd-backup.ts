/**
 * Saves an etcd snapshot of the cluster to this machine (etcd's "Backing up an etcd cluster"):
 * `etcdctl snapshot save` on the first control plane (kubeadm topologies: stacked etcd, kubeadm's
 * /etc/kubernetes/pki/etcd certificates) or controller (the hard way: /etc/etcd) whose member
 * `etcdctl endpoint health` says is healthy (a member that is down is passed over); copied here as
 * `<dir>/etcd-<host>-<UTC time>.db`, mode 0600, with `<file>.sha256` beside it. The run prints the
 * file's path (the task's change); `--check` prints where it would save and saves nothing.
 *
 * Variables: `dir` (default `etcd-backups`, relative to the current directory).
 * Needs `etcdctl` on the member's host (Debian's etcd-client; the hard way installs it).
 *
 * @example capstan run playbooks/etcd-backup.ts -i inventory/ha.yaml
 * @example capstan run playbooks/etcd-backup.ts -i inventory/hard-way.yaml -e dir=/srv/backups --check
 */
import { InputError, PlaybookError, playbook } from '../runner/index.js';
import { etcdMemberHealth, etcdSnapshot } from '../tasks/index.js';
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
  const layout = group === 'control_plane' ? 'kubeadm' : 'hard-way';
  const probe = etcdMemberHealth({ layout });
  const health = await play('etcd member health', group, [probe]);
  const healthy = members.find((m) => health.value(probe, m.name) === true);
  if (!healthy && !ctx.planning) throw new PlaybookError(`no healthy etcd member among ${members.map((m) => m.name).join(', ')}: nothing to snapshot (see the hosts' etcd)`);
  await play('etcd snapshot', (healthy ?? members[0]!).name, [etcdSnapshot({ dir, layout })]);
});
