import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  commentFstabSwap,
  commentZramSections,
  ensureSwapOff,
  fstabSwapEntries,
  hasZramDevices,
  parseSwapProbe,
  parseSystemctlShow,
  RPI_SWAP_DROP_IN,
  RPI_SWAP_DROP_IN_CONTENT,
  swapOffItems,
  ZRAM_OVERRIDE_CONTENT,
  zramConfigEdits,
} from '../../tasks/swap.js';
import type { Command } from '../../runner/quote.js';
import type { ApplyContext, CheckContext, Drift } from '../../runner/task.js';
import type { RunResult } from '../../runner/contract.js';
import { parseFacts } from '../../runner/facts.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/swap/', import.meta.url));
const fixture = (name: string) => readFileSync(`${FIXTURES}${name}`, 'latin1');

describe('fstab swap lines (pure, real fstab variants)', () => {
  const variants = readdirSync(`${FIXTURES}fstab`).filter((name) => name.endsWith('.fstab')).map((name) => name.slice(0, -'.fstab'.length));

  it('has the fixtures', () => {
    expect(variants).to.have.members(['centos', 'crlf', 'debian-installer', 'debian-lvm', 'mixed-noeol', 'raspios', 'ubuntu-swapimg']);
  });

  for (const name of variants) {
    it(`${name}: comments exactly the swap entries and keeps every other byte`, () => {
      expect(commentFstabSwap(fixture(`fstab/${name}.fstab`))).to.equal(fixture(`fstab/${name}.expected`));
    });
    it(`${name}: is idempotent (the result has no swap entry left)`, () => {
      const once = commentFstabSwap(fixture(`fstab/${name}.fstab`));
      expect(fstabSwapEntries(once)).to.deep.equal([]);
      expect(commentFstabSwap(once)).to.equal(once);
    });
  }

  it('finds the entries by the type field, whatever the options and spacing', () => {
    expect(fstabSwapEntries(fixture('fstab/mixed-noeol.fstab')).map((e) => [e.index, e.spec])).to.deep.equal([
      [3, '/swapfile2'],
      [4, '/swapfile'],
    ]);
    expect(fstabSwapEntries(fixture('fstab/debian-installer.fstab')).map((e) => e.spec)).to.deep.equal(['UUID=7a1c4e2b-3d5f-4a6b-8c9d-0e1f2a3b4c5d']);
    expect(fstabSwapEntries(fixture('fstab/centos.fstab')).map((e) => e.spec)).to.deep.equal(['/dev/mapper/centos-swap']);
    expect(fstabSwapEntries(fixture('fstab/crlf.fstab'))).to.deep.equal([{ index: 1, spec: 'LABEL=swap', line: 'LABEL=swap none swap sw 0 0' }]);
  });

  it('leaves an empty fstab and one without swap untouched', () => {
    expect(commentFstabSwap('')).to.equal('');
    expect(commentFstabSwap(fixture('fstab/raspios.fstab'))).to.equal(fixture('fstab/raspios.fstab'));
  });
});

