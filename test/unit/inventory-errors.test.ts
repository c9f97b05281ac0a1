import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../runner/errors.js';
import { loadInventory, parseInventory } from '../../runner/inventory/index.js';

/** Runs `action`, expecting an InputError at `location` whose message contains `text`. */
function expectInputError(action: () => unknown, location: string, text: string): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).to.be.instanceOf(InputError);
  const error = caught as InputError;
  expect(error.location).to.equal(location);
  expect(error.message).to.equal(`${location}: ${text}`);
}

async function expectAsyncInputError(action: () => Promise<unknown>, location: string | undefined, text: string): Promise<void> {
  const error = await action().then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).to.be.instanceOf(InputError);
  expect((error as InputError).location).to.equal(location);
  expect((error as InputError).message).to.contain(text);
}

const lines = (...text: string[]): string => `${text.join('\n')}\n`;

describe('inventory errors: YAML', () => {
  const parse = (text: string) => () => parseInventory(text, 'inventory.yaml');

  it('reports a syntax error at its position', () => {
    expectInputError(
      parse(lines('all:', '  hosts:', '    web1: {a: 1')),
      'inventory.yaml:4:1',
      'YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }',
    );
  });

  it('reports a repeated key', () => {
    expectInputError(parse(lines('all:', '  hosts:', '    web1:', '    web1:')), 'inventory.yaml:4:5', "YAML syntax error: key 'web1' is repeated in this mapping");
    expectInputError(parse(lines('all:', '  hosts: {web1: , web1: }')), 'inventory.yaml:2:19', "YAML syntax error: key 'web1' is repeated in this mapping");
  });

  it('refuses hosts written as a list', () => {
    expectInputError(
      parse(lines('all:', '  children:', '    web:', '      hosts:', '        - web1')),
      'inventory.yaml:4:7',
      "'hosts' of group 'web' must be a mapping (name: ...), not a list",
    );
  });

  it('refuses an unknown key at group level', () => {
    expectInputError(
      parse(lines('all:', '  children:', '    web:', '      host:', '        web1:')),
      'inventory.yaml:4:7',
      "unknown key 'host' in group 'web' (expected one of: hosts, vars, children)",
    );
  });

  it('refuses a host name that is not a string', () => {
    expectInputError(parse(lines('all:', '  hosts:', '    123:')), 'inventory.yaml:3:5', 'host name must be a non-empty string, got number 123');
    expectInputError(parse(lines('all:', '  hosts:', '    yes:')), 'inventory.yaml:3:5', 'host name must be a non-empty string, got boolean true');
  });

  it('refuses a host whose value is not a mapping of vars', () => {
    expectInputError(parse(lines('all:', '  hosts:', '    web1: 3')), 'inventory.yaml:3:5', "host 'web1' must be a mapping of variables, not number 3");
  });

  it('refuses vars that are not a mapping', () => {
    expectInputError(parse(lines('all:', '  vars: [1]')), 'inventory.yaml:2:3', "'vars' of group 'all' must be a mapping of variables, not a list");
  });

  it('refuses a group that is not a mapping', () => {
    expectInputError(parse(lines('all:', '  children:', '    web: [web1]')), 'inventory.yaml:3:5', "group 'web' must be a mapping of hosts, vars and children");
  });

  it('refuses a document that is not a mapping, and plugin configurations', () => {
    expectInputError(parse(lines('- all')), 'inventory.yaml:1:1', 'a YAML inventory must be a mapping of group names to groups');
    expectInputError(
      parse(lines('plugin: aws_ec2', 'regions: [eu-west-1]')),
      'inventory.yaml:1:1',
      'inventory plugin configuration files are not supported, only static inventories',
    );
  });

  it('names both places of a host defined with conflicting vars', () => {
    expectInputError(
      parse(
        lines(
          'all:',
          '  children:',
          '    web:',
          '      hosts:',
          '        web1:',
          '          http_port: 80',
          '    db:',
          '      hosts:',
          '        web1: {http_port: 8080}',
        ),
      ),
      'inventory.yaml:9:16',
      "host 'web1' sets 'http_port' to conflicting values at inventory.yaml:6:11 and inventory.yaml:9:16",
    );
  });

  it('names both places when a host port conflicts with an ansible_port', () => {
    expectInputError(
      parse(lines('all:', '  hosts:', '    web1:2222:', '  children:', '    web:', '      hosts:', '        web1: {ansible_port: 22}')),
      'inventory.yaml:7:16',
      "host 'web1' sets 'ansible_port' to conflicting values at inventory.yaml:3:5 and inventory.yaml:7:16",
    );
  });

  it('refuses a group that is its own ancestor', () => {
    expectInputError(
      parse(lines('all:', '  children:', '    a:', '      children:', '        b:', '          children:', '            a:')),
      'inventory.yaml:7:13',
      "group 'a' cannot be a child of 'b': 'a' is already an ancestor of 'b' (cycle)",
    );
    expectInputError(
      parse(lines('all:', '  children:', '    a:', '      children:', '        a:')),
      'inventory.yaml:5:9',
      "group 'a' cannot be a child of 'a': 'a' is already an ancestor of 'a' (cycle)",
    );
  });

  it('refuses bad host ranges', () => {
    const range = (entry: string) => parse(lines('all:', '  hosts:', `    ${entry}:`));
    expectInputError(range('node[01:5]'), 'inventory.yaml:3:5', "host range in 'node[01:5]' must write begin and end with the same number of digits");
    expectInputError(range('node[3:1]'), 'inventory.yaml:3:5', "host range in 'node[3:1]' must have begin <= end");
    expectInputError(range('node[1:b]'), 'inventory.yaml:3:5', "host range in 'node[1:b]' bounds must both be numbers or both single letters");
    expectInputError(range('node[1]'), 'inventory.yaml:3:5', "host range in 'node[1]' must be [begin:end] or [begin:end:step]");
    expectInputError(range('node[1:]'), 'inventory.yaml:3:5', "host range in 'node[1:]' must give an end value");
    expectInputError(range('node[1:4:0]'), 'inventory.yaml:3:5', "host range in 'node[1:4:0]' step must be a positive integer");
    expectInputError(range('node[1:4'), 'inventory.yaml:3:5', `host range in 'node[1:4' has a "[" without a closing "]"`);
  });

  it('refuses an ansible_group_priority that is not an integer', () => {
    expectInputError(
      parse(lines('all:', '  children:', '    web:', '      vars:', '        ansible_group_priority: high')),
      'inventory.yaml:5:9',
      'ansible_group_priority must be an integer, got "high"',
    );
  });
});

