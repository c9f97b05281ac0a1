import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  bootSysctlValues,
  cmdlineTokens,
  editCmdline,
  ensureKernelCmdline,
  ensureMemoryCgroup,
  ensureModule,
  ensureSysctl,
  listedModules,
  MEMORY_CGROUP_EDIT,
  memoryCgroupActive,
  normaliseSysctlKey,
  normaliseSysctlValue,
  parseCgroupProbe,
  parseModuleProbe,
  parseSysctlConf,
  parseSysctlProbe,
  pickCmdline,
  reboot,
  rebootAndWait,
  REBOOT_COMMAND,
  renderSysctlConf,
  sysctlClaims,
  sysctlDrift,
  withModule,
} from '../../tasks/kernel.js';
import { TransportError } from '../../runner/errors.js';
import { parseFacts } from '../../runner/facts.js';
import type { FileStat, RunResult } from '../../runner/contract.js';
import { parseInventory } from '../../runner/inventory/index.js';
import { playbook } from '../../runner/playbook.js';
import type { Command } from '../../runner/quote.js';
import { planPlaybook } from '../../runner/run.js';
import type { ApplyContext, Task } from '../../runner/task.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/kernel/', import.meta.url));
const fixture = (name: string) => readFileSync(`${FIXTURES}${name}`, 'latin1');

/** A fake host: probes are answered by `answer` (by the command's text), files and stats from maps; changes are recorded. */
function fakeHost(options: { answer?: (command: Command) => string | RunResult; files?: Record<string, string>; runFails?: (command: Command) => RunResult | undefined }) {
  const commands: string[] = [];
  const writes: { path: string; content: string; options: unknown }[] = [];
  let reconnects = 0;
  const result = (value: string | RunResult): RunResult => (typeof value === 'string' ? { code: 0, stdout: value, stderr: '', bytes: Buffer.from(value) } : value);
  const files = options.files ?? {};
  const ctx: ApplyContext = {
    host: { name: 'node', vars: {}, facts: parseFacts('') },
    checkMode: false,
    pendingChanges: [],
    probe: async (command) => result(options.answer?.(command) ?? ''),
    readFile: async (path) => (path in files ? Buffer.from(files[path]!, 'latin1') : null),
    readText: async (path) => files[path] ?? null,
    stat: async (path): Promise<FileStat | null> => (path in files ? { type: 'file', mode: '0755', owner: 'root', group: 'root', size: files[path]!.length } : null),
    run: async (command) => {
      commands.push(command.display);
      const failure = options.runFails?.(command);
      if (failure) throw new Error(`command failed: ${command.display}`);
      return result('');
    },
    exec: async (command) => {
      commands.push(command.display);
      return options.runFails?.(command) ?? result('');
    },
    writeFile: async (path, content, writeOptions) => {
      writes.push({ path, content: Buffer.isBuffer(content) ? content.toString('latin1') : String(content), options: writeOptions });
    },
    log: () => undefined,
    onHost: async (name) => {
      throw new Error(`no other host ${name} in this fake`);
    },
    reconnect: async () => {
      reconnects++;
    },
  };
  return { ctx, commands, writes, reconnects: () => reconnects };
}

