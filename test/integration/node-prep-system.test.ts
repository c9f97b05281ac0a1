import { expect } from 'chai';
import type { LabState } from '../../runner/lab/index.js';
import { loadInventory } from '../../runner/inventory/index.js';
import { hostFactory } from '../../runner/connect.js';
import { runPlaybook, type RunSummary } from '../../runner/run.js';
import { playbook, type PlaybookContext } from '../../runner/playbook.js';
import type { RunEvent } from '../../runner/events.js';
import type { Task } from '../../runner/task.js';
import { ensureFile } from '../../tasks/files.js';
import { ensureService, ensureSystemdUnit, reloadService, restartService } from '../../tasks/systemd.js';
import { ensureAlternatives, ensureHostname, ensureHostsEntries, ensureIptablesLegacy, ensureKubeletExtraArgs } from '../../tasks/system.js';
import { preflight } from '../../tasks/preflight.js';
import { runTasks, type TaskRun } from '../helpers/tasks.js';
import { sshToLab, withLab } from '../helpers/lab.js';

/** Names, modes, owners and bytes of everything under /etc and /var/lib, to prove a run wrote nothing. */
const HASH_STATE =
  "find /etc /var/lib -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum; hostname";

const STARTS = '/var/lib/capstan-demo.starts';

/** The demo service: each start appends a line to STARTS (so restarts can be counted), then sleeps. */
function demoUnit(version: number): string {
  return [
    '[Unit]',
    'Description=Capstan demo service',
    '',
    '[Service]',
    `Environment=DEMO_VERSION=${version}`,
    `ExecStartPre=/bin/sh -c 'echo "$$DEMO_VERSION" >> ${STARTS}'`,
    'ExecStart=/bin/sleep infinity',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

const restartDemo = restartService('capstan-demo');
const demoTasks = (version: number): Task<unknown>[] => [
  ensureSystemdUnit({ name: 'capstan-demo', content: demoUnit(version) }, { notify: [restartDemo] }),
  ensureService('capstan-demo', { enabled: true, running: true }),
];

/** `<task id> <status>` per task of the host; a failed task's message is added, so a failing assertion says why. */
function statuses(run: TaskRun, host: string): string[] {
  return run.tasks.filter((t) => t.host === host).map((t) => `${t.task} ${t.status}${t.status === 'failed' ? `: ${t.message}` : ''}`);
}

/** Runs a playbook body on the lab through the real engine and SSH (like runTasks, for bodies with several plays). */
async function runBody(lab: LabState, body: (ctx: PlaybookContext) => Promise<void>, options: { check?: boolean } = {}): Promise<RunSummary & { events: RunEvent[] }> {
  const events: RunEvent[] = [];
  const summary = await runPlaybook(playbook('test', body), {
    inventory: await loadInventory(lab.inventoryPath),
    checkMode: options.check === true,
    forks: 50,
    extraVars: {},
    reporter: { emit: (event) => void events.push(event), close: () => undefined },
    connect: hostFactory({ acceptNewHostKeys: false }),
  });
  return { ...summary, events };
}

async function sh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

describe('node prep: systemd services, alternatives, hostname, /etc/hosts, kubelet args, preflight (lab)', function () {
  this.timeout(600_000);
  let lab: LabState;
  let address: Record<string, string>;

  before(async function () {
    this.timeout(600_000);
    lab = await withLab(3);
    address = Object.fromEntries(lab.hosts.map((h) => [h.name, h.address]));
  });

  const identityTasks = (): Task<unknown>[] => [
    ensureHostname((host) => `${host.name}.capstan.lab`),
    ensureHostsEntries(lab.hosts.map((h) => ({ ip: h.address, names: [`${h.name}.capstan.lab`, h.name] }))),
    ensureKubeletExtraArgs({ nodeIp: (host) => address[host.name]! }),
  ];

  it('check mode on a fresh host reports every change and changes nothing', async () => {
    const before = await sh(lab, 'node1', HASH_STATE);
    const run = await runTasks(lab, 'node1', [...demoTasks(1), ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' }), ...identityTasks()], { check: true });
    expect(run.exitCode).to.equal(0);
    expect(statuses(run, 'node1')).to.deep.equal([
      'systemd-unit:/etc/systemd/system/capstan-demo.service changed',
      'service:capstan-demo changed', // its check fails (no such unit yet) after a pending change: "would change (pending …)"
      'alternatives:iptables changed', // iptables is not installed: pending too
      'hostname changed',
      'hosts:node1.capstan.lab,node1,node2.capstan.lab,node2,node3.capstan.lab,node3 changed',
      'kubelet-extra-args changed',
      'service:capstan-demo:restart changed', // the handler would run
    ]);
    const service = run.tasks.find((t) => t.task === 'service:capstan-demo')!;
    expect(service.message).to.match(/^would change \(pending: systemd unit \/etc\/systemd\/system\/capstan-demo.service\); check could not run yet: capstan-demo.service not found/);
    expect(run.tasks.find((t) => t.task === 'hostname')!.drift.map((d) => [d.subject, d.current, d.desired])[0]).to.deep.equal(['hostname', 'node1', 'node1.capstan.lab']);
    expect(await sh(lab, 'node1', HASH_STATE)).to.equal(before);
  });

  it('a unit file and ensureService converge: enabled and active; a second run changes nothing', async () => {
    const first = await runTasks(lab, 'node1', demoTasks(1));
    expect(first.exitCode, JSON.stringify(first.tasks)).to.equal(0);
    expect(statuses(first, 'node1')).to.deep.equal([
      'systemd-unit:/etc/systemd/system/capstan-demo.service changed',
      'service:capstan-demo changed',
      'service:capstan-demo:restart changed',
    ]);
    expect(first.tasks[1]!.drift.map((d) => `${d.subject}: ${d.current} → ${d.desired}`)).to.deep.equal(['enabled: disabled → enabled', 'running: inactive → active']);
    expect(await sh(lab, 'node1', 'systemctl is-enabled capstan-demo; systemctl is-active capstan-demo; stat -c %a /etc/systemd/system/capstan-demo.service; cat /etc/systemd/system/capstan-demo.service')).to.equal(
      `enabled\nactive\n644\n${demoUnit(1)}`,
    );
    const pid = await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo');
    const starts = await sh(lab, 'node1', `cat ${STARTS}`);
    expect(starts).to.equal('1\n1\n'); // started by ensureService, then restarted once by the notified handler

    const second = await runTasks(lab, 'node1', demoTasks(1));
    expect(statuses(second, 'node1')).to.deep.equal(['systemd-unit:/etc/systemd/system/capstan-demo.service ok', 'service:capstan-demo ok']);
    expect(await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo')).to.equal(pid);
    expect(await sh(lab, 'node1', `cat ${STARTS}`)).to.equal(starts);
  });

  it('changing the unit reloads systemd and restarts the service through its handler exactly once; the next run restarts nothing', async () => {
    const pidBefore = await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo');
    const changed = await runTasks(lab, 'node1', demoTasks(2));
    expect(changed.exitCode).to.equal(0);
    expect(statuses(changed, 'node1')).to.deep.equal([
      'systemd-unit:/etc/systemd/system/capstan-demo.service changed',
      'service:capstan-demo ok',
      'service:capstan-demo:restart changed',
    ]);
    const pidAfter = await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo');
    expect(pidAfter).not.to.equal(pidBefore);
    // One more start, and it ran the new definition (daemon-reload happened before the restart).
    expect(await sh(lab, 'node1', `cat ${STARTS}; systemctl show -p NeedDaemonReload --value capstan-demo; systemctl is-active capstan-demo`)).to.equal('1\n1\n2\nno\nactive\n');

    const again = await runTasks(lab, 'node1', demoTasks(2));
    expect(statuses(again, 'node1')).to.deep.equal(['systemd-unit:/etc/systemd/system/capstan-demo.service ok', 'service:capstan-demo ok']);
    expect(await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo')).to.equal(pidAfter);
    expect(await sh(lab, 'node1', `cat ${STARTS}`)).to.equal('1\n1\n2\n');
  });

  it('a unit file changed behind systemd\'s back (NeedDaemonReload=yes) is reloaded by ensureSystemdUnit and ensureService', async () => {
    await sh(lab, 'node1', "sed -i 's/DEMO_VERSION=2/DEMO_VERSION=3/' /etc/systemd/system/capstan-demo.service && systemctl show -p NeedDaemonReload --value capstan-demo");
    expect(await sh(lab, 'node1', 'systemctl show -p NeedDaemonReload --value capstan-demo')).to.equal('yes\n');
    const service = await runTasks(lab, 'node1', [ensureService('capstan-demo', { enabled: true, running: true })]);
    expect(service.tasks.map((t) => [t.status, t.drift.map((d) => d.subject)])).to.deep.equal([['changed', ['daemon-reload']]]);
    expect(await sh(lab, 'node1', 'systemctl show -p NeedDaemonReload --value capstan-demo')).to.equal('no\n');

    await sh(lab, 'node1', "sed -i 's/DEMO_VERSION=3/DEMO_VERSION=2/' /etc/systemd/system/capstan-demo.service");
    const unit = await runTasks(lab, 'node1', [ensureSystemdUnit({ name: 'capstan-demo', content: demoUnit(2) })]);
    expect(unit.tasks.map((t) => [t.status, t.drift.map((d) => d.subject)])).to.deep.equal([['changed', ['daemon-reload']]]);
    expect(await sh(lab, 'node1', 'systemctl show -p NeedDaemonReload --value capstan-demo')).to.equal('no\n');
  });

  it('restartOn restarts a running service whose file changed after it started, once', async () => {
    await sh(lab, 'node1', 'echo a > /etc/capstan-demo.conf; sleep 1.2; systemctl restart capstan-demo');
    const task = ensureService('capstan-demo', { running: true, restartOn: ['/etc/capstan-demo.conf'] });
    expect(statuses(await runTasks(lab, 'node1', [task]), 'node1')).to.deep.equal(['service:capstan-demo ok']);
    const pid = await sh(lab, 'node1', 'sleep 1.2; echo b > /etc/capstan-demo.conf; systemctl show -p MainPID --value capstan-demo');
    const check = await runTasks(lab, 'node1', [task], { check: true });
    expect(check.tasks[0]!.drift.map((d) => d.subject)).to.deep.equal(['restart']);
    expect(await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo')).to.equal(pid);
    const run = await runTasks(lab, 'node1', [task]);
    expect(statuses(run, 'node1')).to.deep.equal(['service:capstan-demo changed']);
    expect(await sh(lab, 'node1', 'systemctl show -p MainPID --value capstan-demo')).not.to.equal(pid);
    expect(statuses(await runTasks(lab, 'node1', [task]), 'node1')).to.deep.equal(['service:capstan-demo ok']);
  });

  it('reloadService: a changed configuration reloads the running service once, without restarting it', async () => {
    const unit = "[Service]\nExecStart=/bin/sleep infinity\nExecReload=/bin/sh -c 'echo reload >> /var/lib/capstan-reload.log'\n";
    const tasks = (config: string): Task<unknown>[] => [
      ensureSystemdUnit({ name: 'capstan-reload', content: unit }),
      ensureService('capstan-reload', { running: true }),
      ensureFile({ path: '/etc/capstan-reload.conf', content: config }, { notify: [reloadService('capstan-reload')] }),
    ];
    const first = await runTasks(lab, 'node2', tasks('a\n'));
    expect(statuses(first, 'node2')).to.deep.equal([
      'systemd-unit:/etc/systemd/system/capstan-reload.service changed',
      'service:capstan-reload changed',
      'file:/etc/capstan-reload.conf changed',
      'service:capstan-reload:reload changed',
    ]);
    const pid = await sh(lab, 'node2', 'systemctl show -p MainPID --value capstan-reload');
    expect(await sh(lab, 'node2', 'cat /var/lib/capstan-reload.log')).to.equal('reload\n');
    expect(statuses(await runTasks(lab, 'node2', tasks('a\n')), 'node2')).to.deep.equal([
      'systemd-unit:/etc/systemd/system/capstan-reload.service ok',
      'service:capstan-reload ok',
      'file:/etc/capstan-reload.conf ok',
    ]);
    const changed = await runTasks(lab, 'node2', tasks('b\n'));
    expect(statuses(changed, 'node2').slice(2)).to.deep.equal(['file:/etc/capstan-reload.conf changed', 'service:capstan-reload:reload changed']);
    expect(await sh(lab, 'node2', 'cat /var/lib/capstan-reload.log; systemctl show -p MainPID --value capstan-reload')).to.equal(`reload\nreload\n${pid}`);
  });

  it('stopping, disabling and removing the unit; then the missing unit wanted off is in sync', async () => {
    const tasks = [ensureService('capstan-demo', { enabled: false, running: false }), ensureSystemdUnit({ name: 'capstan-demo', state: 'absent' })];
    const first = await runTasks(lab, 'node1', tasks);
    expect(statuses(first, 'node1')).to.deep.equal(['service:capstan-demo changed', 'systemd-unit:/etc/systemd/system/capstan-demo.service changed']);
    expect(first.tasks[0]!.drift.map((d) => `${d.subject}: ${d.current} → ${d.desired}`)).to.deep.equal(['enabled: enabled → disabled', 'running: active → inactive']);
    expect(await sh(lab, 'node1', 'test ! -e /etc/systemd/system/capstan-demo.service && systemctl show -p LoadState -p ActiveState -p UnitFileState capstan-demo | sort')).to.equal(
      'ActiveState=inactive\nLoadState=not-found\nUnitFileState=\n',
    );
    expect(statuses(await runTasks(lab, 'node1', tasks), 'node1')).to.deep.equal(['service:capstan-demo ok', 'systemd-unit:/etc/systemd/system/capstan-demo.service ok']);
  });

  it('a masked unit is reported clearly, not unmasked', async () => {
    await sh(lab, 'node2', 'systemctl mask systemd-hostnamed');
    try {
      const run = await runTasks(lab, 'node2', [ensureService('systemd-hostnamed', { running: true })]);
      expect(run.exitCode).to.equal(2);
      expect(run.tasks[0]!.message).to.equal(
        'check failed: systemd-hostnamed.service is masked (systemctl is-enabled: masked), so it cannot be started; someone masked it on purpose: unmask it (systemctl unmask systemd-hostnamed.service) if it should run',
      );
      expect(await sh(lab, 'node2', 'systemctl is-enabled systemd-hostnamed || true')).to.equal('masked\n');
    } finally {
      await sh(lab, 'node2', 'systemctl unmask systemd-hostnamed');
    }
  });

  it('iptables alternatives: legacy selected and pinned, converged on the second run; a host without iptables fails clearly', async () => {
    await sh(lab, 'node2', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null');
    expect(await sh(lab, 'node2', 'update-alternatives --query iptables | grep -E "^(Status|Value):"')).to.equal('Status: auto\nValue: /usr/sbin/iptables-nft\n');
    const first = await runTasks(lab, 'node2', ensureIptablesLegacy());
    expect(first.exitCode, JSON.stringify(first.tasks)).to.equal(0);
    expect(statuses(first, 'node2')).to.deep.equal(['alternatives:iptables changed', 'alternatives:ip6tables changed', 'alternatives:arptables ok', 'alternatives:ebtables ok']);
    expect(await sh(lab, 'node2', 'for n in iptables ip6tables; do update-alternatives --query $n | grep -E "^(Status|Value):"; done; readlink -f /usr/sbin/iptables; iptables -V')).to.match(
      /^Status: manual\nValue: \/usr\/sbin\/iptables-legacy\nStatus: manual\nValue: \/usr\/sbin\/ip6tables-legacy\n\/usr\/sbin\/xtables-legacy-multi\niptables v[\d.]+ \(legacy\)\n$/,
    );
    const second = await runTasks(lab, 'node2', ensureIptablesLegacy());
    expect(statuses(second, 'node2')).to.deep.equal(['alternatives:iptables ok', 'alternatives:ip6tables ok', 'alternatives:arptables ok', 'alternatives:ebtables ok']);

    const missing = await runTasks(lab, 'node3', [ensureAlternatives({ name: 'iptables', path: '/usr/sbin/iptables-legacy' })]);
    expect(missing.tasks[0]!.message).to.equal(
      'check failed: update-alternatives --query iptables failed: update-alternatives: error: no alternatives for iptables (is the package that provides iptables installed?)',
    );
  });

  it('hostname, /etc/hosts and kubelet args converge (node3 without hostnamectl: the fallback); a second run changes nothing', async () => {
    await sh(lab, 'node3', 'systemctl mask systemd-hostnamed && systemctl stop systemd-hostnamed');
    try {
      const first = await runTasks(lab, 'all', identityTasks());
      expect(first.exitCode).to.equal(0);
      for (const host of ['node1', 'node2', 'node3']) expect(first.recap[host]).to.deep.equal({ ok: 0, changed: 3, failed: 0, skipped: 0, unreachable: false });
      const fallback = first.events.filter((e) => e.type === 'log' && e.host === 'node3').map((e) => (e as { line: string }).line);
      expect(fallback).to.have.length(1);
      expect(fallback[0]).to.match(/^hostnamectl failed \(.*masked.*\); writing \/etc\/hostname and running hostname$/);
      expect(first.events.some((e) => e.type === 'log' && e.host !== 'node3')).to.equal(false);

      const hosts = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n${lab.hosts.map((h) => `${h.address} ${h.name}.capstan.lab ${h.name}\n`).join('')}`;
      for (const host of lab.hosts) {
        expect(await sh(lab, host.name, 'hostname; cat /etc/hostname; cat /etc/hosts; cat /etc/default/kubelet')).to.equal(
          `${host.name}.capstan.lab\n${host.name}.capstan.lab\n${hosts}KUBELET_EXTRA_ARGS=--node-ip=${host.address}\n`,
        );
      }
      // The resolver (getaddrinfo through nsswitch) finds them; IPv4 only, as a lab without DNS would wait for an AAAA answer.
      expect(await sh(lab, 'node1', 'getent ahostsv4 node3 | head -n 1; getent ahostsv4 node2.capstan.lab | head -n 1')).to.equal(
        `${address.node3!.padEnd(15)} STREAM node3.capstan.lab\n${address.node2!.padEnd(15)} STREAM node2.capstan.lab\n`,
      );

      const second = await runTasks(lab, 'all', identityTasks());
      for (const host of ['node1', 'node2', 'node3']) expect(second.recap[host]).to.deep.equal({ ok: 3, changed: 0, failed: 0, skipped: 0, unreachable: false });
    } finally {
      await sh(lab, 'node3', 'systemctl unmask systemd-hostnamed');
    }
  });

  it('preflight passes on a good fleet, in --check and applied, and the next play runs', async () => {
    for (const check of [true, false]) {
      let reports = 0;
      const run = await runBody(
        lab,
        async (ctx) => {
          const result = await preflight(ctx, 'all', { minMemoryMiB: 1700, minCpus: 2, ports: [6443, 10250] });
          reports = result.reports.length;
          await ctx.play('after preflight', 'all', [ensureFile({ path: '/etc/capstan-after-preflight', content: 'ok\n' })]);
        },
        { check },
      );
      expect(run.exitCode, JSON.stringify(run.events.filter((e) => e.type === 'error'))).to.equal(0);
      expect(reports).to.equal(3);
      expect(run.events.filter((e) => e.type === 'task' && e.task === 'preflight').map((e) => (e as { status: string }).status)).to.deep.equal(['ok', 'ok', 'ok']);
    }
    expect(await sh(lab, 'node1', 'cat /etc/capstan-after-preflight')).to.equal('ok\n');
  });

  it('preflight fails with the exact table on bad thresholds, a duplicate hostname and a busy port, and changes nothing', async () => {
    const cpus = (await sh(lab, 'node1', 'nproc')).trim();
    await sh(lab, 'node1', 'hostname twin');
    await sh(lab, 'node2', 'hostname twin');
    const server = (await sh(lab, 'node3', 'rm -f /etc/capstan-after-preflight; python3 -m http.server 6443 >/dev/null 2>&1 </dev/null & echo $!; for i in 1 2 3 4 5 6 7 8 9 10; do ss -ltnH | grep -q ":6443 " && break; sleep 0.3; done')).trim();
    try {
      const before = await Promise.all(lab.hosts.map((h) => sh(lab, h.name, HASH_STATE)));
      const expected = [
        'preflight failed: 6 problems on 3 of 3 hosts',
        'HOST   CHECK     PROBLEM',
        'node1  hostname  "twin" is also the hostname of node2',
        `node1  cpus      ${cpus} CPUs, fewer than the 64 required`,
        'node2  hostname  "twin" is also the hostname of node1',
        `node2  cpus      ${cpus} CPUs, fewer than the 64 required`,
        `node3  cpus      ${cpus} CPUs, fewer than the 64 required`,
        'node3  port      6443 is in use by python3 (0.0.0.0:6443)',
        'not compared: product_uuid unknown on node1, node2, node3',
      ].join('\n');
      for (const check of [true, false]) {
        const run = await runBody(
          lab,
          async (ctx) => {
            await preflight(ctx, 'all', { minMemoryMiB: 1700, minCpus: 64, ports: [6443, 10250] });
            await ctx.play('after preflight', 'all', [ensureFile({ path: '/etc/capstan-after-preflight', content: 'ok\n' })]);
          },
          { check },
        );
        expect(run.exitCode).to.equal(2);
        expect(run.events.filter((e) => e.type === 'error').map((e) => (e as { message: string }).message)).to.deep.equal([expected]);
        expect(run.events.some((e) => e.type === 'play' && e.title === 'after preflight')).to.equal(false);
      }
      const after = await Promise.all(lab.hosts.map((h) => sh(lab, h.name, HASH_STATE)));
      expect(after).to.deep.equal(before);
      expect((await sshToLab(lab, 'node3', 'test -e /etc/capstan-after-preflight')).code).to.equal(1);
    } finally {
      await sh(lab, 'node3', `kill ${server}`);
      await sh(lab, 'node1', 'hostname "$(cat /etc/hostname)"');
      await sh(lab, 'node2', 'hostname "$(cat /etc/hostname)"');
    }
  });
});
