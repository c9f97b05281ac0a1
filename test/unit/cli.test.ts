import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { capstan } from '../helpers/cli.js';

const INV = 'test/fixtures/inventory/bad/unreachable.yaml';

/** A TCP listener on loopback that counts (and drops) connections: proof that no host was contacted. */
async function countingListener(): Promise<{ port: number; connections: () => number; close: () => void }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, connections: () => connections, close: () => server.close() };
}

describe('CLI: bad input exits 1 with one clear message and contacts no host', () => {
  // Every host in INV is 127.0.0.1:1, which refuses connections: a run that tried to connect would exit 4, not 1.
  const cases: [string, string[], RegExp][] = [
    ['a playbook that throws while planning', ['run', 'test/fixtures/playbooks/bad/throws.ts', '-i', INV], /playbook "throws" threw while planning \(before any host was contacted\): the playbook author made a mistake/],
    ['two tasks that want different states for one id', ['run', 'test/fixtures/playbooks/bad/conflict.ts', '-i', INV], /play "first" task 1 and play "second" task 1 both manage file:\/etc\/motd on web1 but want different states/],
    ['an invalid parameter in a later play', ['run', 'test/fixtures/playbooks/bad/invalid-param.ts', '-i', INV], /file etc\/relative: invalid parameters for file task: path must be an absolute path, got "etc\/relative"/],
    ['an unknown group in a pattern', ['run', 'test/fixtures/playbooks/bad/unknown-group.ts', '-i', INV], /contorl_plane/],
    ['a module without a default playbook', ['run', 'test/fixtures/playbooks/bad/no-default.ts', '-i', INV], /must `export default playbook\('name', async \(\{ play \}\) => …\)`/],
    ['a playbook with a syntax error', ['run', 'test/fixtures/playbooks/bad/syntax.ts', '-i', INV], /playbook test\/fixtures\/playbooks\/bad\/syntax\.ts does not type-check \(no host was contacted\):\n  test\/fixtures\/playbooks\/bad\/syntax\.ts:4:1: Expression or comma expected\. \(TS1137\)\n$/],
    ['a playbook with a type error', ['run', 'test/fixtures/playbooks/bad/type-error.ts', '-i', INV], /^capstan: playbook test\/fixtures\/playbooks\/bad\/type-error\.ts does not type-check \(no host was contacted\):\n  test\/fixtures\/playbooks\/bad\/type-error\.ts:7:77: Type 'number' is not assignable to type 'PerHost<string \| Secret \| undefined>'\. \(TS2322\)\n  test\/fixtures\/playbooks\/bad\/type-error\.ts:8:74: Object literal may only specify known properties, but 'contnet' does not exist .*Did you mean to write 'content'\? \(TS2561\)\n$/],
    ['a missing playbook', ['run', 'test/fixtures/playbooks/nope.ts', '-i', INV], /playbook .*nope\.ts does not exist/],
    ['malformed inventory YAML', ['run', 'test/fixtures/playbooks/files.ts', '-i', 'test/fixtures/inventory/bad/broken.yaml'], /broken\.yaml:\d+:\d+/],
    ['a missing inventory', ['run', 'test/fixtures/playbooks/files.ts', '-i', '/nonexistent/inv.yaml'], /\/nonexistent\/inv\.yaml/],
    ['no inventory at all', ['run', 'test/fixtures/playbooks/files.ts'], /-i\/--inventory is required/],
    ['an unknown option', ['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--chek'], /Unknown option '--chek'/],
    ['an unknown host in --limit', ['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--limit', 'web9'], /web9/],
    ['a bad --forks', ['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--forks', '0'], /--forks must be a positive integer, not 0/],
    ['an unknown command', ['deploy'], /unknown command "deploy"/],
    ['exec without a command', ['exec', '-i', INV, 'all'], /exec needs a command after --/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async function () {
      this.timeout(30_000);
      const result = await capstan(args);
      expect(result.code, result.stderr + result.stdout).to.equal(1);
      expect(result.stderr).to.match(/^capstan: /);
      expect(result.stderr).to.match(message);
      expect(result.stdout).to.equal('');
    });
  }
});

