import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/**
 * The pure parts of the kubelet and kubectl stand-ins (test/lab/standins/pflag.py, kubelet_node.py
 * and kubectl.py's flatten), run with python3: pflag's parsing and errors, kubelet's swap check, the
 * runtime settings read from `containerd config dump`, CNI readiness, which pods install a CNI config,
 * and how `kubectl apply -f` reads a List.
 */
const STANDINS = fileURLToPath(new URL('../lab/standins/', import.meta.url));

/** Calls `module.fn(*args)` in python3 and returns its JSON result, or {error} for an exception. */
function py(module: string, fn: string, ...args: unknown[]): unknown {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(STANDINS)})`,
    `import ${module}`,
    'args = json.loads(sys.stdin.read())',
    'try:',
    `    result = ${module}.${fn}(*args)`,
    'except Exception as error:',
    '    result = {"error": type(error).__name__ + ": " + str(error)}',
    'print(json.dumps(result))',
  ].join('\n');
  return JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify(args) }).toString());
}

const fixture = (name: string) => readFileSync(new URL(`../fixtures/containerd/${name}`, import.meta.url), 'utf8');
const VALUES = ['output', 'namespace', 'filename', 'kubeconfig'];
const BOOLS = ['all', 'all-namespaces'];
const SHORT = { o: 'output', n: 'namespace', f: 'filename', A: 'all-namespaces' };
const parse = (argv: string[]) => py('pflag', 'parse', argv, VALUES, BOOLS, SHORT, ['filename']);

describe('stand-ins: pflag parsing (kubectl, kubelet)', () => {
  it('takes --flag=value and --flag value, shorthands joined or apart, booleans, and arguments anywhere', () => {
    expect(parse(['get', '--output=json', 'nodes', '--namespace', 'kube-system', '-ojsonpath={.x}', '-n=default', '--all', '-A', '-f', 'a.yaml', '-fb.yaml'])).to.deep.equal([
      { output: 'jsonpath={.x}', namespace: 'default', all: true, 'all-namespaces': true, filename: ['a.yaml', 'b.yaml'] },
      ['get', 'nodes'],
    ]);
    expect(parse(['--all=false', 'apply', '-f', '-', '--', '--not-a-flag'])).to.deep.equal([{ all: false, filename: ['-'] }, ['apply', '--not-a-flag']]);
    // A boolean takes no separate value: `false` stays an argument.
    expect(parse(['--all', 'false'])).to.deep.equal([{ all: true }, ['false']]);
  });

  it('refuses what pflag refuses, with its messages', () => {
    expect(parse(['get', '--foo'])).to.deep.equal({ error: 'FlagError: unknown flag: --foo' });
    expect(parse(['get', '--foo=1'])).to.deep.equal({ error: 'FlagError: unknown flag: --foo' });
    expect(parse(['-x'])).to.deep.equal({ error: "FlagError: unknown shorthand flag: 'x' in -x" });
    expect(parse(['-Ax'])).to.deep.equal({ error: "FlagError: unknown shorthand flag: 'x' in -x" });
    expect(parse(['get', '--output'])).to.deep.equal({ error: 'FlagError: flag needs an argument: --output' });
    expect(parse(['get', '-o'])).to.deep.equal({ error: "FlagError: flag needs an argument: 'o' in -o" });
    expect(parse(['--all=maybe'])).to.deep.equal({ error: 'FlagError: invalid argument "maybe" for "--all" flag: strconv.ParseBool: parsing "maybe": invalid syntax' });
  });
});

describe('stand-ins: what the kubelet reads about its node', () => {
  const HEADER = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority';

  it('refuses swap as kubelet\'s validateSwapConfiguration does, only with failSwapOn', () => {
    const swaps = `${HEADER}\n/dev/zram0                              partition\t988668\t\t0\t\t100\n`;
    expect(py('kubelet_node', 'swap_error', swaps, true)).to.equal(
      `running with swap on is not supported, please disable swap! or set --fail-swap-on flag to false. /proc/swaps contained: [${HEADER} /dev/zram0                              partition\t988668\t\t0\t\t100]`,
    );
    expect(py('kubelet_node', 'swap_error', swaps, false)).to.equal(null);
    expect(py('kubelet_node', 'swap_error', `${HEADER}\n`, true)).to.equal(null);
    expect(py('kubelet_node', 'swap_error', null, true)).to.equal(null);
    expect(py('kubelet_node', 'go_quote', 'a "b"\tc\\')).to.equal('"a \\"b\\"\\tc\\\\"');
  });

  it('reads the runc cgroup driver and CNI directories from containerd 1.6 and 2.x configs', () => {
    expect(py('kubelet_node', 'runtime_settings', fixture('config-default-1.6.toml'))).to.deep.equal({
      runtime: 'runc', systemd_cgroup: false, cni_bin_dirs: ['/opt/cni/bin'], cni_conf_dir: '/etc/cni/net.d',
    });
    expect(py('kubelet_node', 'runtime_settings', fixture('config-default-1.6.systemd.toml'))).to.deep.include({ systemd_cgroup: true });
    expect(py('kubelet_node', 'runtime_settings', fixture('config-default-2.x.toml'))).to.deep.equal({
      runtime: 'runc', systemd_cgroup: false, cni_bin_dirs: ['/opt/cni/bin'], cni_conf_dir: '/etc/cni/net.d',
    });
    expect(py('kubelet_node', 'runtime_settings', fixture('debian-bookworm-config.toml'))).to.deep.equal({
      runtime: 'runc', systemd_cgroup: false, cni_bin_dirs: ['/usr/lib/cni'], cni_conf_dir: '/etc/cni/net.d',
    });
    expect(String((py('kubelet_node', 'runtime_settings', 'version = [') as { error: string }).error)).to.match(/^ValueError: containerd config dump is not TOML/);
    expect([py('kubelet_node', 'containerd_reports_cgroup_driver', '1.6.20'), py('kubelet_node', 'containerd_reports_cgroup_driver', '2.1.4')]).to.deep.equal([false, true]);
  });

  it('names the runtime side of a cgroup driver mismatch, nothing when the drivers agree', () => {
    expect(py('kubelet_node', 'cgroup_driver_mismatch', 'systemd', true)).to.equal(null);
    expect(py('kubelet_node', 'cgroup_driver_mismatch', 'cgroupfs', false)).to.equal(null);
    expect(py('kubelet_node', 'cgroup_driver_mismatch', 'systemd', false)).to.equal('"Pod sandbox changed, it will be killed and re-created."');
    expect(py('kubelet_node', 'cgroup_driver_mismatch', 'cgroupfs', true)).to.include('expected cgroupsPath to be of format \\"slice:prefix:name\\" for systemd cgroups');
  });

  it('is network-ready only with a CNI config whose plugins all exist', () => {
    const NOT_READY = 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized';
    const weave = JSON.stringify({ cniVersion: '0.3.0', name: 'weave', plugins: [{ type: 'weave-net' }, { type: 'portmap' }] });
    const check = (configs: Record<string, string>, present: string[]) => {
      const script = [
        'import json, sys',
        `sys.path.insert(0, ${JSON.stringify(STANDINS)})`,
        'import kubelet_node',
        'configs, present = json.loads(sys.stdin.read())',
        'print(json.dumps(kubelet_node.cni_not_ready(configs, lambda types: [t for t in types if t not in present])))',
      ].join('\n');
      return JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify([configs, present]) }).toString()) as string | null;
    };
    expect(check({}, [])).to.equal(NOT_READY);
    expect(check({ '10-weave.conflist': weave }, ['portmap'])).to.equal(NOT_READY);
    expect(check({ '10-weave.conflist': weave }, ['portmap', 'weave-net'])).to.equal(null);
    expect(check({ '10-weave.conflist.bak': weave, 'README': 'x' }, ['portmap', 'weave-net'])).to.equal(NOT_READY);
    // The first valid config in name order is the network; a broken one before it is passed over.
    expect(check({ '05-broken.conf': '{', '10-bridge.conf': JSON.stringify({ cniVersion: '0.4.0', name: 'b', type: 'bridge' }), '20-weave.conflist': weave }, ['bridge'])).to.equal(null);
    expect(py('kubelet_node', 'cni_plugin_types', JSON.stringify({ name: 'x', plugins: [] }))).to.equal(null);
  });
});

describe('stand-ins: the lab\'s CNI manifests (test/fixtures/cni/*-lab.yaml)', () => {
  /** `module.fn(*args)` for each call, in one python3 run (each run costs seconds on a loaded machine). */
  function pyEach(module: string, calls: unknown[][]): unknown[] {
    const script = [
      'import json, sys',
      `sys.path.insert(0, ${JSON.stringify(STANDINS)})`,
      `import ${module}`,
      'calls = json.loads(sys.stdin.read())',
      `print(json.dumps([getattr(${module}, call[0])(*call[1:]) for call in calls]))`,
    ].join('\n');
    return JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify(calls) }).toString()) as unknown[];
  }
  type Obj = { kind: string; apiVersion: string; metadata: { name: string }; spec?: { template: { spec: Record<string, unknown> } } };
  const cniFixture = (name: string) => readFileSync(new URL(`../fixtures/cni/${name}`, import.meta.url), 'utf8');
  const LAB = ['weave-lab.yaml', 'calico-lab.yaml', 'flannel-lab.yaml'];
  /** What kubectl acts on for each lab manifest: flatten (kubectl.py) of each of its documents. */
  let applied: Obj[][] = [];
  before(() => {
    const docs = LAB.map((name) => parseAllDocuments(cniFixture(name)).map((doc) => doc.toJS() as unknown));
    const flat = pyEach('kubectl', docs.flat().map((doc) => ['flatten', doc])) as Obj[][];
    let at = 0;
    applied = docs.map((list) => flat.slice(at, (at += list.length)).flat());
  });

  it('kubectl apply -f reads a List as its items, in order, as kubectl flattens it (weave\'s manifest is one)', () => {
    expect(applied.map((objects) => objects.map((o) => `${o.kind}/${o.metadata.name}`))).to.deep.equal([
      ['ServiceAccount/weave-net', 'ClusterRole/weave-net', 'ClusterRoleBinding/weave-net', 'Role/weave-net', 'RoleBinding/weave-net', 'DaemonSet/weave-net'],
      ['ServiceAccount/calico-node', 'ConfigMap/calico-config', 'DaemonSet/calico-node'],
      ['Namespace/kube-flannel', 'ServiceAccount/flannel', 'ClusterRole/flannel', 'ClusterRoleBinding/flannel', 'ConfigMap/kube-flannel-cfg', 'DaemonSet/kube-flannel-ds'],
    ]);
    const item = (kind: string) => ({ apiVersion: 'v1', kind, metadata: { name: kind.toLowerCase() } });
    expect(pyEach('kubectl', [
      // A List inside a List: its items come after the outer list's own (FlattenListVisitor's queue).
      ['flatten', { apiVersion: 'v1', kind: 'List', items: [item('A'), { apiVersion: 'v1', kind: 'List', items: [item('B')] }, item('C')] }],
      // A typed list's items without kind and apiVersion get the list's (decodeToList).
      ['flatten', { apiVersion: 'v1', kind: 'ConfigMapList', items: [{ metadata: { name: 'x' } }] }],
      ['flatten', { apiVersion: 'v1', kind: 'List', items: null }],
      ['flatten', item('ConfigMap')],
    ])).to.deep.equal([[item('A'), item('C'), item('B')], [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }], [], [item('ConfigMap')]]);
  });

  it('the kubelet stand-in lets a pod whose container or init container mounts the host\'s CNI config directory install a config', () => {
    const specs = applied.map((objects) => objects.find((o) => o.kind === 'DaemonSet')!.spec!.template.spec);
    const volume = (path: string) => ({ volumes: [{ name: 'v', hostPath: { path } }] });
    const mounted = (path: string, mount: Record<string, unknown> = {}) => ({ ...volume(path), containers: [{ name: 'c', volumeMounts: [{ name: 'v', mountPath: '/host', ...mount }] }] });
    const cases: [string, unknown, boolean][] = [
      ...LAB.map((name, index): [string, unknown, boolean] => [name, specs[index], true]),
      // weave: only its init container weave-init mounts cni-conf (the host's /etc).
      ['weave without weave-init', { ...specs[0], initContainers: [] }, false],
      ['a volume no container mounts', volume('/etc/cni/net.d'), false],
      ['/etc/cni/net.d/', mounted('/etc/cni/net.d/'), true],
      ['/etc/cni', mounted('/etc/cni'), true],
      ['read-only', mounted('/etc/cni/net.d', { readOnly: true }), false],
      ['/etc/cnix', mounted('/etc/cnix'), false],
      ['/run/xtables.lock', mounted('/run/xtables.lock'), false],
    ];
    const got = pyEach('kubelet_node', cases.map(([, spec]) => ['installs_cni_config', spec]));
    expect(cases.map(([name], index) => `${name}: ${got[index]}`)).to.deep.equal(cases.map(([name, , want]) => `${name}: ${want}`));
  });
});
