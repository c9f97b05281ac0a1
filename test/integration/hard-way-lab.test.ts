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
import { capstan, recapOf } from '../helpers/cli.js';
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
});