describe('CLI: bad inventories and connection settings, named by file:line or host, before any connection', () => {
  // Every host is 127.0.0.1:1, which refuses connections: a run that had tried to connect would say UNREACHABLE (exit 4).
  let dir: string;
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const run = (inventory: string, extra: string[] = []) => capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, ...extra], { env: { CAPSTAN_RETRY_DIR: join(dir, 'retry') } });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capstan-cli-input-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const exitsOne: [string, string, string, (path: string) => RegExp][] = [
    ['a malformed INI section header', 'bad-header.ini', '[web\nweb1 ansible_host=127.0.0.1 ansible_port=1\n', (p) => new RegExp(`^capstan: ${p}:1:1: host range in '\\[web' has a "\\[" without a closing "\\]"\n$`)],
    ['an INI host defined twice with conflicting vars', 'dup.ini', '[web]\nweb1 ansible_host=127.0.0.1 ansible_port=1\nweb1 ansible_host=127.0.0.2 ansible_port=1\n', (p) => new RegExp(`^capstan: ${p}:3:6: host 'web1' sets 'ansible_host' to conflicting values at ${p}:2:6 and ${p}:3:6\n$`)],
    ['an INI host in two groups with conflicting vars', 'dup-groups.ini', '[a]\nweb1 ansible_host=127.0.0.1 ansible_port=1\n[b]\nweb1 ansible_host=127.0.0.1 ansible_port=2\n', (p) => new RegExp(`^capstan: ${p}:4:29: host 'web1' sets 'ansible_port' to conflicting values at ${p}:2:29 and ${p}:4:29\n$`)],
    ['a YAML host defined twice with conflicting vars', 'dup.yaml', 'all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n  children:\n    g:\n      hosts:\n        web1:\n          ansible_port: 2\n', (p) => new RegExp(`^capstan: ${p}:10:11: host 'web1' sets 'ansible_port' to conflicting values at ${p}:5:7 and ${p}:10:11\n$`)],
  ];
  for (const [what, name, text, message] of exitsOne) {
    it(`${what}: exit 1`, async function () {
      this.timeout(30_000);
      const path = write(name, text);
      const result = await run(path);
      expect(result.code, result.stderr + result.stdout).to.equal(1);
      expect(result.stderr).to.match(message(path.replace(/[/.]/g, '\\$&')));
      expect(result.stdout).to.equal('');
    });
  }

  it('--limit @file that is missing or lists no hosts, --timeout 0, a bad --lock-timeout, bad -e JSON: exit 1', async function () {
    this.timeout(60_000);
    const inventory = 'test/fixtures/inventory/bad/unreachable.yaml';
    const empty = write('empty.retry', '\n\n');
    const cases: [string[], RegExp][] = [
      [['--limit', `@${join(dir, 'nope.retry')}`], /--limit @\S+nope\.retry: cannot read \S+nope\.retry: ENOENT/],
      [['--limit', `@${empty}`], /--limit @\S+empty\.retry: \S+empty\.retry lists no hosts/],
      [['--timeout', '0'], /--timeout must be a positive number of seconds, not 0/],
      [['--timeout', 'soon'], /--timeout must be a positive number of seconds, not soon/],
      [['--lock-timeout=-1'], /--lock-timeout must be a number of seconds \(0 or more\), not -1/],
      [['--lock-timeout', 'soon'], /--lock-timeout must be a number of seconds \(0 or more\), not soon/],
      [['-e', '{bad'], /-e \{bad: not valid JSON/],
    ];
    for (const [extra, message] of cases) {
      const result = await run(inventory, extra);
      expect(result.code, extra.join(' ')).to.equal(1);
      expect(result.stderr).to.match(message);
      expect(result.stdout).to.equal('');
    }
  });

  // A missing key file and an unreadable known_hosts are found before any host is contacted (checkConnectionInputs):
  // exit 1, one message naming host and file, nothing printed on stdout (an attempt would be UNREACHABLE, exit 4).
  it('a missing identity file: exit 1 before any host is contacted, naming host and file', async function () {
    this.timeout(30_000);
    const path = write('key.ini', `[web]\nweb1 ansible_host=127.0.0.1 ansible_port=1 ansible_ssh_private_key_file=${join(dir, 'missing_id_ed25519')}\n`);
    const result = await run(path);
    expect(result.code, result.stdout + result.stderr).to.equal(1);
    expect(result.stderr).to.equal(`capstan: host web1: identity file ${join(dir, 'missing_id_ed25519')} does not exist (ansible_ssh_private_key_file)\n`);
    expect(result.stdout).to.equal('');
  });

  it('-e connection vars win over the inventory, as Ansible extra vars do: the identity file and port of -e are the ones used', async function () {
    this.timeout(30_000);
    const path = write('plain.ini', '[web]\nweb1 ansible_host=127.0.0.1 ansible_port=1\n');
    const missing = await run(path, ['-e', `ansible_ssh_private_key_file=${join(dir, 'missing_-e_key')}`]);
    expect(missing.code, missing.stdout + missing.stderr).to.equal(1);
    expect(missing.stderr).to.equal(`capstan: host web1: identity file ${join(dir, 'missing_-e_key')} does not exist (ansible_ssh_private_key_file)\n`);
    const port = await run(path, ['-e', 'ansible_port=9', '-e', 'ansible_user=nobody', '--json']);
    expect(port.code).to.equal(4);
    expect(port.stdout).to.include('"message":"host web1 (127.0.0.1:9): '); // no credentials or refused: either way, port 9
  });

  it('an unreadable known_hosts: exit 1 before any host is contacted, naming host and file', async function () {
    this.timeout(30_000);
    const key = write('id_ed25519', ssh2.utils.generateKeyPairSync('ed25519').private);
    const knownHosts = join(dir, 'known_hosts_dir');
    mkdirSync(knownHosts, { recursive: true }); // a directory: EISDIR, even for root
    const path = write('kh.ini', `[web]\nweb1 ansible_host=127.0.0.1 ansible_port=1 ansible_ssh_private_key_file=${key} capstan_known_hosts_file=${knownHosts}\n`);
    const result = await run(path);
    expect(result.code, result.stdout + result.stderr).to.equal(1);
    expect(result.stderr).to.equal(`capstan: host web1: cannot read known_hosts file ${knownHosts}: EISDIR\n`);
    expect(result.stdout).to.equal('');
  });
});

