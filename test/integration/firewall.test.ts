import { expect } from 'chai';
import type { LabState } from '../../runner/lab/index.js';
import { ensureFirewallPorts } from '../../tasks/firewall.js';
import { sshToLab, skipUnlessLabSupported, withLab } from '../helpers/lab.js';
import { runTasks, type TaskRun } from '../helpers/tasks.js';

async function ssh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

function firewallEvent(run: TaskRun, host: string) {
  const event = run.tasks.find((t) => t.host === host && t.task === 'firewall:ports');
  if (!event) throw new Error(`no firewall event on ${host}: ${JSON.stringify(run.tasks.map((t) => [t.host, t.task, t.status]))}`);
  return event;
}

const APT_INSTALL = 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold';
/** What the firewalld host shows: runtime and permanent ports and protocols, one line each. */
const FIREWALLD_LISTS = 'firewall-cmd --list-ports; firewall-cmd --list-protocols; firewall-cmd --permanent --list-ports; firewall-cmd --permanent --list-protocols';

const UFW_HEADER = 'Status: active\n\nTo                         Action      From\n--                         ------      ----\n';
const ufwLine = (to: string, from = 'Anywhere') => `${to.padEnd(27)}ALLOW       ${from.padEnd(26)}\n`; // ufw pads every column, the last one too

describe('firewall: Debian ufw and firewalld on lab hosts (lab)', function () {
  this.timeout(600_000);
  let lab: LabState;
  const ports = ['6443/tcp', '10250-10255/tcp', '30000-32767/udp', '6783-6784/udp'];
  /** node1 runs ufw, node2 firewalld (which can open VRRP too), node3 no firewall. */
  const task = ensureFirewallPorts({ ports: (host) => (host.name === 'node2' ? [...ports, 'protocol/112'] : ports) });

  before(async function () {
    this.timeout(600_000);
    skipUnlessLabSupported(this);
    lab = await withLab(3);
    await Promise.all([
      // SSH first, so that enabling ufw keeps the lab reachable.
      ssh(lab, 'node1', `(apt-get update -qq && ${APT_INSTALL} ufw) >/dev/null && ufw allow 22/tcp >/dev/null && ufw --force enable >/dev/null`),
      // Debian's firewalld starts on install; its default zone (public) allows ssh.
      ssh(lab, 'node2', `(apt-get update -qq && ${APT_INSTALL} firewalld) >/dev/null && systemctl start firewalld && firewall-cmd --state`),
    ]);
  });

  it('--check lists exactly the missing rules and changes nothing; a host without a firewall shows no drift', async () => {
    const ufwBefore = await ssh(lab, 'node1', 'ufw status');
    const firewalldBefore = await ssh(lab, 'node2', FIREWALLD_LISTS);
    const check = await runTasks(lab, 'all', [task], { check: true });
    expect(check.exitCode).to.equal(0);
    expect(firewallEvent(check, 'node1').drift.map((d) => d.subject)).to.deep.equal(ports.map((p) => `ufw: ${p}`));
    expect(firewallEvent(check, 'node2').drift.map((d) => d.subject)).to.deep.equal([...ports, 'protocol/112'].map((p) => `firewalld: ${p}`));
    expect(firewallEvent(check, 'node3').drift).to.deep.equal([]);
    expect(check.recap.node3).to.include({ ok: 1, changed: 0 });
    expect(await ssh(lab, 'node1', 'ufw status')).to.equal(ufwBefore);
    expect(await ssh(lab, 'node2', FIREWALLD_LISTS)).to.equal(firewalldBefore);
  });

  it('apply opens exactly those rules, runtime and permanent; a second run changes nothing', async () => {
    const apply = await runTasks(lab, 'all', [task]);
    expect(apply.exitCode, JSON.stringify(apply.events.filter((e) => e.type === 'task' && e.status === 'failed'))).to.equal(0);
    expect(apply.recap.node1).to.include({ changed: 1, failed: 0 });
    expect(apply.recap.node2).to.include({ changed: 1, failed: 0 });
    expect(apply.recap.node3).to.include({ changed: 0, failed: 0 });
    expect(await ssh(lab, 'node1', 'ufw status')).to.equal(
      UFW_HEADER +
        ['22/tcp', '6443/tcp', '10250:10255/tcp', '30000:32767/udp', '6783:6784/udp'].map((to) => ufwLine(to)).join('') +
        ['22/tcp', '6443/tcp', '10250:10255/tcp', '30000:32767/udp', '6783:6784/udp'].map((to) => ufwLine(`${to} (v6)`, 'Anywhere (v6)')).join('') +
        '\n',
    );
    // firewalld keeps its rules as sets: --list-ports prints them in no promised order.
    const sortedWords = (text: string) => text.split('\n').map((line) => line.split(' ').sort().join(' ')).join('\n');
    const both = '10250-10255/tcp 30000-32767/udp 6443/tcp 6783-6784/udp\n112\n';
    expect(sortedWords(await ssh(lab, 'node2', FIREWALLD_LISTS))).to.equal(both + both);
    const again = await runTasks(lab, 'all', [task]);
    for (const host of ['node1', 'node2', 'node3']) expect(again.recap[host]).to.include({ changed: 0, failed: 0 });
  });

  after(async () => {
    // The lab may be reused by other suites: no firewall left behind.
    if (!lab) return;
    await sshToLab(lab, 'node1', 'ufw --force disable >/dev/null; ufw --force reset >/dev/null');
    await sshToLab(lab, 'node2', 'systemctl disable --now firewalld');
  });
});
