import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, type LabState } from '../../runner/lab/index.js';
import type { HostView } from '../../runner/task.js';
import { ensureEtcdMember, etcdHealthy, renderEtcdUnit, type EtcdMemberParams } from '../../tasks/etcd.js';
import { skipUnlessLabSupported, sshToLab, withLab, type SshResult } from '../helpers/lab.js';
import { runTasks } from '../helpers/tasks.js';
import { makeTestPki } from '../lab/hardway.js';

/**
 * A real 3-member etcd cluster over TLS (Debian's etcd-server 3.4) on 3 lab hosts, as the hard way
 * (seed 003) runs it: check mode changes nothing, apply forms the cluster (3 started members,
 * every endpoint healthy, from every host), a second run changes nothing, a changed unit restarts
 * the member once, and clients without TLS or with a certificate from another CA are refused.
 */
describe('etcd cluster over TLS (tasks/etcd.ts) on 3 lab hosts', function () {
  this.timeout(600_000);
  let lab: LabState;
  let pki: string;
  let otherPki: string;
  let members: { name: string; ip: string }[];
  const files = { certFile: '/etc/etcd/kubernetes.pem', keyFile: '/etc/etcd/kubernetes-key.pem', trustedCaFile: '/etc/etcd/ca.pem' };

  async function ok(host: string, command: string, input?: string): Promise<string> {
    const result = await sshToLab(lab, host, command, input === undefined ? {} : { input });
    expect(result.code, `${host}: ${command}\n${result.stdout}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }
  const run = (host: string, command: string): Promise<SshResult> => sshToLab(lab, host, command);

  const memberTasks = (extra: Partial<EtcdMemberParams> = {}) =>
    ensureEtcdMember({
      name: (host: HostView) => host.name,
      ip: (host: HostView) => members.find((member) => member.name === host.name)!.ip,
      members: () => members,
      ...files,
      ...extra,
    });
  const health = () =>
    etcdHealthy({
      endpoints: () => members.map((member) => `https://${member.ip}:2379`),
      cacert: files.trustedCaFile,
      cert: files.certFile,
      key: files.keyFile,
      members: 3,
    });
  const etcdctl = `ETCDCTL_API=3 etcdctl --cacert=${files.trustedCaFile} --cert=${files.certFile} --key=${files.keyFile}`;
  const hashState = 'find /etc /var/lib -xdev \\( -type f -o -type l \\) -print0 2>/dev/null | sort -z | xargs -0 sha256sum 2>/dev/null | sha256sum';

  before(async function () {
    skipUnlessLabSupported(this);
    lab = await withLab(3);
    members = lab.hosts.map((host) => ({ name: host.name, ip: host.address }));
    pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'capstan-etcd-pki-')), [
      { name: 'kubernetes', commonName: 'kubernetes', organization: 'Kubernetes', ipAddresses: [...members.map((m) => m.ip), '127.0.0.1'], dnsNames: ['kubernetes'] },
    ]);
    otherPki = await makeTestPki(mkdtempSync(join(tmpdir(), 'capstan-etcd-other-')), [
      { name: 'intruder', commonName: 'admin', organization: 'system:masters', ipAddresses: ['127.0.0.1'] },
    ]);
    // The certificates as the seed places them (ensurePki/installPkiFiles do this in the playbook).
    const install = (dir: string, name: string, mode: string) => `install -m ${mode} /dev/stdin /etc/etcd/${name}`;
    await Promise.all(
      members.map(async ({ name }) => {
        await ok(name, 'mkdir -p /etc/etcd');
        await ok(name, install(pki, 'ca.pem', '0644'), readFileSync(join(pki, 'ca.pem'), 'utf8'));
        await ok(name, install(pki, 'kubernetes.pem', '0644'), readFileSync(join(pki, 'kubernetes.pem'), 'utf8'));
        await ok(name, install(pki, 'kubernetes-key.pem', '0600'), readFileSync(join(pki, 'kubernetes-key.pem'), 'utf8'));
      }),
    );
    await ok('node1', 'mkdir -p /root/intruder');
    await ok('node1', 'cat > /root/intruder/cert.pem', readFileSync(join(otherPki, 'intruder.pem'), 'utf8'));
    await ok('node1', 'install -m 0600 /dev/stdin /root/intruder/key.pem', readFileSync(join(otherPki, 'intruder-key.pem'), 'utf8'));
    await ok('node1', 'cat > /root/intruder/ca.pem', readFileSync(join(otherPki, 'ca.pem'), 'utf8'));
  });

  after(async function () {
    for (const dir of [pki, otherPki]) if (dir) rmSync(dir, { recursive: true, force: true });
    if (lab && !process.env.CAPSTAN_LAB_REUSE) await labDown();
  });

  it('check mode reports every change and changes nothing (/etc and /var/lib hashed before and after)', async function () {
    const before = await Promise.all(members.map((m) => ok(m.name, hashState)));
    const result = await runTasks(lab, 'all', [...memberTasks(), health()], { check: true });
    expect(result.exitCode, JSON.stringify(result.tasks.filter((t) => t.status === 'failed'))).to.equal(0);
    for (const host of ['node1', 'node2', 'node3']) expect(result.recap[host]).to.deep.include({ changed: 4, failed: 0 });
    const service = result.tasks.find((t) => t.host === 'node1' && t.task === 'etcd:service')!;
    expect(service.drift[0]!.pending).to.be.a('string');
    const after = await Promise.all(members.map((m) => ok(m.name, hashState)));
    expect(after).to.deep.equal(before);
    expect((await run('node1', 'dpkg-query -W etcd-server')).code).to.equal(1);
  });

  it('forms a 3-member cluster over TLS: member list and endpoint health from every host', async function () {
    const result = await runTasks(lab, 'all', [...memberTasks(), health()]);
    expect(result.exitCode, JSON.stringify(result.tasks.filter((t) => t.status === 'failed'))).to.equal(0);
    for (const host of ['node1', 'node2', 'node3']) expect(result.recap[host]).to.deep.include({ ok: 1, changed: 3, failed: 0 });
    const endpoints = members.map((m) => `https://${m.ip}:2379`).join(',');
    for (const { name } of members) {
      const list = await ok(name, `${etcdctl} --endpoints=https://127.0.0.1:2379 member list`);
      const rows = list.trim().split('\n').map((line) => line.split(', ').slice(1, 5)).sort((a, b) => a[1]!.localeCompare(b[1]!));
      expect(rows).to.deep.equal(members.map((m) => ['started', m.name, `https://${m.ip}:2380`, `https://${m.ip}:2379`]));
      const healthOut = await run(name, `${etcdctl} --endpoints=${endpoints} endpoint health`);
      expect(healthOut.code, healthOut.stderr).to.equal(0);
      const lines = `${healthOut.stdout}${healthOut.stderr}`.trim().split('\n').sort();
      expect(lines).to.have.length(3);
      lines.forEach((line, index) => expect(line).to.match(new RegExp(`^https://${members[index]!.ip.replace(/\./g, '\\.')}:2379 is healthy: successfully committed proposal: took = `)));
    }
    // The unit is the seed's, exactly; the package's default member never ran.
    expect(await ok('node2', 'cat /etc/systemd/system/etcd.service')).to.equal(renderEtcdUnit({ name: 'node2', ip: members[1]!.ip, members, ...files }));
    expect(await ok('node2', 'systemctl is-enabled etcd; systemctl is-active etcd; ls -A /var/lib/etcd; stat -c %a /var/lib/etcd/member')).to.equal('enabled\nactive\nmember\n700\n');
    // Data written on one member is read on another.
    await ok('node1', `${etcdctl} --endpoints=https://127.0.0.1:2379 put /capstan/test hello`);
    expect(await ok('node3', `${etcdctl} --endpoints=https://127.0.0.1:2379 get /capstan/test --print-value-only`)).to.equal('hello\n');
  });

  it('a second run changes nothing and leaves the members running (same PIDs)', async function () {
    const pids = await Promise.all(members.map((m) => ok(m.name, 'systemctl show -p MainPID --value etcd')));
    const result = await runTasks(lab, 'all', [...memberTasks(), health()]);
    expect(result.exitCode).to.equal(0);
    for (const host of ['node1', 'node2', 'node3']) expect(result.recap[host]).to.deep.include({ ok: 4, changed: 0, failed: 0 });
    expect(await Promise.all(members.map((m) => ok(m.name, 'systemctl show -p MainPID --value etcd')))).to.deep.equal(pids);
  });

  it('restarts a member only when its unit changed, and the cluster stays healthy', async function () {
    const pid = (host: string) => ok(host, 'systemctl show -p MainPID --value etcd');
    const before = [await pid('node1'), await pid('node2')];
    // The token matters only at bootstrap: a member with data ignores it, so the cluster survives.
    const changed = await runTasks(lab, 'node1', [...memberTasks({ clusterToken: 'etcd-cluster-1' })]);
    expect(changed.exitCode).to.equal(0);
    expect(changed.tasks.filter((t) => t.status === 'changed').map((t) => t.task)).to.deep.equal(['systemd-unit:/etc/systemd/system/etcd.service', 'etcd:service']);
    expect(await pid('node1')).not.to.equal(before[0]);
    expect(await pid('node2')).to.equal(before[1]);
    expect(await ok('node1', 'tr "\\0" " " < /proc/$(systemctl show -p MainPID --value etcd)/cmdline')).to.include('--initial-cluster-token etcd-cluster-1 ');
    const back = await runTasks(lab, 'node1', [...memberTasks(), health()]);
    expect(back.exitCode).to.equal(0);
    expect(back.recap.node1).to.deep.include({ changed: 2, failed: 0 });
  });

  it('refuses plain HTTP, clients without a certificate, and certificates of another CA', async function () {
    const ip = members[0]!.ip;
    // The client port is TLS only: a plain HTTP request gets no answer at all.
    const plain = await run('node2', `curl -sS --max-time 5 http://${ip}:2379/health`);
    expect([plain.code, plain.stdout, plain.stderr]).to.deep.equal([52, '', 'curl: (52) Empty reply from server\n']);
    const noCert = await run('node2', `curl -sS --max-time 5 --cacert ${files.trustedCaFile} https://${ip}:2379/health`);
    expect(noCert.code).not.to.equal(0);
    expect(noCert.stdout).to.equal('');
    const since = (await ok('node1', 'date +%s')).trim();
    const intruder = await run('node1', `ETCDCTL_API=3 etcdctl --endpoints=https://${ip}:2379 --cacert=${files.trustedCaFile} --cert=/root/intruder/cert.pem --key=/root/intruder/key.pem --dial-timeout=3s --command-timeout=5s get /capstan/test`);
    expect(intruder.code).to.equal(1);
    expect(intruder.stderr).to.include('Error: context deadline exceeded');
    expect(intruder.stdout).to.equal('');
    const journal = await ok('node1', `journalctl -u etcd --no-pager -o cat --since @${since}`);
    expect(journal).to.match(/rejected connection from "[\d.]+:\d+" \(error "tls: failed to verify client certificate: x509: certificate signed by unknown authority/);
    // And a client that does not trust the cluster's CA does not talk to it either.
    const wrongServerCa = await run('node1', `ETCDCTL_API=3 etcdctl --endpoints=https://${ip}:2379 --cacert=/root/intruder/ca.pem --cert=${files.certFile} --key=${files.keyFile} --dial-timeout=3s --command-timeout=5s get /capstan/test`);
    expect(wrongServerCa.code).to.equal(1);
    expect(wrongServerCa.stdout).to.equal('');
    const good = await ok('node1', `${etcdctl} --endpoints=https://${ip}:2379 get /capstan/test --print-value-only`);
    expect(good).to.equal('hello\n');
  });
});