describe('CLI: help and inventory', () => {
  it('--help on each command exits 0', async function () {
    this.timeout(30_000);
    for (const args of [['--help'], ['run', '--help'], ['exec', '--help'], ['inventory', '--help'], ['lab', '--help']]) {
      const result = await capstan(args);
      expect(result.code, args.join(' ')).to.equal(0);
      expect(result.stdout).to.match(/capstan /);
    }
  });

  it('inventory --list prints ansible-inventory --list JSON for INI and YAML alike', async function () {
    this.timeout(30_000);
    const ini = await capstan(['inventory', '-i', 'test/fixtures/inventory/kubespray/inventory.ini', '--list']);
    const yaml = await capstan(['inventory', '-i', 'test/fixtures/inventory/kubespray/inventory.yaml', '--list']);
    expect(ini.code).to.equal(0);
    expect(ini.stdout).to.equal(yaml.stdout);
    const list = JSON.parse(ini.stdout) as Record<string, { hosts?: string[]; children?: string[] }> & { _meta: { hostvars: Record<string, unknown> } };
    // node4/5 keep their own ansible_user over all:vars; the empty calico_rr is a child but has no entry of its own.
    expect(list.k8s_cluster!.children).to.deep.equal(['kube_control_plane', 'kube_node', 'calico_rr']);
    expect(list.calico_rr).to.equal(undefined);
    expect(list.kube_node!.hosts).to.deep.equal(['node4', 'node5']);
    expect(list.ungrouped!.hosts).to.deep.equal(['bastion']);
    expect(Object.keys(list._meta.hostvars)).to.have.members(['node1', 'node2', 'node3', 'node4', 'node5', 'bastion']);
    expect((list._meta.hostvars.node4 as Record<string, unknown>).ansible_user).to.equal('worker');
    expect((list._meta.hostvars.bastion as Record<string, unknown>).ansible_port).to.equal(2222);
  });

  it('inventory --list and --host show credentials as *** unless --show-secrets', async function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'capstan-inventory-secrets-'));
    try {
      const path = join(dir, 'inv.yaml');
      writeFileSync(path, 'all:\n  vars:\n    ansible_become_password: s3cret-become\n    vip_auth_pass: Vrrp1234\n    cni: flannel\n  hosts:\n    cp1:\n      ansible_host: 10.0.0.1\n');
      for (const view of [['--list'], ['--host', 'cp1']]) {
        const redacted = await capstan(['inventory', '-i', path, ...view]);
        expect(redacted.code, redacted.stderr).to.equal(0);
        expect(redacted.stdout).to.include('"ansible_become_password": "***"').and.include('"vip_auth_pass": "***"').and.include('"cni": "flannel"');
        expect(redacted.stdout).not.to.include('s3cret-become').and.not.include('Vrrp1234');
        const shown = await capstan(['inventory', '-i', path, ...view, '--show-secrets']);
        expect(shown.stdout).to.include('"ansible_become_password": "s3cret-become"').and.include('"vip_auth_pass": "Vrrp1234"');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('inventory --graph draws the group tree', async function () {
    this.timeout(30_000);
    const result = await capstan(['inventory', '-i', INV, '--graph']);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal('@all:\n  |--@ungrouped:\n  |--@web:\n  |  |--web1\n');
  });

  it('the README documents both set-up commands', () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).to.include('npm ci');
    expect(readme).to.include('npm test');
  });
});

