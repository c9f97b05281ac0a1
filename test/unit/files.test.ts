import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { editBlock, editLine, ensureBlock, ensureDirectory, ensureLine, command } from '../../tasks/index.js';
import { ATOMIC_WRITE, tempPathBeside } from '../../runner/host.js';
import { checkContext } from '../../runner/engine.js';
import { CommandError } from '../../runner/errors.js';
import { Secret } from '../../runner/secret.js';
import { defineTask } from '../../runner/task.js';
import { parseStat } from '../../runner/stat.js';
import { sh } from '../../runner/quote.js';
import { serialBatches } from '../../runner/playbook.js';
import { parseFacts } from '../../runner/facts.js';
import { localHost, run } from '../helpers/local.js';

describe('editLine (pure)', () => {
  it('appends a missing line, adding the final newline', () => {
    expect(editLine('a\nb', { line: 'c' })).to.equal('a\nb\nc\n');
    expect(editLine('', { line: 'c' })).to.equal('c\n');
  });
  it('leaves text with the line alone, byte for byte', () => {
    expect(editLine('a\nc\nb', { line: 'c' })).to.equal('a\nc\nb');
  });
  it('replaces the last line matching regexp', () => {
    expect(editLine('x=1\ny=2\nx=3\n', { line: 'x=9', regexp: '^x=' })).to.equal('x=1\ny=2\nx=9\n');
  });
  it('inserts after the last line matching insertAfter', () => {
    expect(editLine('[a]\nk=1\n[b]\nk=2\n', { line: 'new=1', regexp: '^new=', insertAfter: '^\\[a\\]' })).to.equal('[a]\nnew=1\nk=1\n[b]\nk=2\n');
  });
  it('removes every matching line with state absent', () => {
    expect(editLine('/swap none swap sw 0 0\nUUID=1 / ext4\n/swap2 none swap\n', { line: '', regexp: '\\sswap(\\s|$)', state: 'absent' })).to.equal('UUID=1 / ext4\n');
  });
});

describe('editBlock (pure)', () => {
  it('appends a marked block, then replaces it in place', () => {
    const once = editBlock('127.0.0.1 localhost\n', { block: '10.0.0.1 a', marker: '# {mark} k8s' });
    expect(once).to.equal('127.0.0.1 localhost\n# BEGIN k8s\n10.0.0.1 a\n# END k8s\n');
    const twice = editBlock(`${once}tail\n`, { block: '10.0.0.2 b\n10.0.0.3 c\n', marker: '# {mark} k8s' });
    expect(twice).to.equal('127.0.0.1 localhost\n# BEGIN k8s\n10.0.0.2 b\n10.0.0.3 c\n# END k8s\ntail\n');
    expect(editBlock(twice, { block: '', marker: '# {mark} k8s', state: 'absent' })).to.equal('127.0.0.1 localhost\ntail\n');
  });
});

