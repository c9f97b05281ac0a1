import { expect } from 'chai';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostPaths } from '../../runner/lab/paths.js';
import { stopHost, startHost, rekeyHost, type LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, recapOf, eventsOf } from '../helpers/cli.js';

const FILES = 'test/fixtures/playbooks/files.ts';
/** A content hash of every file under /etc and /var/lib (names, modes, owners, bytes), to prove check mode wrote nothing. */
const HASH_STATE = "find /etc /var/lib -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum";

describe('core: CLI against lab hosts', function () {
  this.timeout(300_000);
  let lab: LabState;
  let inventory: string;

  before(async () => {
    lab = await withLab(3);
    inventory = lab.inventoryPath;
  });

  it('exec runs on all hosts in parallel and groups output per host', async () => {
    const result = await capstan(['exec', '-i', inventory, 'all', '--', 'for i in 1 2 3; do echo "$(hostname) line $i"; sleep 0.1; done']);
    expect(result.code).to.equal(0);
    for (const host of ['node1', 'node2', 'node3']) {
      expect(result.stdout).to.include(`${host} | CHANGED | rc=0 >>\n${host} line 1\n${host} line 2\n${host} line 3\n`);
    }
  });

  it('exec exits 2 when a command fails on some host', async () => {
    const result = await capstan(['exec', '-i', inventory, 'all', '--', 'test "$(hostname)" != node2']);
    expect(result.code).to.equal(2);
    expect(result.stdout).to.include('node2 | FAILED | rc=1 >>');
    expect(result.stdout).to.include('node1 | CHANGED | rc=0 >>');
  });

  it('--check on fresh hosts reports every change and writes nothing', async () => {
    const before = await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, HASH_STATE)));
    const result = await capstan(['run', FILES, '-i', inventory, '--check', '--diff', '--json']);
    expect(result.code, result.stderr).to.equal(0);
    const recap = recapOf(result.stdout);
    for (const host of ['node1', 'node2', 'node3']) expect(recap[host]).to.deep.equal({ ok: 0, changed: 5, failed: 0, skipped: 0, unreachable: false });
    const after = await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, HASH_STATE)));
    expect(after.map((r) => r.stdout)).to.deep.equal(before.map((r) => r.stdout));
    const drift = eventsOf(result.stdout).find((e) => e.type === 'task' && e.host === 'node1' && e.task === 'file:/etc/capstan-demo/motd') as { drift: { diff: string }[] };
    expect(drift.drift[0]!.diff).to.equal(
      '--- /dev/null\n+++ /etc/capstan-demo/motd (desired)\n@@ -0,0 +1,1 @@\n+Welcome to node1 (debian bookworm), managed by Capstan\n',
    );
  });

  it('applies, converges, and a second run reports changed=0', async () => {
    const first = await capstan(['run', FILES, '-i', inventory, '--json']);
    expect(first.code, first.stderr).to.equal(0);
    for (const h of Object.values(recapOf(first.stdout))) expect(h).to.deep.equal({ ok: 0, changed: 5, failed: 0, skipped: 0, unreachable: false });
    const motd = await sshToLab(lab, 'node2', 'cat /etc/capstan-demo/motd; stat -c %a /etc/capstan-demo/motd; cat /etc/capstan-demo/settings.conf; sed -n "/BEGIN capstan demo/,/END capstan demo/p" /etc/hosts');
    expect(motd.stdout).to.equal(
      'Welcome to node2 (debian bookworm), managed by Capstan\n644\nlog_level = info\n# BEGIN capstan demo\n10.77.0.100 k8s-api.lab\n10.77.0.101 registry.lab\n# END capstan demo\n',
    );
    const second = await capstan(['run', FILES, '-i', inventory, '--json']);
    expect(second.code).to.equal(0);
    for (const h of Object.values(recapOf(second.stdout))) expect(h).to.deep.equal({ ok: 5, changed: 0, failed: 0, skipped: 0, unreachable: false });
  });

  it('human output shows what would change, with diffs under --diff, and a recap', async () => {
    await sshToLab(lab, 'node3', 'echo "log_level = debug" > /etc/capstan-demo/settings.conf');
    const result = await capstan(['run', FILES, '-i', inventory, '--check', '--diff', '--limit', 'node3']);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.include('PLAYBOOK files (check mode: nothing will be changed)');
    expect(result.stdout).to.include('node3 | would change | line "^log_level\\\\s*=" in /etc/capstan-demo/settings.conf\n    content\n    --- /etc/capstan-demo/settings.conf (current)\n    +++ /etc/capstan-demo/settings.conf (desired)\n    @@ -1,1 +1,1 @@\n    -log_level = debug\n    +log_level = info\n');
    // The recap table, then the run's wall time as the last line (its value is not asserted: no timing in tests).
    expect(result.stdout).to.match(/RECAP\nHOST +ok +changed +failed +skipped +unreachable\nnode3 +4 +1 +0 +0 +no\nfinished in \d+\.\d s\n$/);
    expect(result.stderr).not.to.include('run log:'); // a run that succeeded does not point at its log
    expect(result.stdout).not.to.include('node1');
  });

  it('an unreachable host gives exit 4 while the others finish, and a retry file lists it', async () => {
    await stopHost('node2');
    try {
      const retryDir = `/tmp/capstan-retry-${process.pid}`;
      const result = await capstan(['run', FILES, '-i', inventory, '--json'], { env: { CAPSTAN_RETRY_DIR: retryDir } });
      expect(result.code).to.equal(4);
      const recap = recapOf(result.stdout);
      expect(recap.node2!.unreachable).to.equal(true);
      expect(recap.node1).to.deep.equal({ ok: 5, changed: 0, failed: 0, skipped: 0, unreachable: false });
      expect(recap.node3).to.deep.equal({ ok: 4, changed: 1, failed: 0, skipped: 0, unreachable: false }); // its settings line was edited above
      const unreachable = eventsOf(result.stdout).find((e) => e.type === 'unreachable') as { host: string; message: string };
      expect(unreachable.host).to.equal('node2');
      expect(unreachable.message).to.match(/node2/);
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(`${retryDir}/files.retry`, 'utf8')).to.equal('node2\n');
      // The run log holds the very events --json printed, and a failed run names it on stderr.
      const [logPath, ...others] = Object.keys(result.runLogs);
      expect(others).to.deep.equal([]);
      expect(result.runLogs[logPath!]).to.equal(result.stdout);
      expect(result.stderr).to.include(`run log: ${logPath}\n`);
      expect(result.stderr).to.match(/^finished in \d+\.\d s\n/m);
    } finally {
      await startHost('node2');
    }
  });

  it('refuses a host whose key changed, naming it, and never runs anything there', async () => {
    await rekeyHost('node3');
    const result = await capstan(['exec', '-i', inventory, 'node3', '--', 'touch /root/should-not-exist']);
    expect(result.code).to.equal(4);
    expect(result.stdout).to.match(/node3 \| UNREACHABLE .*REMOTE HOST IDENTIFICATION HAS CHANGED/s);
    const withAcceptNew = await capstan(['exec', '-i', inventory, 'node3', '--accept-new-host-keys', '--', 'touch /root/should-not-exist']);
    expect(withAcceptNew.code).to.equal(4);
    // Look into the host's root filesystem from the machine: nothing ran there.
    expect(existsSync(join(hostPaths(lab.dir, 'node3').root, 'root/should-not-exist'))).to.equal(false);
  });

  it('refuses an unknown host key unless --accept-new-host-keys, which records it', async () => {
    const empty = `/tmp/capstan-known-${process.pid}`;
    writeFileSync(empty, '');
    const inv = `/tmp/capstan-inv-${process.pid}.yaml`;
    writeFileSync(inv, `all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: ${lab.keyPath}\n    capstan_known_hosts_file: ${empty}\n  hosts:\n    node1:\n      ansible_host: ${lab.hosts[0]!.address}\n`);
    const refused = await capstan(['exec', '-i', inv, 'all', '--', 'true']);
    expect(refused.code).to.equal(4);
    expect(refused.stdout).to.match(/is not in known_hosts .*--accept-new-host-keys/s);
    const accepted = await capstan(['exec', '-i', inv, 'all', '--accept-new-host-keys', '--', 'true']);
    expect(accepted.code).to.equal(0);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(empty, 'utf8')).to.match(new RegExp(`^${lab.hosts[0]!.address.replace(/\./g, '\\.')} ssh-ed25519 `));
    expect((await capstan(['exec', '-i', inv, 'all', '--', 'true'])).code).to.equal(0);
  });
});
