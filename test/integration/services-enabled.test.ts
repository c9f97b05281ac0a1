import { expect } from 'chai';
import type { LabState } from '../../runner/lab/index.js';
import { containerRuntimeTasks } from '../../playbooks/vars.js';
import { skipUnlessLabSupported, sshToLab, withLab } from '../helpers/lab.js';
import { runTasks } from '../helpers/tasks.js';

async function ssh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/**
 * Issue 14 item 2: the container runtime must start at the next boot, not only run now. Docker's
 * rpm leaves containerd disabled; here a Debian lab host is put in that state by hand
 * (`systemctl disable --now containerd`) and the playbooks' runtime play must report it as drift,
 * enable and start it, and leave it alone on the next run.
 */
describe('container runtime enabled at boot and running (lab)', function () {
  this.timeout(600_000);
  let lab: LabState;
  const runtime = containerRuntimeTasks({ containerdSource: 'distro', dockerEngine: false });

  before(async function () {
    this.timeout(600_000);
    skipUnlessLabSupported(this);
    lab = await withLab(1);
    const first = await runTasks(lab, 'all', runtime);
    expect(first.exitCode, JSON.stringify(first.tasks.map((t) => [t.task, t.status, t.message]))).to.equal(0);
  });

  it('a disabled, stopped containerd is "changed": enabled and active; the second run changes nothing', async () => {
    await ssh(lab, 'node1', 'systemctl disable --now containerd');
    expect((await sshToLab(lab, 'node1', 'systemctl is-enabled containerd')).stdout.trim()).to.equal('disabled');

    const check = await runTasks(lab, 'all', runtime, { check: true });
    const service = check.tasks.find((t) => t.task === 'service:containerd');
    expect(service?.status).to.equal('changed');
    expect(service?.drift.map((d) => `${d.subject}: ${d.current} → ${d.desired}`)).to.deep.equal(['enabled: disabled → enabled', 'running: inactive → active']);
    expect((await sshToLab(lab, 'node1', 'systemctl is-enabled containerd')).stdout.trim()).to.equal('disabled');

    const fixed = await runTasks(lab, 'all', runtime);
    expect(fixed.exitCode).to.equal(0);
    expect(fixed.tasks.find((t) => t.task === 'service:containerd')?.status).to.equal('changed');
    expect(await ssh(lab, 'node1', 'systemctl is-enabled containerd; systemctl is-active containerd')).to.equal('enabled\nactive\n');

    const again = await runTasks(lab, 'all', runtime);
    expect(again.exitCode).to.equal(0);
    expect(again.recap.node1).to.include({ changed: 0, failed: 0 });
  });
});
