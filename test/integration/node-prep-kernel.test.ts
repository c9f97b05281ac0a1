import { expect } from 'chai';
import { labStatus, startHost, type LabState } from '../../runner/lab/index.js';
import { ensureKernelCmdline, ensureMemoryCgroup, ensureModule, ensureSysctl, reboot } from '../../tasks/kernel.js';
import { ensureSwapOff } from '../../tasks/swap.js';
import { capstan } from '../helpers/cli.js';
import { sshToLab, withLab } from '../helpers/lab.js';
import { runTasks, type TaskRun } from '../helpers/tasks.js';

const PLAYBOOK = 'test/fixtures/kernel/playbooks/node-prep.ts';
const K8S_SYSCTL = { 'net.bridge.bridge-nf-call-iptables': 1, 'net.bridge.bridge-nf-call-ip6tables': 1, 'net.ipv4.ip_forward': 1 };
/** What the seeds do by hand (000/001/002/004), as tasks. net.* sysctls only: others are global to the machine running the lab. */
const nodePrep = () => [ensureSwapOff(), ensureModule('overlay'), ensureModule('br_netfilter'), ensureSysctl(K8S_SYSCTL)];
/** A content hash of every file under /etc, /var/lib, /boot and /run/reboot-required, to prove check mode wrote nothing. */
const HASH_STATE =
  "find /etc /var/lib /boot /var/swap /run/reboot-required -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc /boot -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum";
const BOOKWORM_CMDLINE = 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash plymouth.ignore-serial-consoles\n';

function statuses(run: TaskRun): Record<string, string> {
  return Object.fromEntries(run.tasks.map((t) => [t.task, t.status]));
}