describe('zram-generator config (pure)', () => {
  const debian = '# Debian\'s file\n# `[zram0]` in a comment\n[zram0]\n';

  it('comments the [zramN] sections with their settings, keeping other sections and comments', () => {
    const text = '[zram0]\nzram-size = ram / 2\n# a comment\n\n[zram1]\ncompression-algorithm = zstd\n[other]\nkey = 1\n';
    expect(commentZramSections(text)).to.equal('#[zram0]\n#zram-size = ram / 2\n# a comment\n\n#[zram1]\n#compression-algorithm = zstd\n[other]\nkey = 1\n');
    expect(hasZramDevices(text)).to.equal(true);
    expect(hasZramDevices(commentZramSections(text))).to.equal(false);
    expect(commentZramSections(debian)).to.equal('# Debian\'s file\n# `[zram0]` in a comment\n#[zram0]\n');
  });

  it('edits /etc files in place and hides vendor files with an /etc file of the same name', () => {
    const files = new Map([
      ['/usr/lib/systemd/zram-generator.conf', '[zram0]\n'],
      ['/usr/lib/systemd/zram-generator.conf.d/50-vendor.conf', '[zram1]\n'],
      ['/etc/systemd/zram-generator.conf.d/10-local.conf', '[zram2]\nzram-size = 512\n'],
      ['/usr/lib/systemd/zram-generator.conf.d/10-local.conf', '[zram3]\n'], // hidden by /etc's 10-local.conf
      ['/usr/lib/systemd/zram-generator.conf.d/60-none.conf', '# no devices\n'],
    ]);
    expect(zramConfigEdits(files)).to.deep.equal([
      { path: '/etc/systemd/zram-generator.conf', current: null, desired: ZRAM_OVERRIDE_CONTENT },
      { path: '/etc/systemd/zram-generator.conf.d/10-local.conf', current: '[zram2]\nzram-size = 512\n', desired: '#[zram2]\n#zram-size = 512\n' },
      { path: '/etc/systemd/zram-generator.conf.d/50-vendor.conf', current: null, desired: ZRAM_OVERRIDE_CONTENT },
    ]);
  });

  it('an /etc main config hides the vendor one, so only it is edited', () => {
    const files = new Map([
      ['/etc/systemd/zram-generator.conf', debian],
      ['/usr/lib/systemd/zram-generator.conf', '[zram0]\n'],
    ]);
    expect(zramConfigEdits(files)).to.deep.equal([{ path: '/etc/systemd/zram-generator.conf', current: debian, desired: commentZramSections(debian) }]);
    expect(zramConfigEdits(new Map([['/etc/systemd/zram-generator.conf', ZRAM_OVERRIDE_CONTENT], ['/usr/lib/systemd/zram-generator.conf', '[zram0]\n']]))).to.deep.equal([]);
  });
});

