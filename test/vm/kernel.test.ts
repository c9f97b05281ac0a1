import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { labDown, labUp, readVmRecord, type LabState } from '../../runner/lab/index.js';
import { labDir } from '../../runner/lab/paths.js';
import { ensureModule, ensureSysctl, reboot } from '../../tasks/kernel.js';
import { ensureSwapOff } from '../../tasks/swap.js';
import { sshToLab } from '../helpers/lab.js';
import { runTasks, type TaskRun } from '../helpers/tasks.js';

/*
 * Kernel-level tasks where the container lab cannot follow them: a QEMU VM with Debian's own
 * kernel (loadable modules, real swap, its own vm.* sysctls) that really reboots. One VM, two
 * reboots: a control reboot proving that the swap set up here does come back at boot (so the
 * "still off after reboot" assertions can fail), then Capstan's own reboot task after the tasks ran.
 */

const HOST = 'vm1';
const FSTAB_LINE = '/swapfile none swap sw 0 0';
/** The image's fstab (runner/lab/vm-image.ts). */
const IMAGE_FSTAB = 'LABEL=capstan-root\t/\text4\tdefaults,discard\t0\t1\n';
const SYSCTLS = { 'net.ipv4.ip_forward': 1, 'vm.swappiness': 0 };

/** The tasks under test, fresh each run (the engine keeps no state across runs). */
function kernelTasks() {
  return [ensureSwapOff(), ensureModule('br_netfilter'), ensureSysctl(SYSCTLS)];
}

/** What the tasks change, read independently of Capstan: swap areas, module, sysctls, files, dphys. */
const STATE = [
  'echo "swaps: $(tail -n +2 /proc/swaps | cut -d " " -f 1 | sort | tr "\\n" " ")"',
  'echo "br_netfilter: $(grep -c "^br_netfilter " /proc/modules)"',
  'echo "ip_forward: $(sysctl -n net.ipv4.ip_forward)"',
  'echo "swappiness: $(sysctl -n vm.swappiness)"',
  'echo "dphys: $(systemctl is-enabled dphys-swapfile.service)"',
  'echo "var-swap: $(test -e /var/swap && echo present || echo absent)"',
  'echo "fstab: $(sha256sum < /etc/fstab | cut -c 1-16)"',
  'echo "modules-load.d: $(ls /etc/modules-load.d | tr "\\n" " ")"',
  'echo "sysctl.d: $(ls /etc/sysctl.d | tr "\\n" " ")"',
].join('; ');

const timings: string[] = [];

