import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { InputError } from '../../runner/errors.js';
import type { HostView } from '../../runner/task.js';
import { parseFacts } from '../../runner/facts.js';
import {
  ensureService,
  ensureSystemdUnit,
  parseSystemdTimestamp,
  parseUnitState,
  reloadService,
  restartService,
  serviceClaims,
  serviceDrift,
  unitFilePath,
  unitName,
  unitProbe,
  type UnitState,
} from '../../tasks/systemd.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/system/${name}`, import.meta.url), 'utf8');
const view: HostView = { name: 'node1', vars: {}, facts: parseFacts('hostname=node1\n') };

describe('systemd: unit names and the probe command', () => {
  it('adds .service to bare names and keeps other unit types', () => {
    expect(unitName('containerd')).to.equal('containerd.service');
    expect(unitName('containerd.service')).to.equal('containerd.service');
    expect(unitName('var-swap.swap')).to.equal('var-swap.swap');
    expect(unitName('rpi-setup-loop@var-swap')).to.equal('rpi-setup-loop@var-swap.service');
  });

  it('places unit files and drop-ins in /etc/systemd/system', () => {
    expect(unitFilePath({ name: 'capstan-demo' })).to.equal('/etc/systemd/system/capstan-demo.service');
    expect(unitFilePath({ name: 'kubelet', dropIn: '20-node-ip' })).to.equal('/etc/systemd/system/kubelet.service.d/20-node-ip.conf');
  });

  it('probes is-enabled, is-active, show -p … and the restartOn mtimes in one command, every value quoted', () => {
    expect(unitProbe('containerd.service', ['/etc/containerd/config.toml', "/etc/it's"]).text).to.equal(
      [
        'if [ -d /run/systemd/system ]; then echo Systemd=yes; else echo Systemd=no; exit 0; fi',
        `printf 'IsEnabled=%s\\n' "$(systemctl is-enabled -- containerd.service 2>/dev/null)"`,
        `printf 'IsActive=%s\\n' "$(systemctl is-active -- containerd.service 2>/dev/null)"`,
        'TZ=UTC LC_ALL=C systemctl show --timestamp=us+utc -p LoadState -p ActiveState -p SubState -p NeedDaemonReload -p MainPID -p CanReload -p ActiveEnterTimestamp -- containerd.service 2>/dev/null || ' +
          'TZ=UTC LC_ALL=C systemctl show -p LoadState -p ActiveState -p SubState -p NeedDaemonReload -p MainPID -p CanReload -p ActiveEnterTimestamp -- containerd.service',
        `for f in /etc/containerd/config.toml '/etc/it'\\''s'; do if [ -e "$f" ]; then printf 'Mtime=%s %s\\n' "$(date -r "$f" +%s.%N)" "$f"; fi; done`,
      ].join('\n'),
    );
  });
});

describe('systemd: parsing the probe (fixtures from a lab host)', () => {
  it('an enabled, running service with a restartOn file', () => {
    expect(parseUnitState(fixture('unit-ssh-active.txt'))).to.deep.equal({
      systemd: true,
      enabled: 'enabled',
      active: 'active',
      loadState: 'loaded',
      subState: 'running',
      needDaemonReload: false,
      mainPid: 49,
      canReload: true,
      activeSince: Date.UTC(2026, 11, 3, 20, 28, 55) / 1000 + 0.152667,
      activeSincePrecise: true,
      mtimes: { '/etc/ssh/sshd_config': 1777976816 },
    });
  });

  it('a masked unit, a missing unit, a failed unit whose file changed', () => {
    const masked = parseUnitState(fixture('unit-masked.txt'));
    expect([masked.enabled, masked.loadState, masked.active, masked.activeSince]).to.deep.equal(['masked', 'masked', 'inactive', null]);
    const missing = parseUnitState(fixture('unit-not-found.txt'));
    expect([missing.enabled, missing.loadState, missing.active]).to.deep.equal(['', 'not-found', 'inactive']);
    const failed = parseUnitState(fixture('unit-failed-needs-reload.txt'));
    expect([failed.enabled, failed.active, failed.needDaemonReload, failed.mainPid]).to.deep.equal(['static', 'failed', true, 0]);
  });

  it('a host without systemd', () => {
    expect(parseUnitState('Systemd=no\n').systemd).to.equal(false);
  });

  it('parses UTC timestamps, with or without microseconds, and nothing else', () => {
    expect(parseSystemdTimestamp('Sat 2026-11-21 21:56:18 UTC')).to.equal(1795298178);
    expect(parseSystemdTimestamp('Sat 2026-11-21 21:56:18.123456 UTC')).to.equal(1795298178.123456);
    expect(parseSystemdTimestamp('')).to.equal(null);
    expect(parseSystemdTimestamp('Sat 2026-11-21 22:56:18 CET')).to.equal(null);
  });
});