describe('swap probe → drift (real probe outputs from lab hosts, and constructed ones for Pi OS / Ubuntu)', () => {
  const drift = (name: string) => swapOffItems(parseSwapProbe(fixture(`probe/${name}`))).map((item) => item.drift);

  it('parses systemctl show blocks', () => {
    expect(parseSystemctlShow('Id=a.swap\nLoadState=loaded\nActiveState=active\nFragmentPath=/x\nUnitFileState=enabled\n\nId=b.service\nLoadState=not-found\n')).to.deep.equal([
      { id: 'a.swap', loadState: 'loaded', unitFileState: 'enabled', fragmentPath: '/x', activeState: 'active' },
      { id: 'b.service', loadState: 'not-found', unitFileState: '', fragmentPath: '', activeState: '' },
    ]);
  });

  it('a fresh Debian lab host: only swap.target is left to mask', () => {
    expect(drift('lab-fresh.txt')).to.deep.equal([{ subject: 'unit swap.target', current: 'static', desired: 'masked' }]);
  });

  it('a converged host has no drift', () => {
    expect(drift('lab-converged.txt')).to.deep.equal([]);
  });

  it('dphys-swapfile, systemd-zram-generator, an enabled swap unit and a /swapfile line: one drift per item', () => {
    const probe = parseSwapProbe(fixture('probe/lab-dphys-zram.txt'));
    expect(probe.dphysFile).to.deep.equal({ path: '/var/swap', present: true });
    const items = drift('lab-dphys-zram.txt');
    const zram = probe.files.get('/etc/systemd/zram-generator.conf')!;
    expect(items).to.deep.equal([
      { subject: 'fstab swap line /swapfile', current: '/swapfile\tnone\tswap\tsw\t0\t0', desired: '#/swapfile\tnone\tswap\tsw\t0\t0' },
      { subject: 'swap file /var/swap (dphys-swapfile)', current: 'present', desired: 'absent' },
      { subject: 'service dphys-swapfile.service', current: 'enabled', desired: 'disabled' },
      { subject: 'zram-generator config /etc/systemd/zram-generator.conf', file: '/etc/systemd/zram-generator.conf', current: zram, desired: zram.replace('\n[zram0]\n', '\n#[zram0]\n') },
      { subject: 'unit swap.target', current: 'static', desired: 'masked' },
      { subject: 'unit dev-zram1.swap', current: 'enabled', desired: 'masked' },
      { subject: 'unit systemd-zram-setup@zram1.service', current: 'static', desired: 'masked' },
    ]);
  });

  it('Raspberry Pi OS trixie (rpi-swap, zram active): swapoff, Mechanism=none and every rpi-swap unit masked', () => {
    expect(drift('raspios-trixie-constructed.txt')).to.deep.equal([
      { subject: 'active swap /dev/zram0', current: 'on', desired: 'off' },
      { subject: `rpi-swap config ${RPI_SWAP_DROP_IN}`, file: RPI_SWAP_DROP_IN, current: null, desired: RPI_SWAP_DROP_IN_CONTENT },
      { subject: 'unit swap.target', current: 'static', desired: 'masked' },
      { subject: 'unit rpi-setup-loop@var-swap.service', current: 'static', desired: 'masked' },
      { subject: 'unit rpi-resize-swap-file.service', current: 'static', desired: 'masked' },
      { subject: 'unit rpi-zram-writeback.service', current: 'static', desired: 'masked' },
      { subject: 'unit rpi-zram-writeback.timer', current: 'generated', desired: 'masked' },
      { subject: 'unit dev-zram0.swap', current: 'generated', desired: 'masked' },
      { subject: 'unit systemd-zram-setup@zram0.service', current: 'static', desired: 'masked' },
    ]);
  });

  it('Ubuntu with /swap.img: swapoff, the fstab line and its generated unit', () => {
    expect(drift('ubuntu-jammy-swapimg-constructed.txt')).to.deep.equal([
      { subject: 'active swap /swap.img', current: 'on', desired: 'off' },
      { subject: 'fstab swap line /swap.img', current: '/swap.img\tnone\tswap\tsw\t0\t0', desired: '#/swap.img\tnone\tswap\tsw\t0\t0' },
      { subject: 'unit swap.target', current: 'static', desired: 'masked' },
      { subject: 'unit swap.img.swap', current: 'generated', desired: 'masked' },
    ]);
  });

  it('a host without systemd: no unit drift, the rest still checked', () => {
    const probe = parseSwapProbe('fstab-path /etc/fstab\nswap /dev/sda2\nsystemd no\n');
    expect(swapOffItems(probe).map((i) => i.drift)).to.deep.equal([{ subject: 'active swap /dev/sda2', current: 'on', desired: 'off' }]);
  });

  it('a unit file in /etc/systemd/system is moved aside before masking (systemctl mask refuses otherwise)', () => {
    const probe = parseSwapProbe('fstab-path /etc/fstab\nsystemd yes\n@@show\nId=dev-zram0.swap\nLoadState=loaded\nActiveState=active\nFragmentPath=/etc/systemd/system/dev-zram0.swap\nUnitFileState=enabled\n');
    expect(swapOffItems(probe).map((i) => i.action)).to.deep.equal([{ kind: 'mask', unit: 'dev-zram0.swap', stop: true, moveAside: '/etc/systemd/system/dev-zram0.swap' }]);
  });
});

/** A fake host for check/apply: probes answer from a script of outputs; commands and writes are recorded. */
function fakeContext(probeOutputs: string[], files: Record<string, string> = {}) {
  const commands: string[] = [];
  const writes: { path: string; content: string; options: unknown }[] = [];
  const ok = (stdout = ''): RunResult => ({ code: 0, stdout, stderr: '', bytes: Buffer.from(stdout) });
  const ctx: ApplyContext = {
    host: { name: 'pi', vars: {}, facts: parseFacts('') },
    checkMode: false,
    pendingChanges: [],
    probe: async (command: Command) => {
      if (!command.text.includes('capstan-swap-probe')) throw new Error(`unexpected probe ${command.display}`);
      const output = probeOutputs.length > 1 ? probeOutputs.shift()! : probeOutputs[0]!;
      return ok(output);
    },
    readFile: async (path) => (path in files ? Buffer.from(files[path]!, 'latin1') : null),
    readText: async () => null,
    stat: async () => null,
    run: async (command: Command) => {
      commands.push(command.display);
      return ok();
    },
    exec: async (command: Command) => {
      commands.push(command.display);
      return ok();
    },
    writeFile: async (path, content, options) => {
      writes.push({ path, content: Buffer.isBuffer(content) ? content.toString('latin1') : String(content), options });
    },
    log: () => undefined,
    onHost: async (name) => {
      throw new Error(`no other host ${name} in this fake`);
    },
    reconnect: async () => undefined,
  };
  return { ctx, commands, writes };
}

