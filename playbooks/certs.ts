/**
 * The certificates of a cluster (single-node, pi-cluster, stacked-ha, the hard way): one table of every
 * kubeadm-managed certificate on every control plane and the kubelet client certificate of every
 * node, with expiry and residual time; with `-e renew=true`, their renewal before they expire.
 *
 *   read certificates     `kubeadm certs check-expiration` on each control plane, `openssl x509
 *                         -enddate` of /var/lib/kubelet/pki/kubelet-client-current.pem on every node
 *   (table)               one table of every host's certificates, expiring ones noted (data in --json)
 *   renew <control plane> with renew=true, one control plane at a time, only where a certificate
 *                         expires within renew_within_days: `kubeadm certs renew all`, the static
 *                         Pods restarted as kubeadm's documentation says (manifests out of
 *                         /etc/kubernetes/manifests until the kubelet has stopped them, then back),
 *                         then the API server's /readyz before the next control plane
 *
 * The hard way (an inventory with `controllers`): the table of every PEM certificate in
 * /var/lib/kubernetes and /etc/etcd and each kubeconfig's client certificate (openssl); renewing is
 * hard-way.ts's (its PKI step re-issues certificates in their last 30 days), so renew=true is refused.
 *
 * Variables: `renew` (false; true renews what expires within renew_within_days; force renews every
 * time), `renew_within_days` (30), `ready_timeout` (300 seconds for /readyz after the restart).
 * `--check` with renew=true lists, per control plane, the certificates that would be renewed.
 * kubeadm does not renew the CAs (ten years) nor the kubelet's client certificate, which the
 * kubelet rotates itself: the table notes them when they expire soon.
 *
 * @example capstan run playbooks/certs.ts -i inventory/home.yaml
 * @example capstan run playbooks/certs.ts -i inventory/home.yaml -e renew=true --check
 * @example capstan run playbooks/certs.ts -i inventory/ha.yaml -e renew=true -e renew_within_days=60
 * @example capstan run playbooks/certs.ts -i inventory/hard-way.yaml
 */
import { InputError, playbook } from '../runner/index.js';
import { certificateTable, readCertificates, renewCertificates, type HostCertificates } from '../tasks/index.js';
import { clusterSource } from './vars.js';
import { hardWayCertificates, isHardWayInventory } from './lib/hard-way-layout.js';

/** The example inventory this playbook is written for (any kubeadm topology's inventory will do). */
export const exampleInventory = new URL('../inventory/single.yaml', import.meta.url);

export default playbook('certs', async (ctx) => {
  const { play, inventory } = ctx;
  const hardWay = isHardWayInventory(inventory.groups);
  if (!hardWay && !inventory.groups.has('control_plane')) {
    throw new InputError(`certs.ts reads a cluster's control planes: ${inventory.source} has neither a control_plane group (kubeadm topologies) nor a controllers group (the hard way)`);
  }
  const vars = clusterSource(ctx, hardWay ? 'controllers' : 'control_plane');
  const renew = vars.string('renew', 'false', /^(true|false|force)$/, 'true, false or force');
  const withinDays = vars.integer('renew_within_days', 30, 0, 364);
  const readyTimeout = vars.integer('ready_timeout', 300, 1, 3600);
  if (hardWay && renew !== 'false') {
    throw new InputError(`renew=${renew}: the hard way's certificates are not kubeadm's; hard-way.ts re-issues them from pki_dir in their last 30 days (capstan run playbooks/hard-way.ts -i ${inventory.source})`);
  }
  const controlPlanes = ctx.selectHosts(hardWay ? 'controllers' : 'control_plane').map((h) => h.name);
  const workers = inventory.groups.has('workers') ? ctx.selectHosts('workers').map((h) => h.name) : [];
  const nodes = [...controlPlanes, ...workers];
  if (nodes.length === 0) throw new InputError('no control plane or worker is selected (check --limit)');

  const read = readCertificates(hardWay ? hardWayCertificates() : {});
  const lifetimes = await play('read certificates', nodes.join(','), [read]);
  const hosts = nodes.flatMap((name) => {
    const value = lifetimes.value(read, name);
    return value && typeof value === 'object' && 'host' in value ? [value as HostCertificates] : [];
  });
  ctx.report(certificateTable(hosts, withinDays));

  if (renew === 'false') return;
  // One control plane at a time: while one restarts its API server and etcd, the others serve.
  for (const name of controlPlanes) {
    await play(`renew ${name}`, name, [renewCertificates({ withinDays, force: renew === 'force', readyTimeoutSeconds: readyTimeout })], { anyErrorsFatal: true });
  }
});