async function planConflict(tasks: Task<unknown>[]): Promise<string | undefined> {
  const inventory = parseInventory('node1\n', 'hosts');
  try {
    await planPlaybook(playbook('t', async ({ play }) => void (await play('p', 'all', tasks))), { inventory, extraVars: {}, checkMode: false });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/* ------------------------------------------------------------------ modules */

describe('modules-load.d file (pure)', () => {
  it('a new file is the header and the module', () => {
    expect(withModule(null, 'overlay')).to.equal(fixture('modules/capstan-overlay.conf'));
    expect(withModule('', 'overlay')).to.equal(fixture('modules/capstan-overlay.conf'));
  });

  it('two modules converge in first-added order, and a second pass changes nothing', () => {
    const once = withModule(withModule(null, 'overlay'), 'br_netfilter');
    expect(once).to.equal(fixture('modules/capstan-both.conf'));
    expect(withModule(withModule(once, 'overlay'), 'br_netfilter')).to.equal(once);
  });

  it("keeps the seeds' own k8s.conf byte for byte when it lists the module", () => {
    const seed = fixture('modules/seed-k8s.conf');
    expect(withModule(seed, 'overlay')).to.equal(seed);
    expect(withModule(seed, 'br_netfilter')).to.equal(seed);
    expect(withModule(seed, 'ip_vs')).to.equal('# Managed by Capstan\noverlay\nbr_netfilter\nip_vs\n');
  });

  it('treats - and _ alike and ignores # and ; comments', () => {
    const text = fixture('modules/commented-dashes.conf');
    expect(listedModules(text)).to.deep.equal(['br-netfilter', 'ip_vs']);
    expect(withModule(text, 'br_netfilter')).to.equal(text);
    expect(withModule(text, 'overlay')).to.equal(`# Managed by Capstan\n${text}overlay\n`);
    expect(withModule('overlay', 'nf_conntrack')).to.equal('# Managed by Capstan\noverlay\nnf_conntrack\n');
  });

  it('parses the module probe of a lab host', () => {
    expect(parseModuleProbe(fixture('probe/module-overlay-lab-fresh.txt'))).to.deep.equal({ kernel: '6.18.44-fc-v669', state: 'builtin', file: null });
    expect(parseModuleProbe(fixture('probe/module-nosuchmod-lab.txt')).state).to.equal('missing');
    expect(parseModuleProbe(`kernel 6.1.0-28-arm64\nstate loaded\nfile ${Buffer.from('overlay\n').toString('base64')}\n`)).to.deep.equal({ kernel: '6.1.0-28-arm64', state: 'loaded', file: 'overlay\n' });
  });
});

describe('ensureModule', () => {
  const probeAnswer = (state: string, file?: string) => () => `kernel 6.1.0-28-amd64\nstate ${state}\n${file === undefined ? '' : `file ${Buffer.from(file).toString('base64')}\n`}`;

  it('ids, titles and validation', () => {
    expect(ensureModule('br_netfilter').static!.id).to.equal('module:br_netfilter');
    expect(ensureModule('br_netfilter').static!.title).to.equal('kernel module br_netfilter');
    expect(() => ensureModule('br netfilter')).to.throw(/module name must be letters, digits, _ or -/);
    expect(() => ensureModule('overlay', { file: '/etc/modules' })).to.throw(/file must be \/etc\/modules-load\.d\/<name>\.conf/);
  });

  it('a built-in module: only the boot file drifts', async () => {
    const { ctx } = fakeHost({ answer: probeAnswer('builtin') });
    expect(await ensureModule('br_netfilter').static!.check(ctx)).to.deep.equal([
      { subject: '/etc/modules-load.d/k8s.conf', file: '/etc/modules-load.d/k8s.conf', current: null, desired: '# Managed by Capstan\nbr_netfilter\n' },
    ]);
  });

  it('a loadable module not loaded: modprobe, then the line is added to the shared file', async () => {
    const host = fakeHost({ answer: probeAnswer('available', '# Managed by Capstan\noverlay\n') });
    expect(await ensureModule('br_netfilter').static!.check(host.ctx)).to.deep.equal([
      { subject: 'module br_netfilter', current: 'not loaded', desired: 'loaded' },
      { subject: '/etc/modules-load.d/k8s.conf', file: '/etc/modules-load.d/k8s.conf', current: '# Managed by Capstan\noverlay\n', desired: '# Managed by Capstan\noverlay\nbr_netfilter\n' },
    ]);
    await ensureModule('br_netfilter').static!.apply(host.ctx, []);
    expect(host.commands).to.deep.equal(['modprobe -- br_netfilter', 'mkdir -p -- /etc/modules-load.d']);
    expect(host.writes).to.deep.equal([{ path: '/etc/modules-load.d/k8s.conf', content: '# Managed by Capstan\noverlay\nbr_netfilter\n', options: { mode: '0644' } }]);
  });

  it('loaded and listed: no drift', async () => {
    const { ctx } = fakeHost({ answer: probeAnswer('loaded', 'overlay\nbr_netfilter\n') });
    expect(await ensureModule('overlay').static!.check(ctx)).to.deep.equal([]);
  });

  it('a module the kernel does not have fails, naming the kernel version', async () => {
    const { ctx } = fakeHost({ answer: () => fixture('probe/module-nosuchmod-lab.txt') });
    let message = '';
    await ensureModule('nosuchmod').static!.check(ctx).catch((error: Error) => (message = error.message));
    expect(message).to.equal(
      'kernel module nosuchmod is not available for kernel 6.18.44-fc-v669: not loaded, not built in, and modprobe cannot find it in /lib/modules/6.18.44-fc-v669; install the kernel\'s modules package or check the name',
    );
  });

  it('modprobe failing in apply fails with the kernel version and modprobe\'s words', async () => {
    const stderr = 'modprobe: ERROR: could not insert \'br_netfilter\': Exec format error';
    const { ctx } = fakeHost({ answer: probeAnswer('available'), runFails: (c) => (c.display.startsWith('modprobe') ? { code: 1, stdout: '', stderr, bytes: Buffer.alloc(0) } : undefined) });
    let message = '';
    await ensureModule('br_netfilter').static!.apply(ctx, []).catch((error: Error) => (message = error.message));
    expect(message).to.include('kernel 6.1.0-28-amd64').and.include(stderr);
  });

  it('the same module twice is one claim; a different file for it is a conflict at load', async () => {
    expect(await planConflict([ensureModule('overlay'), ensureModule('overlay')])).to.equal(undefined);
    expect(await planConflict([ensureModule('overlay'), ensureModule('overlay', { file: '/etc/modules-load.d/other.conf' })])).to.equal(
      'play "p" task 1 and play "p" task 2 both manage module:overlay on node1 but want different states',
    );
  });
});

/* ------------------------------------------------------------------ sysctl */

describe('sysctl files (pure)', () => {
  it('normalises keys and values', () => {
    expect(normaliseSysctlKey(' net/ipv4/conf/eth0.100/rp_filter ')).to.equal('net.ipv4.conf.eth0/100.rp_filter');
    expect(normaliseSysctlKey('net.ipv4.ip_forward')).to.equal('net.ipv4.ip_forward');
    expect(normaliseSysctlValue('1024\t65000')).to.equal('1024 65000');
    expect(normaliseSysctlValue('  1024   \t 65000 ')).to.equal('1024 65000');
    expect(normaliseSysctlValue(1)).to.equal('1');
  });

  it("parses the seeds' files (aligned spaces)", () => {
    const expected = [['net.bridge.bridge-nf-call-iptables', '1'], ['net.bridge.bridge-nf-call-ip6tables', '1'], ['net.ipv4.ip_forward', '1']];
    expect([...parseSysctlConf(fixture('sysctl/seed-001-k8s.conf'))]).to.deep.equal(expected);
    expect([...parseSysctlConf(fixture('sysctl/seed-004-10-k8s.conf'))]).to.have.deep.members(expected);
  });

  it('parses tabs, slashes, the - prefix, ; comments and repeated keys (the last wins)', () => {
    expect([...parseSysctlConf(fixture('sysctl/mixed.conf'))]).to.deep.equal([
      ['net.ipv4.ip_local_port_range', '1024 65000'],
      ['net.ipv4.conf.eth0/100.rp_filter', '2'],
      ['net.ipv6.conf.all.disable_ipv6', '1'],
      ['vm.swappiness', '10'],
      ['net.ipv4.ip_forward', '1'],
    ]);
  });

  it('renders exactly the given keys, in order, after the header', () => {
    expect(renderSysctlConf({ 'net.bridge.bridge-nf-call-iptables': 1, 'net.ipv4.ip_local_port_range': '1024\t65000' })).to.equal(
      '# Managed by Capstan\nnet.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_local_port_range = 1024 65000\n',
    );
  });

  it('computes boot values as systemd-sysctl does: by file name, /etc hiding /usr/lib, /etc/sysctl.conf last', () => {
    const boot = bootSysctlValues(
      new Map([
        ['/usr/lib/sysctl.d/50-default.conf', 'net.ipv4.ip_forward = 0\nkernel.pid_max = 4194304\n'],
        ['/etc/sysctl.d/50-default.conf', 'net.ipv4.ip_forward = 1\n'], // hides the vendor file of that name
        ['/etc/sysctl.d/99-kubernetes.conf', 'net.ipv4.ip_forward = 1\nnet.core.somaxconn = 1024\n'],
        ['/usr/lib/sysctl.d/99-zz.conf', 'net.core.somaxconn = 4096\n'],
        ['/etc/sysctl.conf', 'net.ipv4.ip_forward=0\n'],
      ]),
    );
    expect(Object.fromEntries(boot)).to.deep.equal({
      'net.ipv4.ip_forward': { value: '0', path: '/etc/sysctl.conf' },
      'net.core.somaxconn': { value: '4096', path: '/usr/lib/sysctl.d/99-zz.conf' },
    });
  });

  it('drift on a fresh lab host (real probe): the drop-in, and live values that differ after normalising', () => {
    const probe = parseSysctlProbe(fixture('probe/sysctl-lab-fresh.txt'));
    expect(probe.live.get('net.ipv4.ip_local_port_range')).to.equal('32768 60999');
    expect(probe.live.get('net.nosuch.key')).to.equal(null);
    const values = { 'net.bridge.bridge-nf-call-iptables': 1, 'net.ipv4.ip_forward': 1, 'net.ipv4.ip_local_port_range': '32768 60999', 'net.nosuch.key': 1 };
    expect(sysctlDrift(probe, { values })).to.deep.equal([
      { subject: '/etc/sysctl.d/99-kubernetes.conf', file: '/etc/sysctl.d/99-kubernetes.conf', current: null, desired: renderSysctlConf(values) },
      { subject: 'net.ipv4.ip_forward', current: '0', desired: '1' },
      { subject: 'net.nosuch.key', current: 'absent (no such key in the running kernel)', desired: '1' },
    ]);
  });

  it('reports a later file that would undo a key at boot', () => {
    const probe = parseSysctlProbe(
      `file /etc/sysctl.conf ${Buffer.from('net.ipv4.ip_forward = 0\n').toString('base64')}\nlive net.ipv4.ip_forward 1\n`,
    );
    expect(sysctlDrift(probe, { values: { 'net.ipv4.ip_forward': 1 } })).to.deep.equal([
      { subject: '/etc/sysctl.d/99-kubernetes.conf', file: '/etc/sysctl.d/99-kubernetes.conf', current: null, desired: '# Managed by Capstan\nnet.ipv4.ip_forward = 1\n' },
      { subject: 'net.ipv4.ip_forward at boot', current: '0 (set by /etc/sysctl.conf, applied after /etc/sysctl.d/99-kubernetes.conf)', desired: '1' },
    ]);
  });
});

describe('ensureSysctl', () => {
  const k8s = { 'net.bridge.bridge-nf-call-iptables': 1, 'net.bridge.bridge-nf-call-ip6tables': 1, 'net.ipv4.ip_forward': 1 };
  const b64 = (text: string) => Buffer.from(text).toString('base64');

  it('ids: sysctl:<key> for one key, the owned file for several; claims per key', () => {
    expect(ensureSysctl({ 'net.ipv4.ip_forward': 1 }).static!.id).to.equal('sysctl:net.ipv4.ip_forward');
    expect(ensureSysctl(k8s).static!.id).to.equal('sysctl:/etc/sysctl.d/99-kubernetes.conf');
    expect(ensureSysctl(k8s).static!.title).to.equal('sysctl net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1');
    expect(sysctlClaims({ values: { 'net.ipv4.ip_local_port_range': '1024\t65000' } })).to.deep.equal([
      { id: 'sysctl:net.ipv4.ip_local_port_range', desired: '1024 65000' },
      { id: 'sysctl-file:/etc/sysctl.d/99-kubernetes.conf', desired: { 'net.ipv4.ip_local_port_range': '1024 65000' } },
    ]);
  });

  it('conflicting values for one key are rejected at load; values equal after normalising are not', async () => {
    expect(await planConflict([ensureSysctl({ 'net.ipv4.ip_forward': 1 }), ensureSysctl({ 'net.ipv4.ip_forward': 0 }, { file: '/etc/sysctl.d/98-other.conf' })])).to.equal(
      'play "p" task 1 and play "p" task 2 both manage sysctl:net.ipv4.ip_forward on node1 but want different states',
    );
    expect(await planConflict([ensureSysctl({ 'net.ipv4.ip_local_port_range': '1024\t65000' }), ensureSysctl({ 'net.ipv4.ip_local_port_range': '1024 65000' })])).to.equal(undefined);
    expect(await planConflict([ensureSysctl({ 'net.ipv4.ip_forward': 1, 'net.core.somaxconn': 1024 }), ensureSysctl({ 'net.ipv4.ip_forward': 1, 'net.core.somaxconn': 4096 })])).to.equal(
      'play "p" task 1 and play "p" task 2 both manage sysctl:/etc/sysctl.d/99-kubernetes.conf on node1 but want different states',
    );
  });

  it('validates keys, values and the file at load', () => {
    expect(() => ensureSysctl({})).to.throw(/values must set at least one key/);
    expect(() => ensureSysctl({ 'net.ipv4 ip_forward': 1 })).to.throw(/not a sysctl key: "net.ipv4 ip_forward"/);
    expect(() => ensureSysctl({ ip_forward: 1 })).to.throw(/not a sysctl key/);
    expect(() => ensureSysctl({ 'net.ipv4.ip_forward': '1\nkernel.panic = 1' })).to.throw(/must be one non-empty line/);
    expect(() => ensureSysctl({ 'net.ipv4.ip_forward': ' ' })).to.throw(/must be one non-empty line/);
    expect(() => ensureSysctl({ 'net.ipv4.ip_forward': 1, 'net/ipv4/ip_forward': 1 })).to.throw(/key net.ipv4.ip_forward is given twice/);
    expect(() => ensureSysctl({ 'net.ipv4.ip_forward': true as unknown as number })).to.throw(/must be a string or a number/);
    expect(() => ensureSysctl(k8s, { file: '/etc/sysctl.conf' })).to.throw(/file must be \/etc\/sysctl\.d\/<name>\.conf/);
  });

  it('apply writes the drop-in and runs sysctl -p FILE when a live value differs', async () => {
    const host = fakeHost({ answer: () => 'live net.bridge.bridge-nf-call-iptables 1\nlive net.bridge.bridge-nf-call-ip6tables 1\nlive net.ipv4.ip_forward 0\n' });
    await ensureSysctl(k8s).static!.apply(host.ctx, []);
    expect(host.commands).to.deep.equal(['mkdir -p -- /etc/sysctl.d', 'sysctl -p /etc/sysctl.d/99-kubernetes.conf']);
    expect(host.writes).to.deep.equal([
      {
        path: '/etc/sysctl.d/99-kubernetes.conf',
        content: '# Managed by Capstan\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n',
        options: { mode: '0644' },
      },
    ]);
  });

  it('apply only writes the file when the live values already match (no sysctl -p)', async () => {
    const host = fakeHost({ answer: () => 'live net.ipv4.ip_local_port_range 1024\t65000\n' });
    await ensureSysctl({ 'net.ipv4.ip_local_port_range': '1024 65000' }).static!.apply(host.ctx, []);
    expect(host.commands).to.deep.equal(['mkdir -p -- /etc/sysctl.d']);
    expect(host.writes.map((w) => w.path)).to.deep.equal(['/etc/sysctl.d/99-kubernetes.conf']);
  });

  it('apply only runs sysctl -p when the file is right and a live value is not', async () => {
    const file = renderSysctlConf({ 'net.ipv4.ip_forward': 1 });
    const host = fakeHost({ answer: () => `file /etc/sysctl.d/99-kubernetes.conf ${b64(file)}\nlive net.ipv4.ip_forward 0\n` });
    expect(await ensureSysctl({ 'net.ipv4.ip_forward': 1 }).static!.check(host.ctx)).to.deep.equal([{ subject: 'net.ipv4.ip_forward', current: '0', desired: '1' }]);
    await ensureSysctl({ 'net.ipv4.ip_forward': 1 }).static!.apply(host.ctx, []);
    expect(host.commands).to.deep.equal(['sysctl -p /etc/sysctl.d/99-kubernetes.conf']);
    expect(host.writes).to.deep.equal([]);
  });

  it('apply refuses, naming the file, when a later file undoes a key at boot', async () => {
    const host = fakeHost({ answer: () => `file /etc/sysctl.d/99-sysctl.conf ${b64('net.ipv4.ip_forward=0\n')}\nlive net.ipv4.ip_forward 0\n` });
    let message = '';
    await ensureSysctl({ 'net.ipv4.ip_forward': 1 }).static!.apply(host.ctx, []).catch((error: Error) => (message = error.message));
    expect(message).to.equal(
      'other sysctl files would undo /etc/sysctl.d/99-kubernetes.conf at the next boot: net.ipv4.ip_forward = 0 (set by /etc/sysctl.d/99-sysctl.conf, applied after /etc/sysctl.d/99-kubernetes.conf); change or remove those lines, or use a file that sorts later',
    );
    expect(host.commands).to.deep.equal([]);
    expect(host.writes).to.deep.equal([]);
  });
});

/* ------------------------------------------------------------------ cmdline.txt */

describe('cmdline.txt (pure, real Raspberry Pi OS variants)', () => {
  const add = { add: ['cgroup_memory=1', 'cgroup_enable=memory'] };

  for (const name of ['raspios-bookworm', 'raspios-bullseye-noeol']) {
    it(`${name}: appends the cgroup tokens once, one trailing newline`, () => {
      const edited = editCmdline(fixture(`cmdline/${name}.txt`), add);
      expect(edited).to.equal(fixture(`cmdline/${name}.expected`));
      expect(editCmdline(edited, add)).to.equal(edited);
    });
  }

  it('leaves a line that has the tokens untouched, byte for byte', () => {
    const text = fixture('cmdline/already.txt');
    expect(editCmdline(text, add)).to.equal(text);
    expect(editCmdline('a b', { add: ['a'] })).to.equal('a b'); // no newline added when nothing changes
  });

  it('removes cgroup_disable=memory with its separator, keeps odd spacing, trailing blanks and one newline', () => {
    expect(editCmdline(fixture('cmdline/disable-memory.txt'), MEMORY_CGROUP_EDIT)).to.equal(fixture('cmdline/disable-memory.expected'));
  });

  it('removes a first token and bare names, keeping a quoted token with spaces whole', () => {
    expect(cmdlineTokens('a dyndbg="file x +p"  b').map((s) => s.token)).to.deep.equal(['a', 'dyndbg="file x +p"', 'b']);
    expect(editCmdline(fixture('cmdline/quoted-first.txt'), { ...MEMORY_CGROUP_EDIT, remove: ['cgroup_disable=memory', 'quiet', 'splash'] })).to.equal(fixture('cmdline/quoted-first.expected'));
  });

  it('refuses a file with a second line', () => {
    expect(() => editCmdline(fixture('cmdline/two-lines.txt'), add)).to.throw(/single line/);
  });

  it('an empty file gets the tokens', () => {
    expect(editCmdline('', add)).to.equal('cgroup_memory=1 cgroup_enable=memory\n');
  });

  it('prefers /boot/firmware/cmdline.txt, falls back to /boot/cmdline.txt, and never guesses', () => {
    expect(pickCmdline(['/boot/cmdline.txt', '/boot/firmware/cmdline.txt'])).to.equal('/boot/firmware/cmdline.txt');
    expect(pickCmdline(['/boot/cmdline.txt'])).to.equal('/boot/cmdline.txt');
    expect(pickCmdline([])).to.equal(null);
  });
});

describe('ensureKernelCmdline', () => {
  const params = { add: ['cgroup_memory=1', 'cgroup_enable=memory'] };

  it('ids, validation', () => {
    expect(ensureKernelCmdline(params).static!.id).to.equal('kernel-cmdline:+cgroup_memory=1 +cgroup_enable=memory');
    expect(() => ensureKernelCmdline({ add: ['a b'] })).to.throw(/add: not a single command-line token: "a b"/);
    expect(() => ensureKernelCmdline({})).to.throw(/give tokens to add or remove/);
    expect(() => ensureKernelCmdline({ add: ['quiet'], remove: ['quiet'] })).to.throw(/quiet is both added and removed/);
  });

  it('edits /boot/firmware/cmdline.txt with a backup and flags the reboot', async () => {
    const bookworm = fixture('cmdline/raspios-bookworm.txt');
    const host = fakeHost({ files: { '/boot/firmware/cmdline.txt': bookworm, '/boot/cmdline.txt': 'DO NOT EDIT THIS FILE\n' } });
    const task = ensureKernelCmdline(params);
    expect(await task.static!.check(host.ctx)).to.deep.equal([
      { subject: '/boot/firmware/cmdline.txt', file: '/boot/firmware/cmdline.txt', current: bookworm, desired: fixture('cmdline/raspios-bookworm.expected') },
    ]);
    await task.static!.apply(host.ctx, []);
    expect(host.writes).to.deep.equal([
      { path: '/boot/firmware/cmdline.txt', content: fixture('cmdline/raspios-bookworm.expected'), options: { backup: true } },
      { path: '/run/reboot-required', content: '*** System restart required ***\n', options: undefined },
    ]);
  });

  it('falls back to /boot/cmdline.txt; refuses the bookworm placeholder; errors when there is none', async () => {
    const old = fakeHost({ files: { '/boot/cmdline.txt': fixture('cmdline/raspios-bullseye-noeol.txt') } });
    expect((await ensureKernelCmdline(params).static!.check(old.ctx)).map((d) => d.subject)).to.deep.equal(['/boot/cmdline.txt']);
    const placeholder = fakeHost({ files: { '/boot/cmdline.txt': 'DO NOT EDIT THIS FILE\n\nThe file you are looking for has moved to /boot/firmware/cmdline.txt\n' } });
    let message = '';
    await ensureKernelCmdline(params).static!.check(placeholder.ctx).catch((error: Error) => (message = error.message));
    expect(message).to.equal("/boot/cmdline.txt is Raspberry Pi OS's placeholder, not the real command line: is /boot/firmware mounted?");
    await ensureKernelCmdline(params).static!.check(fakeHost({}).ctx).catch((error: Error) => (message = error.message));
    expect(message).to.equal(
      'cannot edit the kernel command line: no Raspberry Pi kernel command line here (neither /boot/firmware/cmdline.txt nor /boot/cmdline.txt exists); editing GRUB (GRUB_CMDLINE_LINUX in /etc/default/grub) is out of scope for Capstan: set it by hand and reboot',
    );
  });
});

/* ------------------------------------------------------------------ memory cgroup and reboot */

describe('memory cgroup (pure)', () => {
  it('cgroup v2: memory listed in cgroup.controllers', () => {
    expect(memoryCgroupActive(parseCgroupProbe('controllers cpuset cpu io memory pids\nv1-memory 1\n'))).to.equal(true);
    // Raspberry Pi kernels without cgroup_enable=memory: v2 without memory (the v1 line does not count then)
    expect(memoryCgroupActive(parseCgroupProbe('controllers cpuset cpu io pids\nv1-memory 0\n'))).to.equal(false);
    expect(memoryCgroupActive(parseCgroupProbe('controllers\n'))).to.equal(false);
  });
  it('cgroup v1: the enabled column of /proc/cgroups (a lab host)', () => {
    expect(parseCgroupProbe(fixture('probe/cgroup-lab-v1.txt'))).to.deep.equal({ controllers: null, v1MemoryEnabled: '1' });
    expect(memoryCgroupActive(parseCgroupProbe(fixture('probe/cgroup-lab-v1.txt')))).to.equal(true);
    expect(memoryCgroupActive(parseCgroupProbe('v1-memory 0\n'))).to.equal(false);
    expect(memoryCgroupActive(parseCgroupProbe(''))).to.equal(false);
  });
});

describe('ensureMemoryCgroup and reboot', () => {
  /** Answers the cgroup probe and the boot identity from sequences (the last answer repeats). */
  function machine(cgroups: string[], boots: string[], files: Record<string, string> = {}) {
    return fakeHost({
      files,
      answer: (command) => {
        const list = command.text.includes('cgroup.controllers') ? cgroups : boots;
        return list.length > 1 ? list.shift()! : list[0]!;
      },
    });
  }

  it('converged when the memory cgroup is active, whatever cmdline.txt says', async () => {
    const host = machine(['controllers cpu memory pids\n'], ['a\n1\n']);
    expect(await ensureMemoryCgroup().static!.check(host.ctx)).to.deep.equal([]);
  });

  it('missing on a non-Pi host: a clear error saying GRUB is out of scope', async () => {
    const host = machine(['controllers cpu pids\n'], ['a\n1\n']);
    let message = '';
    await ensureMemoryCgroup().static!.check(host.ctx).catch((error: Error) => (message = error.message));
    expect(message).to.match(/^the memory cgroup is not active: no Raspberry Pi kernel command line here .* GRUB .* is out of scope for Capstan/);
  });

  it('missing on a Pi: check shows the cmdline.txt diff and the reboot; apply edits, reboots, waits for a new boot and verifies', async () => {
    const bookworm = fixture('cmdline/raspios-bookworm.txt');
    const host = machine(['controllers cpu pids\n', 'controllers cpu memory pids\n'], ['b0\n1\n', 'b1\n1\n'], { '/boot/firmware/cmdline.txt': bookworm });
    const task = ensureMemoryCgroup({ timeoutMs: 5_000 }).static!;
    expect(await task.check(host.ctx)).to.deep.equal([
      { subject: 'memory cgroup', current: 'missing', desired: 'active' },
      { subject: '/boot/firmware/cmdline.txt', file: '/boot/firmware/cmdline.txt', current: bookworm, desired: fixture('cmdline/raspios-bookworm.expected') },
      { subject: 'reboot', desired: 'reboot for the new kernel command line' },
    ]);
    await task.apply(host.ctx, []);
    expect(host.commands).to.deep.equal([REBOOT_COMMAND.display]);
    expect(host.writes.map((w) => w.path)).to.deep.equal(['/boot/firmware/cmdline.txt', '/run/reboot-required']);
    expect(host.reconnects()).to.equal(1);
  }).timeout(10_000);

  it('reboot: check mode says "would reboot"; ifRequired only with /run/reboot-required', async () => {
    const host = machine([''], ['3f1c9a2e-0000-4000-8000-000000000001\n812\n']);
    expect(await reboot().static!.check(host.ctx)).to.deep.equal([{ subject: 'reboot', current: 'boot 3f1c9a2e-0000-4000-8000-000000000001', desired: 'a new boot' }]);
    expect(await reboot({ ifRequired: true }).static!.check(host.ctx)).to.deep.equal([]);
    const flagged = fakeHost({ files: { '/run/reboot-required': '*** System restart required ***\n' } });
    expect(await reboot({ ifRequired: true }).static!.check(flagged.ctx)).to.deep.equal([{ subject: 'reboot', current: 'required (/run/reboot-required)', desired: 'rebooted' }]);
    expect(reboot().static!.verify).to.equal(false);
    expect(() => reboot({ timeoutMs: 10 })).to.throw(/timeoutMs must be a number of milliseconds ≥ 1000/);
  });

  it('reboot: a reconnect in the same boot (before the host went down) does not count; a new boot does', async () => {
    const host = machine([''], ['b0\n100\n', 'b0\n100\n', 'b0\n100\n', 'b0\n2000\n']); // a container restart: same kernel boot id, new PID 1
    await rebootAndWait(host.ctx, 5_000, 10);
    expect(host.commands).to.deep.equal([REBOOT_COMMAND.display]);
    expect(host.reconnects()).to.equal(3);
  });

  it('reboot: fails after the timeout when the boot never changes', async () => {
    const host = machine([''], ['b0\n100\n']);
    let error: unknown;
    await rebootAndWait(host.ctx, 1_000, 50).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(TransportError);
    expect((error as Error).message).to.equal('the host did not come back in a new boot within 1 s');
  });
});