describe('ensureSwapOff', () => {
  it('has one canonical id and validates the fstab path at load', () => {
    expect(ensureSwapOff().static!.id).to.equal('swap:off');
    expect(ensureSwapOff().static!.title).to.equal('swap off, now and after reboot');
    expect(() => ensureSwapOff({ fstab: 'etc/fstab' })).to.throw(/fstab must be an absolute path/);
  });

  it('check reports the drift of the probe and changes nothing', async () => {
    const { ctx, commands, writes } = fakeContext([fixture('probe/lab-dphys-zram.txt')]);
    const drift: Drift[] = await ensureSwapOff().static!.check(ctx as CheckContext);
    expect(drift.map((d) => d.subject)).to.have.length(7);
    expect(commands).to.deep.equal([]);
    expect(writes).to.deep.equal([]);
  });

  it('apply on dphys-swapfile + zram-generator: exact commands in order, fstab re-read and written with a backup', async () => {
    const before = fixture('probe/lab-dphys-zram.txt');
    // By the time fstab is edited, `dphys-swapfile uninstall` has taken its comment lines out: that edit is kept.
    const afterUninstall = '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n/swapfile\tnone\tswap\tsw\t0\t0\n';
    const { ctx, commands, writes } = fakeContext([before, before, 'fstab-path /etc/fstab\nsystemd yes\n'], { '/etc/fstab': afterUninstall });
    await ensureSwapOff().static!.apply(ctx, []);
    expect(commands).to.deep.equal([
      'dphys-swapfile swapoff',
      'dphys-swapfile uninstall',
      'systemctl disable -- dphys-swapfile.service',
      'mkdir -p -- /etc/systemd',
      'systemctl mask -- swap.target',
      'systemctl mask -- dev-zram1.swap',
      'systemctl mask -- systemd-zram-setup@zram1.service',
      'systemctl daemon-reload',
    ]);
    const zram = parseSwapProbe(before).files.get('/etc/systemd/zram-generator.conf')!;
    expect(writes).to.deep.equal([
      { path: '/etc/systemd/zram-generator.conf', content: commentZramSections(zram), options: { backup: true } },
      { path: '/etc/fstab', content: '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n#/swapfile\tnone\tswap\tsw\t0\t0\n', options: { backup: true } },
    ]);
  });

  it('apply on Raspberry Pi OS trixie: stops active units while masking, writes Mechanism=none, then swapoff -a', async () => {
    const before = fixture('probe/raspios-trixie-constructed.txt');
    const { ctx, commands, writes } = fakeContext([before, before, before]);
    await ensureSwapOff().static!.apply(ctx, []);
    expect(commands).to.deep.equal([
      'mkdir -p -- /etc/rpi/swap.conf.d',
      'systemctl mask -- swap.target',
      'systemctl stop -- rpi-setup-loop@var-swap.service',
      'systemctl mask -- rpi-setup-loop@var-swap.service',
      'systemctl mask -- rpi-resize-swap-file.service',
      'systemctl mask -- rpi-zram-writeback.service',
      'systemctl stop -- rpi-zram-writeback.timer',
      'systemctl mask -- rpi-zram-writeback.timer',
      'systemctl stop -- dev-zram0.swap',
      'systemctl mask -- dev-zram0.swap',
      'systemctl stop -- systemd-zram-setup@zram0.service',
      'systemctl mask -- systemd-zram-setup@zram0.service',
      'systemctl daemon-reload',
      'swapoff -a',
    ]);
    expect(writes).to.deep.equal([{ path: RPI_SWAP_DROP_IN, content: RPI_SWAP_DROP_IN_CONTENT, options: {} }]);
  });
});
