import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret } from '../../runner/secret.js';
import { CommandError } from '../../runner/errors.js';
import { sh } from '../../runner/quote.js';
import { CHECK_SCRIPT, KEEPALIVED_CONFIG, ensureKeepalived, ensureKeepalivedConfig, interfaceOf, keepalivedConfigCheck, renderCheckScript, renderKeepalivedConfig, validateKeepalivedParams } from '../../tasks/keepalived.js';
import { recordingContext } from '../helpers/apply-context.js';
import { localHost } from '../helpers/local.js';

describe('keepalived: the API server VIP', () => {
  it('renders seed 004\'s keepalived.conf exactly: BACKUP, nopreempt, PASS authentication, the check script tracked', () => {
    expect(renderKeepalivedConfig({ vip: '192.168.0.66', port: 8888, interface: 'eth1', authPass: 'ZqSj#f1G' })).to.equal(`# Managed by Capstan: the Kubernetes API server VIP 192.168.0.66 (seed 004). Changes here are overwritten.
global_defs {
    enable_script_security
    script_user nobody
}

vrrp_script check_apiserver {
    script "/etc/keepalived/check_apiserver.sh"
    interval 3
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth1
    virtual_router_id 5
    priority 100
    advert_int 1
    nopreempt
    authentication {
        auth_type PASS
        auth_pass ZqSj#f1G
    }
    virtual_ipaddress {
        192.168.0.66
    }
    track_script {
        check_apiserver
    }
}
`);
  });

  it('leaves authentication out without a password, and takes the router id, priority and intervals given', () => {
    const text = renderKeepalivedConfig({ vip: '10.77.9.10', port: 8888, interface: 'eth0', routerId: 51, priority: 150, advertInt: 2, checkInterval: 5 });
    expect(text).not.to.include('authentication');
    expect(text).to.include('    interval 5\n');
    expect(text).to.include('    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 2\n    nopreempt\n    virtual_ipaddress {\n        10.77.9.10\n    }\n');
  });

  it('renders the check script exactly', () => {
    expect(renderCheckScript({ vip: '192.168.0.66', port: 8888 })).to.equal(`#!/bin/sh
# Managed by Capstan: keepalived's check for the API server VIP (seed 004). keepalived runs it as
# nobody every few seconds; when it fails, this node gives the VIP up. It passes while haproxy
# accepts connections on port 8888: haproxy checks every API server itself (/healthz) and routes
# around dead ones, and this passes before the first API server exists, so kubeadm init finds the VIP.
APISERVER_VIP=192.168.0.66
APISERVER_DEST_PORT=8888

errorExit() {
    echo "*** $*" 1>&2
    exit 1
}

timeout 2 bash -c "</dev/tcp/127.0.0.1/\${APISERVER_DEST_PORT}" 2>/dev/null || errorExit "Error connecting to 127.0.0.1:\${APISERVER_DEST_PORT}"
if ip -o addr show | grep -q " inet \${APISERVER_VIP}/"; then
    timeout 2 bash -c "</dev/tcp/\${APISERVER_VIP}/\${APISERVER_DEST_PORT}" 2>/dev/null || errorExit "Error connecting to \${APISERVER_VIP}:\${APISERVER_DEST_PORT}"
fi
`);
  });

  describe('the check script, run with dash against a local port', () => {
    let dir: string;
    let server: Server;
    let port: number;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'capstan-keepalived-'));
      server = createServer((socket) => socket.end()).listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(() => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const runScript = (scriptPort: number) => {
      // 192.0.2.1 (TEST-NET-1) is on no interface here: only the local check runs.
      const path = join(dir, `check-${scriptPort}.sh`);
      writeFileSync(path, renderCheckScript({ vip: '192.0.2.1', port: scriptPort }));
      return spawnSync('sh', [path], { encoding: 'utf8' });
    };

    it('passes while something accepts connections on the port (haproxy)', () => {
      const result = runScript(port);
      expect(result.status, result.stderr).to.equal(0);
    });

    it('fails, saying why, when nothing listens there', async () => {
      const closed = createServer().listen(0, '127.0.0.1');
      await new Promise((resolve) => closed.once('listening', resolve));
      const free = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const result = runScript(free);
      expect(result.status).to.equal(1);
      expect(result.stderr).to.equal(`*** Error connecting to 127.0.0.1:${free}\n`);
    });
  });

  it('finds the interface that carries an address in `ip -o addr show`', () => {
    const output = [
      '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
      '2: eth0    inet 10.77.9.11/24 scope global eth0\\       valid_lft forever preferred_lft forever',
      '2: eth0    inet 10.77.9.10/32 scope global eth0\\       valid_lft forever preferred_lft forever',
      '3: enp1s0@if7    inet 192.168.0.61/24 brd 192.168.0.255 scope global enp1s0',
      '3: enp1s0@if7    inet6 fe80::1/64 scope link',
    ].join('\n');
    expect(interfaceOf(output, '10.77.9.11')).to.equal('eth0');
    expect(interfaceOf(output, '192.168.0.61')).to.equal('enp1s0');
    expect(interfaceOf(output, '10.77.9.1')).to.equal(null);
  });

  it('refuses what keepalived would not take', () => {
    const ok = { vip: '192.168.0.66', port: 8888, interface: 'eth1' };
    expect(() => validateKeepalivedParams({ ...ok, vip: '192.168.0' })).to.throw(/vip must be an IPv4 address/);
    expect(() => validateKeepalivedParams({ ...ok, authPass: 'longer-than-8' })).to.throw(/authPass must be 1 to 8 printable characters/);
    expect(() => validateKeepalivedParams({ ...ok, routerId: 256 })).to.throw(/routerId must be a whole number from 1 to 255/);
    expect(() => validateKeepalivedParams({ ...ok, priority: 255 })).to.throw(/priority must be a whole number from 1 to 254/);
    expect(() => validateKeepalivedParams({ vip: '192.168.0.66', port: 8888 })).to.throw(/give interface, or this node's address/);
    expect(() => validateKeepalivedParams({ ...ok, interface: 'eth 1' })).to.throw(/interface must be an interface name/);
  });

  it('is three tasks: the check script (root, 0755), keepalived.conf (0640), the service restarted when either changes', () => {
    const tasks = ensureKeepalived({ vip: '192.168.0.66', port: 8888, interface: 'eth1', authPass: new Secret('ZqSj#f1G') });
    expect(tasks.map((t) => t.static?.id ?? t.kind)).to.deep.equal([`file:${CHECK_SCRIPT}`, `file:${KEEPALIVED_CONFIG}`, 'service:keepalived']);
    expect(tasks[0]!.static!.title).to.equal('keepalived check script (haproxy on :8888, VIP 192.168.0.66)');
    expect(tasks[2]!.static!.desired).to.deep.equal({ name: 'keepalived.service', enabled: true, running: true, restartOn: [CHECK_SCRIPT, KEEPALIVED_CONFIG].sort() });
    // The password never shows: not in the title, and the conflict check compares a marker, not the text.
    const config = ensureKeepalivedConfig({ vip: '192.168.0.66', port: 8888, interface: 'eth1', authPass: new Secret('ZqSj#f1G') });
    expect(config.static!.title).to.equal('keepalived: VIP 192.168.0.66 (router 5, priority 100, nopreempt)');
});

  it('applies with one write whose temp file keepalived --config-test checks before the rename (no candidate file, no test log)', async () => {
    const params = { vip: '192.168.0.66', port: 8888, interface: 'eth1', authPass: new Secret('ZqSj#f1G') };
    const { ctx, log, writes } = recordingContext();
    await ensureKeepalivedConfig(params).static!.apply(ctx, []);
    expect(log).to.deep.equal([
      'run mkdir -p -m 0755 /etc/keepalived',
      `write /etc/keepalived/keepalived.conf mode=0640 owner=root group=root validate: { problems=$(keepalived --config-test -f /etc/keepalived/.capstan.0123456789abcdef 2>&1 >/dev/null); } 2>/dev/null; [ -z "$problems" ] || { printf '%s\\n' "$problems" >&2; exit 1; }`,
    ]);
    // The file holds the VRRP password: it is written as a Secret.
    expect(writes[0]!.content).to.be.instanceOf(Secret);
    expect((writes[0]!.content as Secret).reveal()).to.equal(renderKeepalivedConfig(params));
  });

  describe('keepalivedConfigCheck in a real write (local host, dash), with a stand-in keepalived', () => {
    let local: ReturnType<typeof localHost>;
    let bin: string;
    before(() => {
      bin = mkdtempSync(join(tmpdir(), 'capstan-keepalived-bin-'));
      // Like keepalived 2.2's --config-test: problems on stderr (one line each), chatter on stdout,
      // and the end is its own SIGTERM, whether or not it found anything.
      writeFileSync(
        join(bin, 'keepalived'),
        `#!/bin/sh
[ "$1" = --config-test ] && [ "$2" = -f ] || { echo "unexpected arguments: $*" >&2; exit 2; }
echo "Starting Keepalived"
grep -n bogus "$3" | while IFS=: read -r line _; do echo "($3: Line $line) Unknown keyword 'bogus'" >&2; done
kill -TERM $$
`,
      );
      chmodSync(join(bin, 'keepalived'), 0o755);
    });
    beforeEach(() => (local = localHost()));
    afterEach(() => local.cleanup());
    after(() => rmSync(bin, { recursive: true, force: true }));

    const write = (path: string, content: string) =>
      local.host.writeFile(path, new Secret(content), { mode: '0640', validate: (temp) => sh`PATH=${bin}:"$PATH"; ${keepalivedConfigCheck(temp)}` });

    it('passes a file keepalived says nothing about, though keepalived was killed by SIGTERM', async () => {
      const path = join(local.dir, 'keepalived.conf');
      writeFileSync(path, 'old\n');
      await write(path, 'global_defs {\n}\n');
      expect(readFileSync(path, 'utf8')).to.equal('global_defs {\n}\n');
      expect(readdirSync(local.dir)).to.deep.equal(['keepalived.conf']);
    });

    it('refuses a file keepalived reports problems in, with its report (and no "Terminated") in the error', async () => {
      const path = join(local.dir, 'keepalived.conf');
      writeFileSync(path, 'old\n');
      const error = await write(path, 'global_defs {\n    bogus 1\n}\n').then(() => null, (caught: unknown) => caught);
      expect(error).to.be.instanceOf(CommandError);
      expect((error as CommandError).message).to.match(
        new RegExp(`^${path} not replaced: the new content failed validation \\(exit 1\\)\\n\\(${local.dir}/\\.capstan\\.[0-9a-f]{16}: Line 2\\) Unknown keyword 'bogus'$`),
      );
      expect(readFileSync(path, 'utf8')).to.equal('old\n');
      expect(readdirSync(local.dir)).to.deep.equal(['keepalived.conf']);
    });
  });
});