async function sh(lab: LabState, command: string): Promise<string> {
  const result = await sshToLab(lab, 'node1', command);
  if (result.code !== 0) throw new Error(`${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/**
 * Plays the part of the hypervisor for a lab host that reboots: a systemd-nspawn container exits on
 * `systemctl reboot`, so once node1 is down, boot it again (as a VM would come back by itself).
 */
async function restartWhenDown(deadlineMs: number): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  let wentDown = false;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    const up = (await labStatus())?.hosts.find((h) => h.name === 'node1')?.up ?? false;
    if (!up) wentDown = true;
    if (wentDown && !up) await startHost('node1'); // a no-op while the container is still shutting down
    if (wentDown && up) return true;
  }
  return wentDown;
}

describe('node prep on a lab host: swap off, kernel modules, sysctls, cmdline.txt, reboot', function () {
  this.timeout(600_000);
  let lab: LabState;
  let kernel: string;

  before(async function () {
    this.timeout(600_000);
    lab = await withLab(1);
    kernel = (await sh(lab, 'uname -r')).trim();
  });

  it('check on a fresh host shows the drift and changes nothing', async () => {
    const before = await sh(lab, HASH_STATE);
    const live = (await sh(lab, 'sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward')).trim().split('\n');
    const run = await runTasks(lab, 'all', nodePrep(), { check: true });
    expect(run.exitCode).to.equal(0);
    expect(statuses(run)).to.deep.equal({ 'swap:off': 'changed', 'module:overlay': 'changed', 'module:br_netfilter': 'changed', 'sysctl:/etc/sysctl.d/99-kubernetes.conf': 'changed' });
    const drift = Object.fromEntries(run.tasks.map((t) => [t.task, t.drift.map((d) => d.diff ?? `${d.subject}: ${d.current} → ${d.desired}`)]));
    expect(drift['swap:off']).to.deep.equal(['unit swap.target: static → masked']);
    expect(drift['module:overlay']).to.deep.equal(['--- /dev/null\n+++ /etc/modules-load.d/k8s.conf (desired)\n@@ -0,0 +1,2 @@\n+# Managed by Capstan\n+overlay\n']);
    const keys = Object.keys(K8S_SYSCTL);
    expect(drift['sysctl:/etc/sysctl.d/99-kubernetes.conf']).to.deep.equal([
      '--- /dev/null\n+++ /etc/sysctl.d/99-kubernetes.conf (desired)\n@@ -0,0 +1,4 @@\n+# Managed by Capstan\n+net.bridge.bridge-nf-call-iptables = 1\n+net.bridge.bridge-nf-call-ip6tables = 1\n+net.ipv4.ip_forward = 1\n',
      ...keys.flatMap((key, i) => (live[i] === '1' ? [] : [`${key}: ${live[i]} → 1`])),
    ]);
    expect(live[2]).to.equal('0'); // a fresh host does not forward: the drift above is not empty
    expect(await sh(lab, HASH_STATE)).to.equal(before);
  });

  it('--check --diff prints the files that would be written (CLI, exact text)', async () => {
    const result = await capstan(['run', PLAYBOOK, '-i', lab.inventoryPath, '--check', '--diff']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.include(
      'node1 | would change | kernel module overlay\n' +
        '    /etc/modules-load.d/k8s.conf\n' +
        '    --- /dev/null\n' +
        '    +++ /etc/modules-load.d/k8s.conf (desired)\n' +
        '    @@ -0,0 +1,2 @@\n' +
        '    +# Managed by Capstan\n' +
        '    +overlay\n' +
        'node1 | would change | kernel module br_netfilter\n' +
        '    /etc/modules-load.d/k8s.conf\n' +
        '    --- /dev/null\n' +
        '    +++ /etc/modules-load.d/k8s.conf (desired)\n' +
        '    @@ -0,0 +1,2 @@\n' +
        '    +# Managed by Capstan\n' +
        '    +br_netfilter\n' +
        'node1 | would change | sysctl net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1\n' +
        '    /etc/sysctl.d/99-kubernetes.conf\n' +
        '    --- /dev/null\n' +
        '    +++ /etc/sysctl.d/99-kubernetes.conf (desired)\n' +
        '    @@ -0,0 +1,4 @@\n' +
        '    +# Managed by Capstan\n' +
        '    +net.bridge.bridge-nf-call-iptables = 1\n' +
        '    +net.bridge.bridge-nf-call-ip6tables = 1\n' +
        '    +net.ipv4.ip_forward = 1\n' +
        '    net.ipv4.ip_forward: 0 → 1\n',
    );
    expect(result.stdout).to.match(/RECAP\nHOST +ok +changed +failed +skipped +unreachable\nnode1 +0 +4 +0 +0 +no\nfinished in \d+\.\d s\n$/);
  });

  it('apply converges with exactly the expected files and live values; a second run changes nothing', async () => {
    const first = await runTasks(lab, 'all', nodePrep());
    expect(first.recap.node1).to.deep.equal({ ok: 0, changed: 4, failed: 0, skipped: 0, unreachable: false });
    expect(await sh(lab, 'cat /etc/modules-load.d/k8s.conf')).to.equal('# Managed by Capstan\noverlay\nbr_netfilter\n');
    expect(await sh(lab, 'cat /etc/sysctl.d/99-kubernetes.conf; stat -c %a /etc/sysctl.d/99-kubernetes.conf')).to.equal(
      '# Managed by Capstan\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n644\n',
    );
    expect(await sh(lab, 'sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward')).to.equal('1\n1\n1\n');
    expect(await sh(lab, 'systemctl is-enabled swap.target || true')).to.equal('masked\n');
    const second = await runTasks(lab, 'all', nodePrep());
    expect(second.recap.node1).to.deep.equal({ ok: 4, changed: 0, failed: 0, skipped: 0, unreachable: false });
  });

  it('--check --diff after drift by hand: the seed-style k8s.conf and a live value put back', async () => {
    await sh(lab, "printf 'overlay\\n' > /etc/modules-load.d/k8s.conf && sysctl -q -w net.ipv4.ip_forward=0");
    const result = await capstan(['run', PLAYBOOK, '-i', lab.inventoryPath, '--check', '--diff']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.include(
      'node1 | ok | kernel module overlay\n' +
        'node1 | would change | kernel module br_netfilter\n' +
        '    /etc/modules-load.d/k8s.conf\n' +
        '    --- /etc/modules-load.d/k8s.conf (current)\n' +
        '    +++ /etc/modules-load.d/k8s.conf (desired)\n' +
        '    @@ -1,1 +1,3 @@\n' +
        '    +# Managed by Capstan\n' +
        '     overlay\n' +
        '    +br_netfilter\n' +
        'node1 | would change | sysctl net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1\n' +
        '    net.ipv4.ip_forward: 0 → 1\n',
    );
    const run = await runTasks(lab, 'all', nodePrep());
    expect(run.recap.node1).to.deep.equal({ ok: 2, changed: 2, failed: 0, skipped: 0, unreachable: false });
    expect(await sh(lab, 'cat /etc/modules-load.d/k8s.conf; sysctl -n net.ipv4.ip_forward')).to.equal('# Managed by Capstan\noverlay\nbr_netfilter\n1\n');
  });

  it("ensureModule('nosuchmod') fails, naming the kernel version, and writes nothing", async () => {
    const run = await runTasks(lab, 'all', [ensureModule('nosuchmod')]);
    expect(run.exitCode).to.equal(2);
    expect(run.tasks[0]!.status).to.equal('failed');
    expect(run.tasks[0]!.message).to.equal(
      `check failed: kernel module nosuchmod is not available for kernel ${kernel}: not loaded, not built in, and modprobe cannot find it in /lib/modules/${kernel}; install the kernel's modules package or check the name`,
    );
    expect(await sh(lab, 'cat /etc/modules-load.d/k8s.conf')).to.equal('# Managed by Capstan\noverlay\nbr_netfilter\n');
  });

  it('dphys-swapfile (Debian package), zram-generator, swap units and a /swapfile line: check lists each, apply turns all off for good', async () => {
    // A small swap file (the default is twice the RAM), then the packages as Raspberry Pi OS and Debian ship them.
    await sh(
      lab,
      "printf 'CONF_SWAPSIZE=16\\n' > /etc/dphys-swapfile && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold dphys-swapfile systemd-zram-generator >/dev/null 2>&1",
    );
    await sh(
      lab,
      [
        "printf '/swapfile\\tnone\\tswap\\tsw\\t0\\t0\\n' >> /etc/fstab",
        // a vendor swap unit enabled, and a local one in /etc (systemctl mask refuses those until moved aside)
        "printf '[Swap]\\nWhat=/dev/zram1\\n[Install]\\nWantedBy=swap.target\\n' > /usr/lib/systemd/system/dev-zram1.swap",
        "printf '[Swap]\\nWhat=/dev/zram2\\n[Install]\\nWantedBy=swap.target\\n' > /etc/systemd/system/dev-zram2.swap",
        'systemctl daemon-reload && systemctl enable -q dev-zram1.swap dev-zram2.swap',
      ].join(' && '),
    );
    expect(await sh(lab, 'systemctl is-enabled dphys-swapfile; ls /var/swap')).to.equal('enabled\n/var/swap\n');
    const fstabBefore = await sh(lab, 'cat /etc/fstab');
    const hash = await sh(lab, HASH_STATE);

    const check = await runTasks(lab, 'all', [ensureSwapOff()], { check: true });
    expect(check.tasks[0]!.drift.map((d) => (d.diff === undefined ? `${d.subject}: ${d.current} → ${d.desired}` : d.subject))).to.deep.equal([
      'fstab swap line /swapfile: /swapfile\tnone\tswap\tsw\t0\t0 → #/swapfile\tnone\tswap\tsw\t0\t0',
      'swap file /var/swap (dphys-swapfile): present → absent',
      'service dphys-swapfile.service: enabled → disabled',
      'zram-generator config /etc/systemd/zram-generator.conf',
      'unit dev-zram1.swap: enabled → masked',
      'unit dev-zram2.swap: enabled → masked',
      'unit systemd-zram-setup@zram1.service: static → masked',
      'unit systemd-zram-setup@zram2.service: static → masked',
    ]);
    expect(check.tasks[0]!.drift[3]!.diff).to.match(/\n-\[zram0\]\n\+#\[zram0\]\n$/);
    expect(await sh(lab, HASH_STATE)).to.equal(hash);

    const apply = await runTasks(lab, 'all', [ensureSwapOff()]);
    expect(apply.tasks[0]!.status, apply.tasks[0]!.message).to.equal('changed');
    expect(await sh(lab, 'systemctl is-enabled dphys-swapfile dev-zram1.swap dev-zram2.swap systemd-zram-setup@zram1.service swap.target || true; test -e /var/swap || echo "no /var/swap"')).to.equal(
      'disabled\nmasked\nmasked\nmasked\nmasked\nno /var/swap\n',
    );
    // `dphys-swapfile uninstall` takes its own two comment lines out of fstab; then Capstan comments the swap line.
    expect(fstabBefore).to.equal('# UNCONFIGURED FSTAB FOR BASE SYSTEM\n# a swapfile is not a swap partition, no line here\n#   use  dphys-swapfile swap[on|off]  for that\n/swapfile\tnone\tswap\tsw\t0\t0\n');
    expect(await sh(lab, 'cat /etc/fstab')).to.equal('# UNCONFIGURED FSTAB FOR BASE SYSTEM\n#/swapfile\tnone\tswap\tsw\t0\t0\n');
    expect(await sh(lab, 'cat /etc/fstab.*.capstan-backup')).to.equal('# UNCONFIGURED FSTAB FOR BASE SYSTEM\n/swapfile\tnone\tswap\tsw\t0\t0\n');
    expect(await sh(lab, 'tail -n 1 /etc/systemd/zram-generator.conf; cat /etc/systemd/system/dev-zram2.swap.capstan-backup')).to.equal(
      '#[zram0]\n[Swap]\nWhat=/dev/zram2\n[Install]\nWantedBy=swap.target\n',
    );
    expect((await runTasks(lab, 'all', [ensureSwapOff()])).tasks[0]!.status).to.equal('ok');
  });

  it('ensureMemoryCgroup: the memory cgroup is active on the lab host, so nothing to do', async () => {
    const run = await runTasks(lab, 'all', [ensureMemoryCgroup()]);
    expect(run.tasks[0]!.status).to.equal('ok');
  });

  it('ensureKernelCmdline on a Pi layout edits cmdline.txt once and flags the reboot; reboot({ ifRequired }) reboots into a new boot; all stays converged', async () => {
    await sh(lab, `mkdir -p /boot/firmware && printf '%s' '${BOOKWORM_CMDLINE}' > /boot/firmware/cmdline.txt`);
    const tasks = () => [ensureKernelCmdline({ add: ['cgroup_memory=1', 'cgroup_enable=memory'] }), reboot({ ifRequired: true, timeoutMs: 120_000 })];

    const hash = await sh(lab, HASH_STATE);
    const check = await runTasks(lab, 'all', tasks(), { check: true });
    expect(statuses(check)).to.deep.equal({ 'kernel-cmdline:+cgroup_memory=1 +cgroup_enable=memory': 'changed', reboot: 'changed' });
    expect(check.tasks[1]!.drift).to.deep.equal([{ subject: 'reboot', desired: 'rebooted', pending: 'kernel command line +cgroup_memory=1 +cgroup_enable=memory' }]);
    // The same as a handler: notified by the edit that would change, it would run (and say so) at the end of the play.
    const restart = reboot({ timeoutMs: 120_000 });
    const handler = await runTasks(lab, 'all', [ensureKernelCmdline({ add: ['cgroup_memory=1', 'cgroup_enable=memory'] }, { notify: [restart] })], { check: true });
    expect(handler.tasks.map((t) => [t.task, t.status])).to.deep.equal([
      ['kernel-cmdline:+cgroup_memory=1 +cgroup_enable=memory', 'changed'],
      ['reboot', 'changed'],
    ]);
    expect(await sh(lab, HASH_STATE)).to.equal(hash);

    const bootBefore = await sh(lab, 'cat /proc/sys/kernel/random/boot_id; sed \'s/^.*) //\' /proc/1/stat | cut -d \' \' -f 20');
    const watcher = restartWhenDown(120_000);
    const run = await runTasks(lab, 'all', tasks());
    expect(await watcher).to.equal(true);
    expect(statuses(run)).to.deep.equal({ 'kernel-cmdline:+cgroup_memory=1 +cgroup_enable=memory': 'changed', reboot: 'changed' });
    expect(await sh(lab, 'cat /boot/firmware/cmdline.txt')).to.equal(BOOKWORM_CMDLINE.replace('\n', ' cgroup_memory=1 cgroup_enable=memory\n'));
    expect(await sh(lab, 'cat /boot/firmware/cmdline.txt.*.capstan-backup')).to.equal(BOOKWORM_CMDLINE);
    expect(await sh(lab, 'test -e /run/reboot-required && echo flagged || echo clear')).to.equal('clear\n');
    expect(await sh(lab, 'cat /proc/sys/kernel/random/boot_id; sed \'s/^.*) //\' /proc/1/stat | cut -d \' \' -f 20')).not.to.equal(bootBefore);

    // After the reboot: nothing to do, and swap, modules and sysctls are still in place.
    const after = await runTasks(lab, 'all', [...tasks(), ...nodePrep()]);
    expect(after.recap.node1).to.deep.equal({ ok: 6, changed: 0, failed: 0, skipped: 0, unreachable: false });
    expect(await sh(lab, 'systemctl is-enabled dphys-swapfile || true; tail -n +2 /proc/swaps | wc -l')).to.equal('disabled\n0\n');
  });

  it('reboot in check mode says "would change" and does not reboot', async () => {
    const boot = await sh(lab, 'sed \'s/^.*) //\' /proc/1/stat | cut -d \' \' -f 20');
    const run = await runTasks(lab, 'all', [reboot()], { check: true });
    expect(run.tasks[0]!.status).to.equal('changed');
    expect(run.tasks[0]!.drift).to.have.length(1);
    expect(run.tasks[0]!.drift[0]).to.include({ subject: 'reboot', desired: 'a new boot' });
    expect(await sh(lab, 'sed \'s/^.*) //\' /proc/1/stat | cut -d \' \' -f 20')).to.equal(boot);
  });

  it('reboot fails after its timeout when the host does not come back (the host is then unreachable)', async () => {
    try {
      const run = await runTasks(lab, 'all', [reboot({ timeoutMs: 5_000 })]);
      expect(run.exitCode).to.equal(4);
      expect(run.recap.node1!.unreachable).to.equal(true);
      const unreachable = run.events.find((e) => e.type === 'unreachable') as { message: string } | undefined;
      expect(unreachable?.message).to.match(/did not come back|within 5 s/);
    } finally {
      await restartWhenDown(60_000);
    }
  });
});