describe('inventory errors: INI', () => {
  const parse = (text: string) => () => parseInventory(text, 'inventory.ini');

  it('refuses a malformed section header', () => {
    expectInputError(
      parse(lines('[web servers]')),
      'inventory.ini:1:1',
      "invalid section header '[web servers]': expected [group], [group:vars] or [group:children], with no spaces",
    );
    expectInputError(parse(lines('[web:bogus]')), 'inventory.ini:1:1', "section [web:bogus] has unknown type 'bogus' (expected vars or children)");
  });

  it('points at the host variable that is not key=value', () => {
    expectInputError(parse(lines('[web]', '  web1 ansible_port')), 'inventory.ini:2:8', "expected key=value host variable, got 'ansible_port'");
    expectInputError(parse(lines('[web]', 'web1 =22')), 'inventory.ini:2:6', "expected key=value host variable, got '=22'");
  });

  it('points at an unclosed quote and a trailing backslash', () => {
    expectInputError(parse(lines('[web]', 'web1 a="unterminated')), 'inventory.ini:2:8', 'no closing quotation for the " opened here');
    expectInputError(parse(lines('web1 a=b\\')), 'inventory.ini:1:9', 'no character after the escaping backslash');
  });

  it('refuses a host ending in ":" without a port', () => {
    expectInputError(parse(lines('[web]', 'web1:')), 'inventory.ini:2:1', "invalid host 'web1:': a trailing ':' must be followed by a port");
  });

  it('refuses a [group:vars] line without =', () => {
    expectInputError(parse(lines('[web]', 'web1', '[web:vars]', '  http_port')), 'inventory.ini:4:3', "expected key=value in [web:vars], got 'http_port'");
  });

  it('refuses a [group:children] line that is not a group name', () => {
    expectInputError(parse(lines('[web:children]', 'a b')), 'inventory.ini:2:1', "expected a group name in [web:children], got 'a b'");
  });

  it('refuses children and vars for groups never declared', () => {
    expectInputError(parse(lines('[web:children]', 'missing')), 'inventory.ini:2:1', "section [web:children] includes undefined group 'missing'");
    expectInputError(
      parse(lines('[web:vars]', 'x=1')),
      'inventory.ini:1:1',
      "section [web:vars] is for group 'web', which is never declared with [web] or [web:children]",
    );
  });

  it('refuses a group that is its own ancestor', () => {
    expectInputError(
      parse(lines('[a:children]', 'b', '[b:children]', 'a')),
      'inventory.ini:4:1',
      "group 'a' cannot be a child of 'b': 'a' is already an ancestor of 'b' (cycle)",
    );
  });

  it('names both places of a host defined with conflicting vars', () => {
    expectInputError(
      parse(lines('[a]', 'h x=1 y=2', '[b]', 'h   y=2 x=3')),
      'inventory.ini:4:9',
      "host 'h' sets 'x' to conflicting values at inventory.ini:2:3 and inventory.ini:4:9",
    );
  });

  it('names both places of a group var set twice to different values', () => {
    expectInputError(
      parse(lines('[a]', 'h', '[a:vars]', 'x=1', '[a:vars]', 'x=2')),
      'inventory.ini:6:1',
      "group 'a' sets 'x' to conflicting values at inventory.ini:4:1 and inventory.ini:6:1",
    );
  });

  it('reports a bad range with the line of the host', () => {
    expectInputError(parse(lines('[web]', '  node[a:1]')), 'inventory.ini:2:3', "host range in 'node[a:1]' bounds must both be numbers or both single letters");
  });
});