/** `--list-hosts --list-tasks` of test/fixtures/playbooks/local.ts: per-host titles (from vars, not facts) name their hosts. */
const LOCAL_PLAN = `playbook: local

  play #1 (all): local files
    hosts (2):
      web1
      web2
    tasks (2):
      file /srv/x/web1.txt  [web1]
      file /srv/x/web2.txt  [web2]
      line "shared = yes" in /srv/x/shared.conf
`;

describe('CLI: run log, timing and listing the plan', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'capstan-cli-runlog-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const env = () => ({ CAPSTAN_RETRY_DIR: join(dir, 'retry') });
  /** The event types of a JSON-lines text, durations checked to be whole milliseconds. */
  const typesOf = (text: string) =>
    text.trim().split('\n').map((line) => {
      const event = JSON.parse(line) as { type: string; durationMs?: unknown };
      if ('durationMs' in event) expect(Number.isInteger(event.durationMs), line).to.equal(true);
      return event.type;
    });

  it('an unreachable host: exit 4, plain output ends with "finished in", the log holds start, unreachable and recap, its path is printed', async function () {
    this.timeout(30_000);
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', INV], { env: env() });
    expect(result.code, result.stderr).to.equal(4);
    const message = 'host web1 (127.0.0.1:1): no usable credentials for user root (no ssh-agent, no readable key file)';
    expect(result.stdout.replace(/finished in \d+\.\d s\n$/, 'finished in N s\n')).to.equal(
      `PLAYBOOK files\n\nPLAY [files] all → web1\nweb1 | UNREACHABLE | ${message}\n\nRECAP\nHOST  ok  changed  failed  skipped  unreachable\nweb1   0        0       0        0  UNREACHABLE\nfinished in N s\n`,
    );
    const [path, ...others] = Object.keys(result.runLogs);
    expect(others).to.deep.equal([]);
    expect(path).to.match(/\/\d{8}T\d{6}\.\d{3}Z-files\.jsonl$/);
    expect(result.stderr).to.include(`run log: ${path}\n`);
    const log = result.runLogs[path!]!;
    expect(typesOf(log)).to.deep.equal(['start', 'play', 'unreachable', 'host-done', 'play-end', 'recap']);
    const events = log.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events[0]).to.deep.equal({ type: 'start', playbook: 'files', check: false, hosts: 1 });
    expect(events[2]).to.deep.equal({ type: 'unreachable', host: 'web1', message });
    expect(events[5]!.hosts).to.deep.equal({ web1: { ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: true } });
  });

  it('--json: stdout is JSON only and the same events as the log, timing in the last event; human lines on stderr', async function () {
    this.timeout(30_000);
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--json', '--profile'], { env: env() });
    expect(result.code, result.stderr).to.equal(4);
    expect(typesOf(result.stdout)).to.deep.equal(['start', 'play', 'unreachable', 'host-done', 'play-end', 'recap']);
    const recap = JSON.parse(result.stdout.trim().split('\n').pop()!) as { durationMs: number; profile: { slowest: unknown[]; plays: { title: string; hosts: { host: string }[] }[] } };
    expect(recap.profile.slowest).to.deep.equal([]);
    expect(recap.profile.plays.map((p) => [p.title, p.hosts.map((h) => h.host)])).to.deep.equal([['files', ['web1']]]);
    expect(Object.values(result.runLogs)).to.deep.equal([result.stdout]);
    const path = Object.keys(result.runLogs)[0]!;
    expect(result.stderr).to.match(new RegExp(`^finished in ${(recap.durationMs / 1000).toFixed(1).replace('.', '\\.')} s\nrun log: ${path.replace(/[.]/g, '\\.')}\nfailed hosts written to `));
  });

  it('--list-hosts and --list-tasks print the plan and contact no host, unreachable or listening', async function () {
    this.timeout(30_000);
    const listener = await countingListener();
    try {
      const port = listener.port;
      const inventory = join(dir, 'list.yaml');
      writeFileSync(
        inventory,
        `all:\n  hosts:\n    web1:\n      ansible_host: 10.255.255.1\n    web2:\n      ansible_host: 127.0.0.1\n      ansible_port: ${port}\n  children:\n    web:\n      hosts:\n        web1:\n        web2:\n`,
      );
      const hosts = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '--list-hosts'], { env: env() });
      expect([hosts.code, hosts.stderr]).to.deep.equal([0, '']);
      expect(hosts.stdout).to.equal('playbook: files\n\n  play #1 (all): files\n    hosts (2):\n      web1\n      web2\n');
      const tasks = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '--list-tasks', '--limit', 'web2'], { env: env() });
      expect([tasks.code, tasks.stderr]).to.deep.equal([0, '']);
      expect(tasks.stdout).to.equal(
        [
          'playbook: files',
          '',
          '  play #1 (all): files',
          '    tasks (5):',
          '      directory /etc/capstan-demo',
          "      file (parameters from each host's facts: named when the run reaches the host)",
          '      line "^log_level\\\\s*=" in /etc/capstan-demo/settings.conf',
          '      block "# capstan demo" in /etc/hosts',
          '      record the first run',
          '',
        ].join('\n'),
      );
      const both = await capstan(['run', 'test/fixtures/playbooks/local.ts', '-i', inventory, '--list-hosts', '--list-tasks', '-e', 'dir=/srv/x'], { env: env() });
      expect([both.code, both.stderr]).to.deep.equal([0, '']);
      expect(both.stdout).to.equal(LOCAL_PLAN);
      expect([hosts, tasks, both].map((r) => r.runLogs)).to.deep.equal([{}, {}, {}]); // a listing is not a run
      expect(listener.connections()).to.equal(0);
    } finally {
      listener.close();
    }
  });

  it('--confirm without a terminal: exit 2 with a clear message, no host contacted, no run log', async function () {
    this.timeout(30_000);
    const listener = await countingListener();
    try {
      const port = listener.port;
      const inventory = join(dir, 'confirm.yaml');
      writeFileSync(inventory, `all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: ${port}\n`);
      // stdin is a pipe here (capstan() never gives a terminal), even with an answer waiting on it.
      const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', inventory, '--confirm'], { env: env(), input: 'y\n' });
      expect(result.code).to.equal(2);
      expect(result.stderr).to.equal(
        'capstan: --confirm asks "apply these changes? [y/N]" on a terminal, and stdin or stderr is not one: nothing was contacted or changed. Without a terminal, run --check, then the run itself.\n',
      );
      expect(result.stdout).to.equal('');
      expect(result.runLogs).to.deep.equal({});
      expect(listener.connections()).to.equal(0);
    } finally {
      listener.close();
    }
  });

  it('--confirm with --check or --json is refused (exit 1): one asks and applies, the others never ask', async function () {
    this.timeout(30_000);
    const check = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--confirm', '--check'], { env: env() });
    expect([check.code, check.stdout]).to.deep.equal([1, '']);
    expect(check.stderr).to.match(/^capstan: --confirm applies after asking, --check never applies: use one of them\n/);
    const json = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--confirm', '--json'], { env: env() });
    expect([json.code, json.stdout]).to.deep.equal([1, '']);
    expect(json.stderr).to.match(/^capstan: --confirm asks a person at a terminal, --json is for programs: drop one of them\n/);
  });

  it('--list-hosts with --json is refused (exit 1): the listing is text', async function () {
    this.timeout(30_000);
    const result = await capstan(['run', 'test/fixtures/playbooks/files.ts', '-i', INV, '--list-hosts', '--json'], { env: env() });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/^capstan: --list-hosts and --list-tasks print text: drop --json\n/);
    expect(result.stdout).to.equal('');
  });
});