/** Runs `body` and records how long it took, for the summary printed at the end. */
async function timed<T>(label: string, body: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await body();
  } finally {
    timings.push(`${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

function statusOf(run: TaskRun, task: string): string | undefined {
  return run.tasks.find((event) => event.host === HOST && event.task === task)?.status;
}

function subjectsOf(run: TaskRun, task: string): string[] {
  return run.tasks.find((event) => event.host === HOST && event.task === task)?.drift.map((drift) => drift.subject) ?? [];
}

describe('kernel-level tasks in a VM: swap, modules and sysctls across reboots', function () {
  this.timeout(1_200_000);
  let lab: LabState;

  async function ssh(command: string): Promise<string> {
    const result = await sshToLab(lab, HOST, command);
    expect(result.code, `${command}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }

  async function bootId(): Promise<string> {
    return (await ssh('cat /proc/sys/kernel/random/boot_id')).trim();
  }

  /** QEMU's command line, or '' when the process is gone. */
  function qemuCommandLine(pid: number): string {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      return '';
    }
  }

  before(async function () {
    lab = await timed('lab up (VM image cached or built, boot to sshd)', () =>
      labUp({ kind: 'vm', hosts: [{ name: HOST }], log: (line) => void process.stderr.write(`      lab: ${line}\n`) }),
    );
  });

  after(async function () {
    // A failed test leaves the VM up: take it down (1 GiB of RAM and a TCG CPU hog) unless the last test did.
    if (readVmRecord(labDir())) await labDown();
    process.stderr.write(`      timings:\n${timings.map((line) => `        ${line}\n`).join('')}`);
  });

  it("boots Debian's kernel with loadable modules, no swap and dphys-swapfile installed but disabled", async () => {
    const record = readVmRecord(labDir());
    expect(record?.hosts.map((host) => host.name)).to.deep.equal([HOST]);
    expect(await ssh('uname -r')).to.equal(`${record!.image.kernelRelease}\n`);
    expect(await ssh('hostname; cat /etc/hostname; test -f /lib/modules/$(uname -r)/kernel/net/bridge/br_netfilter.ko && echo loadable')).to.equal(
      `${HOST}\n${HOST}\nloadable\n`,
    );
    expect(await ssh(STATE)).to.equal(
      [
        'swaps: ',
        'br_netfilter: 0',
        'ip_forward: 0',
        'swappiness: 60',
        'dphys: disabled',
        'var-swap: absent',
        `fstab: ${createHash('sha256').update(IMAGE_FSTAB).digest('hex').slice(0, 16)}`,
        'modules-load.d: modules.conf ',
        'sysctl.d: 99-sysctl.conf README.sysctl ',
        '',
      ].join('\n'),
    );
    expect(await ssh('cat /etc/fstab')).to.equal(IMAGE_FSTAB);
  });

  it('control: a swap file in fstab and dphys-swapfile are on, and come back after a plain reboot (same QEMU process)', async () => {
    await timed('control: swap set up', () =>
      ssh(
        [
          'dd if=/dev/zero of=/swapfile bs=1M count=64 status=none',
          'chmod 600 /swapfile',
          'mkswap -q /swapfile',
          `echo ${JSON.stringify(FSTAB_LINE)} >> /etc/fstab`,
          'swapon /swapfile',
          // dphys-swapfile as on Raspberry Pi OS: a service that makes /var/swap at boot and swaps on it (small here)
          'echo CONF_SWAPSIZE=64 >> /etc/dphys-swapfile',
          'systemctl enable --now dphys-swapfile.service 2>/dev/null',
        ].join(' && '),
      ),
    );
    expect(await ssh('tail -n +2 /proc/swaps | cut -d " " -f 1 | sort')).to.equal('/swapfile\n/var/swap\n');
    const before = await bootId();
    const pid = lab.hosts[0]!.pid;
    await timed('control: plain reboot (systemctl reboot) to sshd', async () => {
      await ssh('systemd-run --quiet --on-active=1 systemctl reboot');
      const deadline = Date.now() + 900_000;
      for (;;) {
        expect(Date.now(), 'the VM did not come back from the reboot').to.be.below(deadline);
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const result = await sshToLab(lab, HOST, 'cat /proc/sys/kernel/random/boot_id');
        if (result.code === 0 && result.stdout.trim() !== before) break;
      }
    });
    expect(qemuCommandLine(pid), 'the guest reboots inside the same QEMU process').to.include('qemu-system-x86_64');
    // systemd-fstab-generator brought /swapfile back, dphys-swapfile.service /var/swap
    expect(await ssh('tail -n +2 /proc/swaps | cut -d " " -f 1 | sort')).to.equal('/swapfile\n/var/swap\n');
    expect(await ssh('systemctl is-enabled dphys-swapfile.service')).to.equal('enabled\n');
  });

  it('check mode reports every drift and changes nothing', async () => {
    const before = await ssh(STATE);
    const run = await timed('check run', () => runTasks(lab, 'all', kernelTasks(), { check: true }));
    expect(run.exitCode).to.equal(0);
    expect(run.recap[HOST]).to.deep.equal({ ok: 0, changed: 3, failed: 0, skipped: 0, unreachable: false });
    expect(subjectsOf(run, 'swap:off')).to.include.members([
      'active swap /swapfile',
      'active swap /var/swap',
      'fstab swap line /swapfile',
      'swap file /var/swap (dphys-swapfile)',
      'service dphys-swapfile.service',
    ]);
    expect(subjectsOf(run, 'module:br_netfilter')).to.deep.equal(['module br_netfilter', '/etc/modules-load.d/k8s.conf']);
    expect(subjectsOf(run, 'sysctl:/etc/sysctl.d/99-kubernetes.conf')).to.deep.equal([
      '/etc/sysctl.d/99-kubernetes.conf',
      'net.ipv4.ip_forward',
      'vm.swappiness',
    ]);
    expect(await ssh(STATE)).to.equal(before);
  });

  it('apply: swap off now, br_netfilter loaded by modprobe, sysctls live, boot files written', async () => {
    const run = await timed('apply run', () => runTasks(lab, 'all', kernelTasks()));
    expect(run.exitCode, JSON.stringify(run.tasks)).to.equal(0);
    expect(run.recap[HOST]).to.deep.equal({ ok: 0, changed: 3, failed: 0, skipped: 0, unreachable: false });
    expect(await ssh('cat /proc/swaps | wc -l')).to.equal('1\n'); // the header only
    expect(await ssh('lsmod | cut -d " " -f 1 | grep -x br_netfilter')).to.equal('br_netfilter\n');
    expect(await ssh('sysctl -n net.ipv4.ip_forward vm.swappiness')).to.equal('1\n0\n');
    expect(await ssh('cat /etc/fstab')).to.equal(`${IMAGE_FSTAB}#${FSTAB_LINE}\n`);
    expect(await ssh('cat /etc/modules-load.d/k8s.conf')).to.equal('# Managed by Capstan\nbr_netfilter\n');
    expect(await ssh('cat /etc/sysctl.d/99-kubernetes.conf')).to.equal('# Managed by Capstan\nnet.ipv4.ip_forward = 1\nvm.swappiness = 0\n');
    expect(await ssh('systemctl is-enabled dphys-swapfile.service; test -e /var/swap && echo present || echo absent')).to.equal('disabled\nabsent\n');
  });

  it("Capstan's reboot task reboots the VM (new boot id, same QEMU process)", async () => {
    const before = await bootId();
    const run = await timed('reboot task (reboot to sshd)', () => runTasks(lab, 'all', [reboot({ timeoutMs: 900_000 })]));
    expect(run.exitCode, JSON.stringify(run.tasks)).to.equal(0);
    expect(statusOf(run, 'reboot')).to.equal('changed');
    expect(await bootId()).to.not.equal(before);
    expect(qemuCommandLine(lab.hosts[0]!.pid)).to.include('qemu-system-x86_64');
  });

  it('after the reboot: swap still off (fstab line commented, dphys-swapfile disabled)', async () => {
    expect(await ssh('cat /proc/swaps | wc -l')).to.equal('1\n');
    expect(await ssh('cat /etc/fstab')).to.equal(`${IMAGE_FSTAB}#${FSTAB_LINE}\n`);
    expect(await ssh('systemctl is-enabled dphys-swapfile.service; test -e /var/swap && echo present || echo absent')).to.equal('disabled\nabsent\n');
  });

  it('after the reboot: br_netfilter loaded again by systemd-modules-load (modules-load.d)', async () => {
    expect(await ssh('lsmod | cut -d " " -f 1 | grep -x br_netfilter')).to.equal('br_netfilter\n');
    // It logs before journald runs, so its lines carry its identifier but no unit: select by identifier.
    expect(await ssh(`journalctl -b -t systemd-modules-load --no-pager -o cat | grep -cx "Inserted module 'br_netfilter'"`)).to.equal('1\n');
  });

  it('after the reboot: the sysctls are applied at boot', async () => {
    expect(await ssh('sysctl -n net.ipv4.ip_forward vm.swappiness')).to.equal('1\n0\n');
  });

  it('a second run after the reboot changes nothing (check and apply)', async () => {
    const check = await timed('second run, check', () => runTasks(lab, 'all', kernelTasks(), { check: true }));
    expect(check.recap[HOST]).to.deep.equal({ ok: 3, changed: 0, failed: 0, skipped: 0, unreachable: false });
    const apply = await timed('second run, apply', () => runTasks(lab, 'all', kernelTasks()));
    expect(apply.exitCode).to.equal(0);
    expect(apply.recap[HOST]).to.deep.equal({ ok: 3, changed: 0, failed: 0, skipped: 0, unreachable: false });
  });

  it('labDown stops QEMU by PID and removes the tap, the overlays, the inventory and known_hosts', async () => {
    const record = readVmRecord(labDir())!;
    const vm = record.hosts[0]!;
    await timed('lab down', () => labDown());
    expect(qemuCommandLine(vm.pid)).to.equal('');
    for (const path of [`/sys/class/net/${vm.tap}`, vm.dir, record.inventoryPath, record.knownHostsPath, `/sys/class/net/${record.bridge}`]) {
      expect(existsSync(path), path).to.equal(false);
    }
    expect(readVmRecord(labDir())).to.equal(null);
    expect(existsSync(record.image.base), 'the VM image stays cached').to.equal(true);
  });
});