describe('file tasks on a local host', () => {
  let local: ReturnType<typeof localHost>;
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  it('ensureLine keeps the file mode and converges', async () => {
    const path = join(local.dir, 'fstab');
    writeFileSync(path, 'UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n');
    chmodSync(path, 0o600);
    const task = ensureLine({ path, regexp: '^/swapfile\\s', line: '# /swapfile none swap sw 0 0' });
    expect((await run(local, task)).status).to.equal('changed');
    expect(readFileSync(path, 'utf8')).to.equal('UUID=1 / ext4 defaults 0 1\n# /swapfile none swap sw 0 0\n');
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('ensureBlock creates the file when missing and converges', async () => {
    const path = join(local.dir, 'hosts');
    const task = ensureBlock({ path, block: '10.0.0.1 cp1', marker: '# {mark} nodes' });
    expect((await run(local, task)).status).to.equal('changed');
    expect(readFileSync(path, 'utf8')).to.equal('# BEGIN nodes\n10.0.0.1 cp1\n# END nodes\n');
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('ensureDirectory makes parents and sets the mode', async () => {
    const path = join(local.dir, 'a/b/c');
    const task = ensureDirectory({ path, mode: '0700' });
    expect((await run(local, task)).drift.map((d) => `${d.subject}:${d.desired}`)).to.deep.equal(['exists:directory', 'mode:0700']);
    expect(statSync(path).mode & 0o777).to.equal(0o700);
    expect((await run(local, task)).status).to.equal('ok');
  });

  it('command with creates: runs once, is honest in check mode, and verifies the guard', async () => {
    const marker = join(local.dir, 'done');
    const task = command({ run: ['touch', marker], creates: marker });
    const check = await run(local, task, true);
    expect(check.status).to.equal('changed');
    expect(check.drift).to.deep.equal([{ subject: 'run', desired: `touch ${marker}` }]);
    expect((await run(local, task)).status).to.equal('changed');
    expect((await run(local, task)).status).to.equal('ok');
    const liar = command({ run: ['true'], creates: join(local.dir, 'never') });
    expect((await run(local, liar)).message).to.match(/^did not converge: run/);
  });

  it('command without a guard always runs and reports changed', async () => {
    const task = command({ run: ['true'] });
    expect((await run(local, task)).status).to.equal('changed');
    expect((await run(local, task)).status).to.equal('changed');
  });
});

describe('atomic write', () => {
  let local: ReturnType<typeof localHost>;
  beforeEach(() => (local = localHost()));
  afterEach(() => local.cleanup());

  const write = (path: string, declaredSize: number, sum: string, stdin: string) =>
    local.host.transport.exec(sh`sh -c ${ATOMIC_WRITE} capstan-write ${path} ${''} ${''} ${''} ${declaredSize} ${sum} 0 ${tempPathBeside(path)} ${''}`, { stdin });

  it('leaves the target untouched and no temp file when the transfer is short (connection dropped)', async () => {
    const path = join(local.dir, 'target');
    writeFileSync(path, 'old content\n');
    const result = await write(path, 100, 'f'.repeat(64), 'new con');
    expect(result.code).to.equal(90);
    expect(result.stderr.toString()).to.match(/short write \(7 of 100 bytes\)/);
    expect(readFileSync(path, 'utf8')).to.equal('old content\n');
    expect(readdirSync(local.dir)).to.deep.equal(['target']);
  });

  it('refuses content whose checksum does not match', async () => {
    const path = join(local.dir, 'target');
    writeFileSync(path, 'old\n');
    const result = await write(path, 4, '0'.repeat(64), 'new\n');
    expect(result.code).to.equal(91);
    expect(readFileSync(path, 'utf8')).to.equal('old\n');
  });

  it('keeps the mode of the file it replaces and can keep a backup', async () => {
    const path = join(local.dir, 'keep');
    writeFileSync(path, 'v1\n');
    chmodSync(path, 0o640);
    await local.host.writeFile(path, 'v2\n', { backup: true });
    expect(readFileSync(path, 'utf8')).to.equal('v2\n');
    expect(statSync(path).mode & 0o777).to.equal(0o640);
    const backups = readdirSync(local.dir).filter((f) => f.endsWith('.capstan-backup'));
    expect(backups).to.have.length(1);
    expect(readFileSync(join(local.dir, backups[0]!), 'utf8')).to.equal('v1\n');
  });

  it('writes binary content exactly', async () => {
    const path = join(local.dir, 'bin');
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await local.host.writeFile(path, bytes);
    expect(readFileSync(path).equals(bytes)).to.equal(true);
    expect((await local.host.readFile(path))!.equals(bytes)).to.equal(true);
    expect(await local.host.readFile(join(local.dir, 'missing'))).to.equal(null);
  });
});

describe('atomic write with validate', () => {
  let local: ReturnType<typeof localHost>;
  /** Where validators leave notes: outside local.dir, whose listing the tests compare. */
  let notes: string;
  beforeEach(() => {
    local = localHost();
    notes = mkdtempSync(join(tmpdir(), 'capstan-validate-notes-'));
  });
  afterEach(() => {
    local.cleanup();
    rmSync(notes, { recursive: true, force: true });
  });

  it('runs the command on the complete temp file beside the target, with its final mode, then replaces the file', async () => {
    const path = join(local.dir, 'haproxy.cfg');
    writeFileSync(path, 'old\n', { mode: 0o644 });
    const seen = join(notes, 'seen');
    await local.host.writeFile(path, 'new content\n', {
      mode: '0640',
      validate: (temp) => sh`{ printf '%s\n' ${temp}; stat -c %a -- ${temp}; cat -- ${temp}; } > ${seen}`,
    });
    const [temp, mode, content] = readFileSync(seen, 'utf8').split('\n');
    expect(temp).to.match(new RegExp(`^${local.dir}/\\.capstan\\.[0-9a-f]{16}$`));
    expect([mode, content]).to.deep.equal(['640', 'new content']);
    expect(readFileSync(path, 'utf8')).to.equal('new content\n');
    expect(statSync(path).mode & 0o777).to.equal(0o640);
    expect(readdirSync(local.dir)).to.deep.equal(['haproxy.cfg']);
  });

  it('a refused content leaves the old file byte for byte, no temp file and no backup, and says why', async () => {
    const path = join(local.dir, 'target');
    const old = Buffer.from([0xff, 0x00, 0x0a, 0xfe, 0x41]);
    writeFileSync(path, old, { mode: 0o600 });
    let validatorDisplay = '';
    const error = await local.host
      .writeFile(path, 'new\n', {
        mode: '0644',
        backup: true,
        validate: (temp) => {
          const command = sh`echo ignored; printf '  line one\nline two\n\n' >&2; test -s ${temp} && exit 3`;
          validatorDisplay = command.display;
          return command;
        },
      })
      .then(() => null, (caught: unknown) => caught);
    expect(error).to.be.instanceOf(CommandError);
    expect((error as CommandError).message).to.equal(`${path} not replaced: the new content failed validation (exit 3)\nline one\nline two`);
    expect((error as CommandError).exitCode).to.equal(3);
    expect((error as CommandError).stderr).to.equal('line one\nline two');
    expect((error as CommandError).command).to.equal(validatorDisplay);
    expect((error as CommandError).host).to.equal('local');
    expect(readFileSync(path).equals(old)).to.equal(true);
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    expect(readdirSync(local.dir)).to.deep.equal(['target']);
  });

  it('shows the command\'s stdout when its stderr is empty, and a new file that is refused is never created', async () => {
    const path = join(local.dir, 'new.conf');
    const error = await local.host.writeFile(path, 'x\n', { validate: () => sh`echo '  bad line 1  '; exit 1` }).then(() => null, (caught: unknown) => caught);
    expect((error as CommandError).message).to.equal(`${path} not replaced: the new content failed validation (exit 1)\nbad line 1`);
    expect(readdirSync(local.dir)).to.deep.equal([]);
  });

  it('never shows secret content, even when the command prints the whole file', async () => {
    const path = join(local.dir, 'keepalived.conf');
    writeFileSync(path, 'old\n');
    const content = new Secret('auth_pass ZqSj#f1G\n');
    const error = await local.host.writeFile(path, content, { mode: '0640', validate: (temp) => sh`cat -- ${temp} >&2; exit 1` }).then(() => null, (caught: unknown) => caught);
    expect((error as CommandError).message).to.equal(`${path} not replaced: the new content failed validation (exit 1)\n***`);
    expect((error as CommandError).stderr).not.to.include('ZqSj#f1G');
    expect(readFileSync(path, 'utf8')).to.equal('old\n');
  });

  it('never runs in check mode: the check context has no write, and the change is only reported', async () => {
    const path = join(local.dir, 'app.conf');
    writeFileSync(path, 'old\n');
    const ran = join(notes, 'validated');
    const task = defineTask<{ content: string }>(
      {
        kind: 'validated-file',
        id: () => `file:${path}`,
        title: () => `validated ${path}`,
        async check(ctx, p) {
          const current = await ctx.readText(path);
          return current === p.content ? [] : [{ subject: 'content', file: path, current, desired: p.content }];
        },
        async apply(ctx, p) {
          await ctx.writeFile(path, p.content, { validate: (temp) => sh`touch ${ran}; test -s ${temp}` });
        },
      },
      { content: 'new\n' },
    );
    expect(Object.keys(checkContext(local.host, local.view, true, { pendingChanges: [] }))).not.to.include('writeFile');
    const checked = await run(local, task, true);
    expect(checked.status).to.equal('changed');
    expect(existsSync(ran)).to.equal(false);
    expect(readFileSync(path, 'utf8')).to.equal('old\n');
    expect(readdirSync(local.dir)).to.deep.equal(['app.conf']);
    expect((await run(local, task)).status).to.equal('changed');
    expect(existsSync(ran)).to.equal(true);
    expect(readFileSync(path, 'utf8')).to.equal('new\n');
    expect((await run(local, task)).status).to.equal('ok');
  });
});

describe('small parsers', () => {
  it('parseStat', () => {
    expect(parseStat('regular file|644|root|adm|12\n')).to.deep.equal({ type: 'file', mode: '0644', owner: 'root', group: 'adm', size: 12 });
    expect(parseStat('directory|1777|root|root|4096').type).to.equal('directory');
  });
  it('parseFacts', () => {
    const facts = parseFacts('hostname=pi1\nkernel=6.6.31+rpt-rpi-v8\nmachine=aarch64\narch=arm64\nosId=debian\nosVersionId=12\ncodename=bookworm\ncpus=4\nmemKiB=8000000\n');
    expect(facts).to.deep.equal({ hostname: 'pi1', kernel: '6.6.31+rpt-rpi-v8', machine: 'aarch64', arch: 'arm64', osId: 'debian', osVersionId: '12', codename: 'bookworm', cpus: 4, memoryMiB: 7812 });
  });
  it('serialBatches follows Ansible (last size repeats, percentages of the play)', () => {
    const hosts = [1, 2, 3, 4, 5, 6, 7];
    expect(serialBatches(hosts, 1)).to.deep.equal([[1], [2], [3], [4], [5], [6], [7]]);
    expect(serialBatches(hosts, [1, '50%'])).to.deep.equal([[1], [2, 3, 4], [5, 6, 7]]);
    expect(serialBatches(hosts, undefined)).to.deep.equal([hosts]);
    expect(() => serialBatches(hosts, 'lots')).to.throw(/serial must be/);
  });
});
