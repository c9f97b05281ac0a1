import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import {
  containerdRuntimesPath,
  ensureContainerdCgroup,
  ensureDockerCgroupDriver,
  needsDefaultContainerdConfig,
  parseTableHeader,
  serviceDrift,
  editDockerDaemonJson,
  setSystemdCgroup,
  systemdCgroupOf,
} from '../../tasks/containerd.js';
import { parseUnitState } from '../../tasks/systemd.js';
import { localHost, run } from '../helpers/local.js';

const fixture = (name: string) => readFileSync(join('test/fixtures/containerd', name), 'utf8');

describe('containerd config: SystemdCgroup (pure TOML transform)', () => {
  it('containerd 1.6 default (Debian bookworm): exactly what the seeds\' sed produces', () => {
    const before = fixture('config-default-1.6.toml');
    const after = setSystemdCgroup(before);
    expect(after).to.equal(fixture('config-default-1.6.systemd.toml'));
    expect(after.split('\n').filter((l) => l.includes('SystemdCgroup'))).to.deep.equal(['            SystemdCgroup = true']);
    expect(systemdCgroupOf(before)).to.equal(false);
    expect(systemdCgroupOf(after)).to.equal(true);
    // Idempotent, byte for byte.
    expect(setSystemdCgroup(after)).to.equal(after);
  });

  it('containerd 2.x default (version 3, no SystemdCgroup key): inserts the key in the runc options table, comments kept', () => {
    const before = fixture('config-default-2.x.toml');
    const after = setSystemdCgroup(before);
    const lines = before.split('\n');
    const at = lines.indexOf("            ShimCgroup = ''") + 1;
    expect(at).to.be.greaterThan(0);
    expect(after).to.equal([...lines.slice(0, at), '            SystemdCgroup = true', ...lines.slice(at)].join('\n'));
    expect(after.startsWith('# containerd has several configuration versions:\n')).to.equal(true);
    const doc = parse(after) as any;
    expect(doc.plugins['io.containerd.cri.v1.runtime'].containerd.runtimes.runc.options.SystemdCgroup).to.equal(true);
    expect(setSystemdCgroup(after)).to.equal(after);
  });

  it('containerd 2.x with SystemdCgroup = false (2.1+ prints it): replaced in place', () => {
    const withFalse = fixture('config-default-2.x.toml').replace("            ShimCgroup = ''\n", "            ShimCgroup = ''\n            SystemdCgroup = false\n");
    expect(setSystemdCgroup(withFalse)).to.equal(withFalse.replace('SystemdCgroup = false', 'SystemdCgroup = true'));
    // And back, for the record: the value is a parameter of the transform.
    expect(setSystemdCgroup(withFalse.replace('SystemdCgroup = false', 'SystemdCgroup = true'), false)).to.equal(withFalse);
  });

  it('keeps comments, a trailing comment on the key\'s line, and CRLF line ends', () => {
    const text = '# node config\r\nversion = 2\r\n\r\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\r\n  runtime_type = "io.containerd.runc.v2" # v2 shim\r\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\r\n    SystemdCgroup = false  # set by hand\r\n    BinaryName = "/usr/bin/runc"\r\n';
    expect(setSystemdCgroup(text)).to.equal(text.replace('SystemdCgroup = false  # set', 'SystemdCgroup = true  # set'));
  });

  it('adds the runc table with its runtime_type where the file has none (a runc table alone gets an empty runtime_type)', () => {
    const text = '# my config\nversion = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "runc" # keep\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n';
    expect(setSystemdCgroup(text)).to.equal(
      '# my config\nversion = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "runc" # keep\n\n' +
        '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n\n' +
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n      SystemdCgroup = true\n\n' +
        '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n',
    );
    const v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'overlayfs'\n";
    expect(setSystemdCgroup(v3)).to.equal(
      `${v3}\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = 'io.containerd.runc.v2'\n\n  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n    SystemdCgroup = true\n`,
    );
    // An options table without its runtime table: runtime_type is added in a runc table of its own.
    const optionsOnly = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n';
    const fixed = parse(setSystemdCgroup(optionsOnly)) as any;
    expect(fixed.plugins['io.containerd.grpc.v1.cri'].containerd.runtimes.runc).to.deep.include({ runtime_type: 'io.containerd.runc.v2' });
  });

  it('sets every runc-based runtime, as containerd wants them to agree', () => {
    const text = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "nvidia"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n    runtime_type = "io.containerd.runc.v2"\n    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n      BinaryName = "/usr/bin/nvidia-container-runtime"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n    runtime_type = "io.containerd.kata.v2"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n      SystemdCgroup = false\n';
    const doc = parse(setSystemdCgroup(text)) as any;
    const runtimes = doc.plugins['io.containerd.grpc.v1.cri'].containerd.runtimes;
    expect(runtimes.nvidia.options).to.deep.equal({ BinaryName: '/usr/bin/nvidia-container-runtime', SystemdCgroup: true });
    expect(runtimes.runc.options).to.deep.equal({ SystemdCgroup: true });
    expect(runtimes.kata).to.deep.equal({ runtime_type: 'io.containerd.kata.v2' });
    expect(setSystemdCgroup(text)).to.include('      BinaryName = "/usr/bin/nvidia-container-runtime"\n      SystemdCgroup = true\n');
  });

  it('falls back to re-serialising a layout it cannot edit line by line (inline tables), still correct', () => {
    const text = 'version = 2\n# comment\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n  options = { SystemdCgroup = false, BinaryName = "" }\n';
    const after = setSystemdCgroup(text);
    expect(parse(after)).to.deep.equal({
      version: 2,
      plugins: { 'io.containerd.grpc.v1.cri': { containerd: { runtimes: { runc: { runtime_type: 'io.containerd.runc.v2', options: { SystemdCgroup: true, BinaryName: '' } } } } } },
    });
    expect(after).not.to.include('# comment');
    expect(setSystemdCgroup(after)).to.equal(after);
  });

  it('uses the legacy plugins.cri layout for a config without version', () => {
    expect(containerdRuntimesPath(1)).to.deep.equal(['plugins', 'cri', 'containerd', 'runtimes']);
    const text = '[plugins.cri.containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n';
    expect(setSystemdCgroup(text)).to.equal(`${text}\n  [plugins.cri.containerd.runtimes.runc.options]\n    SystemdCgroup = true\n`);
  });

  it('refuses a config that disables the CRI plugin, and one that is not TOML', () => {
    expect(() => setSystemdCgroup('disabled_plugins = ["cri"]\nroot = "/var/lib/containerd"\n')).to.throw(/disables the CRI plugin/);
    expect(() => setSystemdCgroup('version = = 2\n')).to.throw(/not valid TOML/);
  });

  it('starts from containerd config default when the file is missing, empty, comments only, or a package stub', () => {
    expect(needsDefaultContainerdConfig(null)).to.equal(true);
    expect(needsDefaultContainerdConfig('')).to.equal(true);
    expect(needsDefaultContainerdConfig('# nothing\n#disabled_plugins = ["cri"]\n')).to.equal(true);
    expect(needsDefaultContainerdConfig(fixture('containerd.io-config.toml'))).to.equal(true);
    expect(needsDefaultContainerdConfig(fixture('debian-bookworm-config.toml'))).to.equal(true);
    expect(needsDefaultContainerdConfig(fixture('config-default-1.6.toml'))).to.equal(false);
    expect(needsDefaultContainerdConfig(fixture('debian-bookworm-config.toml').replace('/usr/lib/cni', '/opt/cni/bin'))).to.equal(false);
  });

  it('parses table headers with quoted keys', () => {
    expect(parseTableHeader(`  [plugins.'io.containerd.cri.v1.runtime'.containerd] # c`)).to.deep.equal({ indent: '  ', path: ['plugins', 'io.containerd.cri.v1.runtime', 'containerd'], array: false });
    expect(parseTableHeader('[ a . "b\\"c" ]')).to.deep.equal({ indent: '', path: ['a', 'b"c'], array: false });
    expect(parseTableHeader('[[a.b]]')).to.deep.equal({ indent: '', path: ['a', 'b'], array: true });
    expect(parseTableHeader('[a] x')).to.equal(null);
    expect(parseTableHeader('a = [1]')).to.equal(null);
  });
});

