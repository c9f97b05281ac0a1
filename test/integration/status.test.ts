/**
 * playbooks/status.ts on one small kubeadm cluster (cp1 + w1, the Kubernetes stand-ins, built as
 * certs.test.ts builds its own): the Nodes table as kubectl lists the nodes, /readyz ok, the
 * certificate rows, a token made with `kubeadm token create` shown by its id while its secret
 * appears nowhere (stdout, --json, run log), --check showing the same, and nothing changed.
 */
import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import type { LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, eventsOf } from '../helpers/cli.js';
import { expectNothingChanged } from '../helpers/recap.js';
import { installKubernetesStandIns } from '../lab/install.js';

const STATE = 'find /etc/kubernetes /var/lib/kubelet/pki -type f -exec sha256sum {} + | sort | sha256sum';

type Report = { title: string; columns: string[]; rows: string[][] };

function reportsOf(stdout: string): Report[] {
  return eventsOf(stdout).filter((e) => e.type === 'report').map((e) => ({ title: String(e.title), columns: e.columns as string[], rows: e.rows as string[][] }));
}

function report(stdout: string, title: string): Report {
  const found = reportsOf(stdout).find((r) => r.title === title);
  if (!found) throw new Error(`no ${title} report in: ${stdout.slice(-2000)}`);
  return found;
}

async function sh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

describe('status.ts: the cluster at a glance (lab, Kubernetes stand-ins)', function () {
  this.timeout(900_000);
  let lab: LabState;
  let status: string[];
  const started = Date.now();

  before(async () => {
    lab = await withLab([
      { name: 'cp1', groups: ['control_plane'] },
      { name: 'w1', groups: ['workers'] },
    ]);
    await installKubernetesStandIns(lab);
    const url = pathToFileURL('test/fixtures/cni/flannel-lab.yaml').href;
    const built = await capstan(['run', 'test/fixtures/playbooks/kubeadm-lab.ts', '-i', lab.inventoryPath, '-e', `cni_manifest_url=${url}`, '--json']);
    expect(built.code, built.stdout.slice(-3000) + built.stderr).to.equal(0);
    console.log(`      [status] cluster cp1 + w1 built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    status = ['run', 'playbooks/status.ts', '-i', lab.inventoryPath];
  });

  after(() => console.log(`      [status] describe took ${((Date.now() - started) / 1000).toFixed(0)} s`));

  it('shows the nodes as kubectl lists them, /readyz ok, the certificates; --check shows the same; nothing changed', async () => {
    const before = await sh(lab, 'cp1', STATE);
    const t0 = Date.now();
    const result = await capstan([...status, '--json']);
    expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
    console.log(`      [status] status run took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const version = (await sh(lab, 'w1', 'kubelet --version')).trim().replace(/^Kubernetes /, '');
    expect(version).to.match(/^v1\.\d+\.\d+$/);
    const address = (name: string) => lab.hosts.find((h) => h.name === name)!.address;
    expect(report(result.stdout, 'Nodes')).to.deep.equal({
      title: 'Nodes',
      columns: ['NAME', 'ROLES', 'VERSION', 'READY', 'INTERNAL-IP'],
      rows: [
        ['cp1', 'control-plane', version, 'Ready', address('cp1')],
        ['w1', '<none>', version, 'Ready', address('w1')],
      ],
    });
    expect(report(result.stdout, 'Control planes')).to.deep.equal({ title: 'Control planes', columns: ['HOST', 'READYZ'], rows: [['cp1', 'ok']] });
    const certificates = report(result.stdout, 'Certificates').rows.map((r) => `${r[0]} ${r[1]} ${r[3]}`);
    expect(certificates).to.include.members(['cp1 apiserver 364d', 'cp1 ca 9y', 'cp1 kubelet-client 364d', 'w1 kubelet-client 364d']);
    expect(reportsOf(result.stdout).map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'Certificates', 'Join tokens']);
    expectNothingChanged(result.stdout, ['cp1', 'w1']);

    const check = await capstan([...status, '--json', '--check']);
    expect(check.code, check.stderr).to.equal(0);
    // The same tables, but for the ticking TTL of kubeadm init's token and the certificates' residual time.
    const stable = (stdout: string) => reportsOf(stdout).map((r) => (r.title === 'Join tokens' ? { ...r, rows: r.rows.map((row) => [row[0]!, ...row.slice(2)]) } : r));
    expect(stable(check.stdout)).to.deep.equal(stable(result.stdout));
    expectNothingChanged(check.stdout, ['cp1', 'w1']);
    expect(await sh(lab, 'cp1', STATE)).to.equal(before);
  });

  it('shows a join token by its id only: its secret is in no output, --json or run log', async () => {
    const token = (await sh(lab, 'cp1', 'kubeadm token create --ttl 2h --description "status test"')).trim();
    const [id, secret] = token.split('.') as [string, string];
    expect(secret).to.match(/^[a-z0-9]{16}$/);
    for (const json of [true, false]) {
      const result = await capstan([...status, ...(json ? ['--json'] : [])]);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      const outputs: [string, string][] = [['stdout', result.stdout], ['stderr', result.stderr], ...Object.entries(result.runLogs)];
      for (const [where, text] of outputs) {
        expect(text.includes(secret), `the token's secret in ${where}`).to.equal(false);
      }
      expect(Object.keys(result.runLogs).length, 'a run log was written').to.be.greaterThan(0);
      if (json) {
        const row = report(result.stdout, 'Join tokens').rows.find((r) => r[0] === id);
        expect(row, `token ${id} in the table`).to.not.equal(undefined);
        expect([row![1], row![3], row![4], row![5]]).to.deep.equal(['1h', 'authentication,signing', 'status test', 'system:bootstrappers:kubeadm:default-node-token']);
        expectNothingChanged(result.stdout, ['cp1', 'w1']);
      } else {
        expect(result.stdout).to.match(new RegExp(`^Join tokens:$[\\s\\S]*^${id}\\s+1h\\s`, 'm'));
        console.log(result.stdout.slice(result.stdout.indexOf('Nodes:')));
      }
    }
  });
});
