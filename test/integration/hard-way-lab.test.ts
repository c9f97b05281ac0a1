/**
 * `capstan run playbooks/hard-way.ts --lab`: the hard way with no hardware at hand. Lab hosts
 * shaped like inventory/hard-way.yaml, the stand-in control-plane binaries served from this
 * machine with their SHA-256 published beside them (nothing pinned: the playbook fetches
 * `<binary>.sha256`, as from dl.k8s.io), the PKI in the lab directory. --check first (writes
 * nothing there or here), then apply, then a second run that changes nothing.
 */
import { expect } from 'chai';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { LabState } from '../../runner/lab/index.js';
import { hardWayHostScript, labShapeFor } from '../../runner/lab-run.js';
import { runOnLabHosts } from '../../runner/lab/standins.js';
import { HARDWAY_HOST_PACKAGES } from '../lab/hardway.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, eventsOf, recapOf } from '../helpers/cli.js';
import { formatExpiry, parseOpensslEndDate } from '../../tasks/certs-parse.js';
import { expectNothingChanged } from '../helpers/recap.js';

const HASH_STATE = "find /etc /var/lib -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum";

describe('hard-way.ts with `capstan run --lab` (seed 003 without hardware)', function () {
  this.timeout(900_000);
  let lab: LabState;
  const args = ['run', 'playbooks/hard-way.ts', '--lab', '--json'];
  const hashes = async () => (await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, HASH_STATE)))).map((r) => r.stdout);

  before(async () => {
    // The hosts --lab makes, made first so their state can be hashed before --check; --lab then reuses them.
    lab = await withLab(await labShapeFor('inventory/hard-way.yaml'));
    // What --lab adds to the controllers before the run (the stand-ins' Python modules), done first too.
    const controllers = lab.hosts.filter((h) => h.groups.includes('controllers')).map((h) => h.name);
    await runOnLabHosts(lab, controllers, hardWayHostScript(HARDWAY_HOST_PACKAGES));
    rmSync(join(lab.dir, 'pki'), { recursive: true, force: true });
  });

  it('--check reuses the lab, says which binaries are stand-ins, and writes nothing on the hosts or here', async () => {
    const before = await hashes();
    const result = await capstan([...args, '--check']);
    expect(result.code, result.stderr + result.stdout.slice(-3000)).to.equal(0);
    expect(result.stderr).to.include('lab: reusing the 4 lab hosts that are up, shaped like inventory/hard-way.yaml');
    expect(result.stderr).to.include('kube-apiserver, kube-controller-manager, kube-scheduler and kubectl for these lab hosts are STAND-INS');
    expect(result.stderr).to.include(`capstan exec -i ${lab.inventoryPath} controllers -- systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler`);
    expect(await hashes()).to.deep.equal(before);
    expect(existsSync(join(lab.dir, 'pki'))).to.equal(false);
    const recap = recapOf(result.stdout);
    for (const host of lab.hosts) expect([recap[host.name]!.failed, recap[host.name]!.changed > 0], host.name).to.deep.equal([0, true]);
  });

  it('applies with the published checksums, and the API answers through the balancer', async () => {
    const result = await capstan(args);
    expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
    const balancer = lab.hosts.find((h) => h.name === 'loadbalancer')!;
    const version = await sshToLab(lab, 'controller-1', `curl -sS --cacert /var/lib/kubernetes/ca.pem https://${balancer.address}:6443/version`);
    expect(JSON.parse(version.stdout).gitVersion).to.equal('v1.34.1');
    expect(existsSync(join(lab.dir, 'pki', 'ca-key.pem'))).to.equal(true);
  });

  it('a second `--lab` run changes nothing', async () => {
    const result = await capstan(args);
    expect(result.code, result.stderr).to.equal(0);
    expectNothingChanged(result.stdout, [...lab.hosts.map((h) => h.name), 'localhost']); // the PKI play runs on this machine
  });

  it('status.ts on the hard way: /readyz and the services of each controller, 3 healthy etcd members, haproxy, every certificate; a stopped scheduler shows', async () => {
    const controllers = ['controller-0', 'controller-1', 'controller-2'];
    const status = ['run', 'playbooks/status.ts', '-i', lab.inventoryPath, '--json'];
    const result = await capstan(status);
    expect(result.code, result.stderr + result.stdout.slice(-2000)).to.equal(0);
    expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    const reports = reportsOf(result.stdout);
    // No join tokens: there is no kubeadm; no node registered: seed 003 has no workers.
    expect(reports.map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'etcd members', 'Certificates']);
    expect(reports[0]!.rows).to.deep.equal([]);
    expect(reports[1]).to.deep.equal({
      title: 'Control planes',
      columns: ['HOST', 'READYZ', 'SERVICES', 'HAPROXY'],
      rows: [...controllers.map((c) => [c, 'ok', 'all 5 active', '-']), ['loadbalancer', '-', '-', 'active']],
    });
    const address = (name: string) => lab.hosts.find((h) => h.name === name)!.address;
    expect(reports[2]!.rows.map((r) => [r[0], r[2], r[3], r[4]]).sort()).to.deep.equal(
      controllers.map((c) => [c, `https://${address(c)}:2380`, `https://${address(c)}:2379`, 'healthy']),
    );
    // Every certificate of every controller, never a key; dates as openssl reads them on the host.
    const files = ['/var/lib/kubernetes/ca.pem', '/var/lib/kubernetes/kubernetes.pem', '/var/lib/kubernetes/service-account.pem', '/etc/etcd/ca.pem', '/etc/etcd/kubernetes.pem',
      '/var/lib/kubernetes/kube-controller-manager.kubeconfig', '/var/lib/kubernetes/kube-scheduler.kubeconfig', '/var/lib/kubernetes/admin.kubeconfig'];
    const certificates = reports[3]!.rows;
    expect(certificates.map((r) => `${r[0]} ${r[1]} ${r[4]}`)).to.deep.equal(
      controllers.flatMap((c) => files.map((f) => `${c} ${f} ${f.endsWith('/ca.pem') ? '' : 'Kubernetes'}`)),
    );
    const endDate = (await sshToLab(lab, 'controller-1', 'openssl x509 -noout -enddate -in /var/lib/kubernetes/kubernetes.pem')).stdout;
    expect(certificates.find((r) => r[0] === 'controller-1' && r[1] === '/var/lib/kubernetes/kubernetes.pem')![2]).to.equal(formatExpiry(parseOpensslEndDate(endDate)));
    expect(certificates.every((r) => r[5] === '')).to.equal(true);

    // The same table from certs.ts.
    const certs = await capstan(['run', 'playbooks/certs.ts', '-i', lab.inventoryPath, '--json']);
    expect(certs.code, certs.stderr).to.equal(0);
    expect(reportsOf(certs.stdout).find((r) => r.title === 'Certificates')!.rows).to.deep.equal(certificates);

    await sshToLab(lab, 'controller-1', 'systemctl stop kube-scheduler');
    try {
      const down = await capstan([...status, '--check']);
      expect(down.code, down.stderr).to.equal(0);
      expect(reportsOf(down.stdout).find((r) => r.title === 'Control planes')!.rows[1]).to.deep.equal(['controller-1', 'ok', 'kube-scheduler inactive', '-']);
    } finally {
      await sshToLab(lab, 'controller-1', 'systemctl start kube-scheduler');
    }
  });
});

type Report = { title: string; columns: string[]; rows: string[][] };

/** The playbook's tables: its `report` events in --json, in order. */
function reportsOf(stdout: string): Report[] {
  return eventsOf(stdout).filter((e) => e.type === 'report').map((e) => ({ title: String(e.title), columns: e.columns as string[], rows: e.rows as string[][] }));
}