describe('docker daemon.json: seed 002\'s cgroup driver and log driver (pure)', () => {
  // Seed 002: cat > /etc/docker/daemon.json <<EOF { "exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "journald" } EOF
  const SEED = '{\n  "exec-opts": [\n    "native.cgroupdriver=systemd"\n  ],\n  "log-driver": "journald"\n}\n';

  it('writes seed 002\'s keys, in its order, into a missing or empty file', () => {
    expect(editDockerDaemonJson(null)).to.equal(SEED);
    expect(editDockerDaemonJson('')).to.equal(SEED);
  });

  it('merges into the user\'s daemon.json: their keys kept in place, the cgroup driver replaced in place, the log driver set', () => {
    expect(editDockerDaemonJson('{ "log-driver": "journald" }')).to.equal('{\n  "log-driver": "journald",\n  "exec-opts": [\n    "native.cgroupdriver=systemd"\n  ]\n}\n');
    expect(editDockerDaemonJson('{"exec-opts": ["native.cgroupdriver=cgroupfs", "other=1"], "data-root": "/mnt/docker"}')).to.equal(
      '{\n  "exec-opts": [\n    "native.cgroupdriver=systemd",\n    "other=1"\n  ],\n  "data-root": "/mnt/docker",\n  "log-driver": "journald"\n}\n',
    );
    expect(editDockerDaemonJson('{"log-driver": "json-file", "exec-opts": ["native.cgroupdriver=systemd"], "registry-mirrors": ["https://mirror.example"]}')).to.equal(
      '{\n  "log-driver": "journald",\n  "exec-opts": [\n    "native.cgroupdriver=systemd"\n  ],\n  "registry-mirrors": [\n    "https://mirror.example"\n  ]\n}\n',
    );
  });

  it('leaves a file that already says so untouched, byte for byte (the seed\'s own layout)', () => {
    const seed = '{\n  "exec-opts": ["native.cgroupdriver=systemd"],\n  "log-driver": "journald"\n}\n';
    expect(editDockerDaemonJson(seed)).to.equal(seed);
    // Only the cgroup driver (what Capstan wrote before): the log driver is added.
    expect(editDockerDaemonJson('{\n  "exec-opts": ["native.cgroupdriver=systemd"]\n}\n')).to.equal(SEED);
  });

  it('refuses to overwrite a broken daemon.json', () => {
    expect(() => editDockerDaemonJson('{ "exec-opts": [ }')).to.throw(/daemon.json is not valid JSON/);
    expect(() => editDockerDaemonJson('[]')).to.throw(/must hold a JSON object/);
    expect(() => editDockerDaemonJson('{"exec-opts": "native.cgroupdriver=systemd"}')).to.throw(/must be a list of strings/);
  });
});