describe('systemd: what a service task claims (pure)', () => {
  it('claims the unit and each aspect it sets, so enabled-before and running-after-init do not conflict, enabled true/false do', () => {
    expect(serviceClaims({ name: 'kubelet', enabled: true })).to.deep.equal([
      { id: 'service:kubelet', desired: 'kubelet.service' },
      { id: 'service:kubelet:enabled', desired: true },
    ]);
    expect(serviceClaims({ name: 'kubelet', running: true })).to.deep.equal([
      { id: 'service:kubelet', desired: 'kubelet.service' },
      { id: 'service:kubelet:running', desired: true },
    ]);
    expect(serviceClaims({ name: 'haproxy', enabled: true, running: true, restartOn: ['/b', '/a'] }).map((c) => `${c.id}=${JSON.stringify(c.desired)}`)).to.deep.equal([
      'service:haproxy="haproxy.service"',
      'service:haproxy:enabled=true',
      'service:haproxy:running=true',
      'service:haproxy:restart-on=["/a","/b"]',
    ]);
  });
});

describe('systemd: serviceDrift (pure)', () => {
  const state = (overrides: Partial<UnitState>): UnitState => ({ ...parseUnitState(fixture('unit-ssh-active.txt')), ...overrides });

  it('an enabled running service is in sync; disabled/inactive drift to enable and start', () => {
    expect(serviceDrift('ssh.service', state({}), { enabled: true, running: true })).to.deep.equal([]);
    expect(serviceDrift('x.service', state({ enabled: 'disabled', active: 'inactive' }), { enabled: true, running: true })).to.deep.equal([
      { subject: 'enabled', current: 'disabled', desired: 'enabled' },
      { subject: 'running', current: 'inactive', desired: 'active' },
    ]);
    expect(serviceDrift('x.service', state({ active: 'failed' }), { running: true })).to.deep.equal([{ subject: 'running', current: 'failed', desired: 'active' }]);
  });

  it('stopping and disabling', () => {
    expect(serviceDrift('x.service', state({}), { enabled: false, running: false })).to.deep.equal([
      { subject: 'enabled', current: 'enabled', desired: 'disabled' },
      { subject: 'running', current: 'active', desired: 'inactive' },
    ]);
    expect(serviceDrift('x.service', state({ enabled: 'enabled-runtime' }), { enabled: true })).to.deep.equal([{ subject: 'enabled', current: 'enabled-runtime', desired: 'enabled' }]);
  });

  it('static, alias and generated units count as enabled (nothing to enable); static as not enabled either', () => {
    for (const enabled of ['static', 'alias', 'generated', 'indirect']) expect(serviceDrift('x.service', state({ enabled }), { enabled: true })).to.deep.equal([]);
    expect(serviceDrift('x.service', state({ enabled: 'static', active: 'inactive' }), { enabled: false, running: false })).to.deep.equal([]);
  });

  it('a unit file changed on disk asks for a daemon-reload first', () => {
    expect(serviceDrift('x.service', parseUnitState(fixture('unit-failed-needs-reload.txt')), { running: true })).to.deep.equal([
      { subject: 'daemon-reload', current: 'unit file changed on disk', desired: 'reloaded' },
      { subject: 'running', current: 'failed', desired: 'active' },
    ]);
  });

  it('a masked unit wanted running fails, saying it is masked and how to unmask it; wanted off, it is in sync', () => {
    const masked = parseUnitState(fixture('unit-masked.txt'));
    expect(() => serviceDrift('systemd-hostnamed.service', masked, { enabled: true, running: true })).to.throw(
      'systemd-hostnamed.service is masked (systemctl is-enabled: masked), so it cannot be enabled; someone masked it on purpose: unmask it (systemctl unmask systemd-hostnamed.service) if it should run',
    );
    expect(() => serviceDrift('systemd-hostnamed.service', masked, { running: true })).to.throw(/so it cannot be started;/);
    expect(serviceDrift('systemd-hostnamed.service', masked, { enabled: false, running: false })).to.deep.equal([]);
  });

  it('a missing unit fails when wanted, and is in sync when wanted disabled and stopped', () => {
    const missing = parseUnitState(fixture('unit-not-found.txt'));
    expect(() => serviceDrift('nosuch.service', missing, { running: true })).to.throw(
      'nosuch.service not found: no unit file for it (is its package installed, or its unit written?)',
    );
    expect(serviceDrift('nosuch.service', missing, { enabled: false, running: false })).to.deep.equal([]);
  });

  it('restartOn: a file modified after the service started means restart; older, or missing, does not', () => {
    const started = Date.UTC(2026, 10, 21, 21, 56, 18) / 1000;
    const base = state({ activeSince: started, mtimes: { '/etc/a.conf': started + 1, '/etc/b.conf': started } });
    expect(serviceDrift('x.service', base, { running: true, restartOn: ['/etc/a.conf', '/etc/b.conf', '/etc/missing'] })).to.deep.equal([
      { subject: 'restart', current: 'started 2026-11-21T21:56:18Z, before /etc/a.conf changed', desired: 'restarted' },
    ]);
    expect(serviceDrift('x.service', base, { running: true, restartOn: ['/etc/b.conf', '/etc/missing'] })).to.deep.equal([]);
    // To the microsecond: written 0.3 s after a start at .5 of the same second is a change; with a
    // systemd that prints whole seconds, the same file counts only from the next second.
    const half = state({ activeSince: started + 0.5, mtimes: { '/etc/c.conf': started + 0.8, '/etc/d.conf': started + 0.2 } });
    expect(serviceDrift('x.service', half, { running: true, restartOn: ['/etc/c.conf', '/etc/d.conf'] })).to.deep.equal([
      { subject: 'restart', current: 'started 2026-11-21T21:56:18.500Z, before /etc/c.conf changed', desired: 'restarted' },
    ]);
    const whole = state({ activeSince: started, activeSincePrecise: false, mtimes: { '/etc/c.conf': started + 0.8 } });
    expect(serviceDrift('x.service', whole, { running: true, restartOn: ['/etc/c.conf'] })).to.deep.equal([]);
    // A stopped service is started, not restarted: it will read the new file anyway.
    expect(serviceDrift('x.service', { ...base, active: 'inactive' }, { running: true, restartOn: ['/etc/a.conf'] })).to.deep.equal([
      { subject: 'running', current: 'inactive', desired: 'active' },
    ]);
  });
});