describe('inventory errors: files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capstan-inventory-'));
    await writeFile(join(dir, 'inventory.ini'), lines('[web]', 'web1'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a missing inventory file', async () => {
    await expectAsyncInputError(() => loadInventory(join(dir, 'nope.ini')), undefined, `cannot read inventory ${join(dir, 'nope.ini')}`);
  });

  it('reports a YAML syntax error in a group_vars file at its position', async () => {
    await mkdir(join(dir, 'group_vars'));
    await writeFile(join(dir, 'group_vars', 'web.yml'), lines('a: 1', 'b: [2'));
    await expectAsyncInputError(() => loadInventory(join(dir, 'inventory.ini')), `${join(dir, 'group_vars', 'web.yml')}:3:1`, 'YAML syntax error');
  });

  it('refuses a host_vars file that is not a mapping', async () => {
    await mkdir(join(dir, 'host_vars', 'web1'), { recursive: true });
    await writeFile(join(dir, 'host_vars', 'web1', 'main.yml'), lines('# comment', '- a'));
    await expectAsyncInputError(
      () => loadInventory(join(dir, 'inventory.ini')),
      `${join(dir, 'host_vars', 'web1', 'main.yml')}:2:1`,
      'a vars file must be a mapping of variable names to values',
    );
  });

  it('refuses a vault-encrypted vars file with a clear message', async () => {
    await mkdir(join(dir, 'group_vars'));
    await writeFile(join(dir, 'group_vars', 'all.yml'), lines('$ANSIBLE_VAULT;1.1;AES256', '6231'));
    await expectAsyncInputError(
      () => loadInventory(join(dir, 'inventory.ini')),
      `${join(dir, 'group_vars', 'all.yml')}:1:1`,
      'Ansible Vault encrypted vars files are not supported',
    );
  });
});