describe('runtime services (pure)', () => {
  const CONFIG = '/etc/containerd/config.toml';
  /** The unit probe's output on Debian 12 (systemd 252), as tasks/systemd.ts's unitProbe prints it. */
  const probed = (started: string, mtime: string, active = 'active') =>
    parseUnitState(
      `Systemd=yes\nIsEnabled=enabled\nIsActive=${active}\nLoadState=loaded\nActiveState=${active}\nMainPID=812\nActiveEnterTimestamp=${started}\nMtime=${mtime} ${CONFIG}\n`,
    );

  it('wants the service active and started after the config last changed, to the microsecond', () => {
    // Started at 20:28:55.152667; 1796329735 is 2026-12-03 20:28:55 UTC.
    const started = 'Thu 2026-12-03 20:28:55.152667 UTC';
    expect(serviceDrift('containerd', probed(started, '1796329735.100000000'), CONFIG)).to.deep.equal([]);
    expect(serviceDrift('containerd', probed(started, '1796329730.000000000'), CONFIG)).to.deep.equal([]);
    // Written in the same second, after the start: whole seconds missed this restart.
    expect(serviceDrift('containerd', probed(started, '1796329735.400000000'), CONFIG)).to.deep.equal([
      { subject: 'containerd', current: 'running an older config', desired: 'restarted with the current config' },
    ]);
    expect(serviceDrift('containerd', probed(started, '1796329735.400000000', 'failed'), CONFIG)).to.deep.equal([{ subject: 'containerd', current: 'failed', desired: 'active' }]);
  });

  it('with a systemd that prints whole seconds, a change counts from the next second (no restart on every run)', () => {
    const started = 'Thu 2026-12-03 20:28:55 UTC';
    expect(serviceDrift('containerd', probed(started, '1796329735.900000000'), CONFIG)).to.deep.equal([]);
    expect(serviceDrift('containerd', probed(started, '1796329736.000000000'), CONFIG)).to.deep.equal([
      { subject: 'containerd', current: 'running an older config', desired: 'restarted with the current config' },
    ]);
  });

  it('no unit (not installed, or no systemd): nothing to restart', () => {
    expect(serviceDrift('containerd', parseUnitState('Systemd=yes\nIsEnabled=\nIsActive=inactive\nLoadState=not-found\nActiveState=inactive\n'), CONFIG)).to.deep.equal([]);
    expect(serviceDrift('containerd', parseUnitState('Systemd=no\n'), CONFIG)).to.deep.equal([]);
  });
});

describe('runtime cgroup tasks on this machine (no systemd unit: file only)', () => {
  let local: ReturnType<typeof localHost>;
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  it('ensureContainerdCgroup edits an existing config, then is ok', async () => {
    const path = join(local.dir, 'config.toml');
    writeFileSync(path, fixture('config-default-1.6.toml'));
    const task = ensureContainerdCgroup({ path });
    const check = await run(local, task, true);
    expect(check.status).to.equal('changed');
    expect(check.drift.map((d) => d.subject)).to.deep.equal(['content']);
    expect(readFileSync(path, 'utf8')).to.equal(fixture('config-default-1.6.toml'));
    const applied = await run(local, task);
    expect(applied.status, applied.message).to.equal('changed');
    expect(readFileSync(path, 'utf8')).to.equal(fixture('config-default-1.6.systemd.toml'));
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('ensureDockerCgroupDriver creates daemon.json, then is ok', async () => {
    const path = join(local.dir, 'docker/daemon.json');
    const task = ensureDockerCgroupDriver({ path });
    expect((await run(local, task)).status).to.equal('changed');
    expect(readFileSync(path, 'utf8')).to.equal('{\n  "exec-opts": [\n    "native.cgroupdriver=systemd"\n  ],\n  "log-driver": "journald"\n}\n');
    expect((await run(local, task)).status).to.equal('ok');
  });
});