describe('systemd: tasks (ids, validation at load, handlers)', () => {
  it('ids are canonical: service:<name> without .service', () => {
    expect(ensureService('containerd', { enabled: true, running: true }).static!.id).to.equal('service:containerd');
    expect(ensureService('containerd.service', { running: true }).static!.id).to.equal('service:containerd');
    expect(ensureService('var-swap.swap', { enabled: false }).static!.id).to.equal('service:var-swap.swap');
    expect(ensureService('containerd', { enabled: true, running: true }).static!.title).to.equal('service containerd enabled, running');
    expect(ensureSystemdUnit({ name: 'demo', content: '' }).static!.id).to.equal('systemd-unit:/etc/systemd/system/demo.service');
    expect(restartService('containerd').static!.id).to.equal('service:containerd:restart');
    expect(reloadService('haproxy').static!.id).to.equal('service:haproxy:reload');
  });

  it('rejects bad parameters when the playbook loads', () => {
    expect(() => ensureService('bad name', { running: true })).to.throw(InputError, 'not a systemd unit name: "bad name"');
    expect(() => ensureService('-x', { running: true })).to.throw(InputError, /not a systemd unit name/);
    expect(() => ensureService('containerd', {})).to.throw(InputError, 'say what is wanted: enabled, running, or both');
    expect(() => ensureService('containerd', { running: true, restartOn: ['etc/x'] })).to.throw(InputError, /restartOn\[0\] must be an absolute path/);
    expect(() => ensureService('containerd', { running: false, restartOn: ['/etc/x'] })).to.throw(InputError, /restartOn makes no sense/);
    expect(() => ensureSystemdUnit({ name: 'demo', content: 'x', dropIn: '../x' })).to.throw(InputError, /dropIn must be a plain file name/);
    expect(() => restartService('bad name')).to.throw(InputError, /not a systemd unit name/);
  });

  it('per-host parameters are resolved and validated when bound', () => {
    const task = ensureService('kubelet', { enabled: true, running: (host) => host.name === 'node1' });
    expect(task.static).to.equal(undefined);
    expect(task.bind(view).desired).to.deep.equal({ name: 'kubelet.service', enabled: true, running: true, restartOn: undefined });
  });

  it('the same handler object for the same unit, so notifying it from several tasks restarts once', () => {
    expect(restartService('containerd')).to.equal(restartService('containerd.service'));
    expect(restartService('containerd')).not.to.equal(reloadService('containerd'));
  });

  it('a handler always has something to do when notified, and is not re-checked after (a restart is not a state)', async () => {
    const bound = restartService('containerd').bind(view);
    expect(bound.verify).to.equal(false);
    expect(await bound.check({} as never)).to.deep.equal([{ subject: 'restart', desired: 'restarted' }]);
  });
});
