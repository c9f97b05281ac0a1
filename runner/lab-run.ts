/**
 * `capstan run <playbook> --lab`: the embedded default for someone without cluster hardware.
 *
 * 1. The shape: the playbook's example inventory (its `exampleInventory` export, e.g.
 *    inventory/single.yaml), or the inventory given with -i. Lab hosts get the same names, the same
 *    groups and the same variables, with what cannot work in the lab changed (see
 *    {@link labHostSpecs}): the lab's addresses instead of the example's (every var that held an
 *    example address, the VIP included), no connection vars (the lab logs in as root with its own
 *    key), and LAB_VARS (Kubernetes from the stand-ins, Debian's containerd).
 * 2. The hosts: a lab that is already up with exactly that shape is reused (so a second
 *    `--lab` run shows the playbook converged: changed=0); otherwise one is brought up (replacing
 *    any other lab of this lab directory), and the Kubernetes STAND-INS are installed on hosts that
 *    lack them: kubeadm, kubelet and kubectl here are test doubles (test/lab/README.md).
 * 3. The CNI manifest: lab hosts cannot reach GitHub, and the controller may not either, so a small
 *    manifest of ours in the shape of the chosen CNI's (test/fixtures/cni/<cni>-lab.yaml) is read from
 *    this checkout as a file:/// URL (`cni_manifest_url`, unless -e sets it).
 * 4. Afterwards: how to reach the hosts (`capstan exec -i <lab inventory> …`), where the fetched
 *    kubeconfig is, and `capstan lab down`.
 */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { InputError, errorMessage } from './errors.js';
import { loadInventory, type Inventory } from './inventory/index.js';
import type { LabHostSpec, LabState } from './lab/types.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where the lab's CNI manifests are: ours, in the shape of each CNI's (the lab cannot download the real ones). */
export const LAB_CNI_DIR = join(ROOT, 'test', 'fixtures', 'cni');

/** What the lab's hosts are told, printed before and after the run. */
export const STAND_IN_NOTICE =
  'kubeadm, kubelet and kubectl on these lab hosts are STAND-INS: test doubles (test/lab/standins, see test/lab/README.md) that reproduce the real tools\' commands, files and output but run no containers. systemd, apt, containerd, haproxy and keepalived are real.';

/** The last octet of the lab's VIP: .2–.10 of the lab subnet are kept free for VIPs (runner/lab/paths.ts). */
export const LAB_VIP_OCTET = 10;

/** The example inventory a playbook module names with `export const exampleInventory = new URL(…)`. */
export async function exampleInventoryOf(playbookPath: string): Promise<string> {
  let module: { exampleInventory?: unknown };
  try {
    module = (await import(pathToFileURL(resolve(playbookPath)).href)) as { exampleInventory?: unknown };
  } catch (error) {
    throw new InputError(`cannot load playbook ${playbookPath}: ${errorMessage(error)}`);
  }
  const value = module.exampleInventory;
  const path = value instanceof URL ? fileURLToPath(value) : typeof value === 'string' ? resolve(dirname(resolve(playbookPath)), value) : undefined;
  if (!path) {
    throw new InputError(`${playbookPath} names no example inventory (export const exampleInventory = new URL('../inventory/x.yaml', import.meta.url)): pass -i with an inventory whose shape the lab should take`);
  }
  if (!existsSync(path)) throw new InputError(`${playbookPath}'s example inventory ${path} does not exist`);
  return path;
}

/** Vars that say how to connect; the lab's inventory sets its own, and a host var would override them. */
function isConnectionVar(name: string): boolean {
  return name.startsWith('ansible_') || name === 'capstan_known_hosts_file';
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Every IPv4 address in a value replaced by its lab address, where it has one (pure). */
function replaceAddresses(value: unknown, addresses: ReadonlyMap<string, string>): unknown {
  if (typeof value === 'string') {
    return value.replace(/(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])/g, (address) => addresses.get(address) ?? address);
  }
  if (Array.isArray(value)) return value.map((item) => replaceAddresses(item, addresses));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceAddresses(v, addresses)]));
  return value;
}

export interface LabShapeOptions {
  /** The lab's address of the host at each position: runner/lab/paths.ts hostAddress. */
  hostAddress: (index: number) => string;
  /** The lab's VIP (the example's `vip_address` becomes this). */
  vip: string;
  /** Vars added to every host (LAB_VARS and the run's own), over the example's. */
  vars: Record<string, unknown>;
}

/**
 * Lab host specs shaped like an inventory (pure): the same host names in inventory order, each
 * with every group it is in (nested groups flattened, so patterns select the same hosts) and its
 * merged vars, minus connection vars, with the example's addresses replaced by the lab's — each
 * host's `ip`/`ansible_host` by its lab address, `vip_address` by the lab VIP, and those addresses
 * wherever else they appear (`control_plane_endpoint: 192.168.0.66:8888`) — and `ip` set to the
 * lab address. Then `options.vars` on top.
 */
export function labHostSpecs(inventory: Inventory, options: LabShapeOptions): LabHostSpec[] {
  const hosts = [...inventory.hosts.values()];
  const addresses = new Map<string, string>();
  hosts.forEach((host, index) => {
    for (const key of ['ip', 'ansible_host']) {
      const value = host.vars[key];
      if (typeof value === 'string' && IPV4.test(value) && !addresses.has(value)) addresses.set(value, options.hostAddress(index));
    }
  });
  for (const host of hosts) {
    const vip = host.vars.vip_address;
    if (typeof vip === 'string' && IPV4.test(vip)) addresses.set(vip, options.vip);
  }
  return hosts.map((host, index) => {
    const vars: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(host.vars)) {
      if (!isConnectionVar(key)) vars[key] = replaceAddresses(value, addresses);
    }
    vars.ip = options.hostAddress(index);
    Object.assign(vars, options.vars);
    return { name: host.name, groups: host.groups.filter((g) => g !== 'all' && g !== 'ungrouped'), vars };
  });
}

/** True when a lab that is up has exactly these hosts, groups and vars (pure). */
export function sameShape(up: readonly { name: string; groups: string[]; vars: Record<string, unknown> }[], wanted: readonly LabHostSpec[]): boolean {
  const shape = (hosts: readonly LabHostSpec[]) => JSON.stringify(hosts.map((h) => [h.name, [...(h.groups ?? [])].sort(), h.vars ?? {}]));
  return shape(up) === shape(wanted);
}

/**
 * The lab hosts `run --lab` makes for an inventory: {@link labHostSpecs} with this lab's addresses
 * (CAPSTAN_LAB_NET), its VIP, LAB_VARS and the fetched kubeconfig in the lab directory.
 */
export async function labShapeFor(inventoryPath: string): Promise<LabHostSpec[]> {
  const example = await loadInventory(inventoryPath);
  const { hostAddress, labDir, GATEWAY } = await import('./lab/paths.js');
  const { LAB_VARS } = await import('../playbooks/vars.js');
  const vip = GATEWAY.replace(/\.1$/, `.${LAB_VIP_OCTET}`);
  return labHostSpecs(example, { hostAddress, vip, vars: { ...LAB_VARS, kubeconfig_path: join(labDir(), 'kubeconfig') } });
}

/**
 * The lab CNI manifests as a file:/// URL (`{cni}` is replaced by the CNI's name): the controller reads them
 * from this checkout, as it would read any manifest a user keeps on disk.
 */
export const LAB_CNI_URL = `${pathToFileURL(LAB_CNI_DIR).href}/{cni}-lab.yaml`;

export interface LabRun {
  lab: LabState;
  /** The lab's inventory: run against this. */
  inventoryPath: string;
  /** Vars for the run (the CNI manifest URL); -e given by the user wins over these. */
  extraVars: Record<string, unknown>;
  /** True when a lab that was up already was used. */
  reused: boolean;
  /** What to print after the run: how to reach the hosts. */
  summary(playbookPath: string, vars: { kubeconfigPath: string; context?: string }): string;
  close(): Promise<void>;
}

/**
 * Brings up (or reuses) lab hosts shaped like the playbook's example inventory, with the
 * stand-ins installed, and serves the lab CNI manifests for the run. See the file comment.
 */
export async function prepareLabRun(options: { playbookPath: string; inventoryPath?: string; log: (line: string) => void }): Promise<LabRun> {
  const shapeFrom = options.inventoryPath ? resolve(options.inventoryPath) : await exampleInventoryOf(options.playbookPath);
  const lab = await import('./lab/index.js');
  await lab.installLabPrerequisites(options.log);
  lab.assertLabSupported();
  const { labDir } = await import('./lab/paths.js');
  const dir = labDir();
  const specs = await labShapeFor(shapeFrom);
  const where = relative(process.cwd(), shapeFrom) || shapeFrom;
  const status = await lab.labStatus();
  let state: LabState;
  let reused = false;
  if (status && status.hosts.every((h) => h.up) && sameShape(status.hosts, specs)) {
    options.log(`lab: reusing the ${status.hosts.length} lab hosts that are up, shaped like ${where} (capstan lab down first for fresh ones)`);
    state = status;
    reused = true;
  } else {
    options.log(`lab: bringing up ${specs.length} hosts shaped like ${where} (lab directory ${dir})`);
    state = await lab.labUp({ hosts: specs, log: (line) => options.log(`lab: ${line}`) });
  }
  // The hard way (seed 003) has no kubeadm: its lab needs the control-plane binaries, not the kubeadm stand-ins.
  if (state.hosts.some((h) => h.groups.includes('controllers')) && !state.hosts.some((h) => h.groups.includes('control_plane'))) {
    return prepareHardWayLab(state, reused, options);
  }
  options.log(`lab: ${STAND_IN_NOTICE}`);
  const { installStandIns } = await import('./lab/standins.js');
  const started = Date.now();
  // Kubernetes runs on control planes and workers; a balancer needs no stand-ins.
  const k8sHosts = state.hosts.filter((h) => h.groups.includes('control_plane') || h.groups.includes('workers')).map((h) => h.name);
  const installed = await installStandIns(state, k8sHosts.length ? { hosts: k8sHosts } : {});
  if (installed.length) options.log(`lab: stand-ins installed on ${installed.join(', ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const repo = await serveLabKubernetesRepo();
  options.log(`lab: Kubernetes packages (stand-ins) served at ${repo.url}, laid out like pkgs.k8s.io (key ${repo.fingerprint})`);
  for (const host of state.hosts) options.log(`lab: ${host.name}\t${host.address}\t${host.groups.join(',')}`);
  return {
    lab: state,
    inventoryPath: state.inventoryPath,
    extraVars: { cni_manifest_url: LAB_CNI_URL, kubernetes_repo_url: repo.url, kubernetes_repo_key_fingerprint: repo.fingerprint },
    reused,
    summary(playbookPath, vars) {
      const inventory = state.inventoryPath;
      const first = state.hosts.find((h) => h.groups.includes('control_plane'))?.name ?? 'all';
      return [
        `lab: the hosts are up (${state.hosts.map((h) => `${h.name} ${h.address}`).join(', ')}).`,
        `lab: reminder: ${STAND_IN_NOTICE}`,
        `  reach them:  capstan exec -i ${inventory} all -- hostname`,
        `               capstan exec -i ${inventory} ${first} -- kubectl get nodes -o wide`,
        `  kubeconfig:  ${vars.kubeconfigPath}${vars.context ? ` (context ${vars.context})` : ''}`,
        `  run again:   capstan run ${playbookPath} --lab${options.inventoryPath ? ` -i ${options.inventoryPath}` : ''}   (reuses these hosts)`,
        `  remove:      capstan lab down`,
      ].join('\n');
    },
    close: () => repo.close(),
  };
}

/**
 * The lab's pkgs.k8s.io-shaped repository of stand-in packages (runner/lab/kubernetes-repo.ts),
 * kept in the lab directory and served on the lab gateway for the run, on a fixed port so the
 * hosts' apt sources do not change between runs. Lab hosts send apt through apt-cacher-ng, which
 * knows Debian's mirror only; their proxy configuration fetches the gateway directly (runner/lab/nspawn.ts).
 * The playbooks use it through `kubernetes_repo_url` and `kubernetes_repo_key_fingerprint`: the
 * upgrade playbook's repository switch and packages, and `kubernetes_packages: pkgs.k8s.io` when set.
 */
async function serveLabKubernetesRepo(): Promise<{ url: string; fingerprint: string; close(): Promise<void> }> {
  const { labDir, GATEWAY } = await import('./lab/paths.js');
  const { labKubernetesRepo, serveKubernetesRepo, LAB_KUBERNETES_REPO_PORT } = await import('./lab/kubernetes-repo.js');
  const built = await labKubernetesRepo(join(labDir(), 'kubernetes-repo'));
  const served = await serveKubernetesRepo(built.dir, GATEWAY, LAB_KUBERNETES_REPO_PORT);
  return { url: served.url, fingerprint: built.fingerprint, close: () => served.close() };
}

/** What the hard way's lab hosts are told, printed before and after the run. */
export const HARD_WAY_STAND_IN_NOTICE =
  'kube-apiserver, kube-controller-manager, kube-scheduler and kubectl for these lab hosts are STAND-INS: test doubles (test/lab/standins, see test/lab/README.md) that take the real flags and keep their state in the real etcd, served from this machine as the "download" with their SHA-256 published beside them. etcd, nginx and haproxy are the real Debian packages.';

/**
 * The script (sh, root) that gives a lab controller what the hard-way stand-ins need: `packages`
 * unless Python already has its modules; apt-get cut off when it hangs, and tried three times (the
 * lab's apt-cacher-ng has had hiccups under load).
 */
export function hardWayHostScript(packages: readonly string[]): string {
  return [
    'set -u',
    'export DEBIAN_FRONTEND=noninteractive',
    "python3 -c 'import yaml, cryptography' 2>/dev/null && exit 0",
    'for attempt in 1 2 3; do',
    `  if (timeout 90 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends ${packages.join(' ')}) >/tmp/standin-apt.log 2>&1; then exit 0; fi`,
    '  sleep 3',
    'done',
    'cat /tmp/standin-apt.log >&2',
    'exit 1',
    '',
  ].join('\n');
}

/**
 * `run playbooks/hard-way.ts --lab`: the stand-in binaries built in the lab directory and given as
 * file:/// URLs (`kubernetes_binary_url`, each with a published `<binary>.sha256`, as dl.k8s.io does), the
 * Debian packages they need on the controllers, and the PKI kept in the lab directory.
 */
async function prepareHardWayLab(state: LabState, reused: boolean, options: { playbookPath: string; inventoryPath?: string; log: (line: string) => void }): Promise<LabRun> {
  const { labDir } = await import('./lab/paths.js');
  const { buildHardWayBinaries, HARDWAY_HOST_PACKAGES } = await import('../test/lab/hardway.js');
  const { runOnLabHosts } = await import('./lab/standins.js');
  options.log(`lab: ${HARD_WAY_STAND_IN_NOTICE}`);
  const controllers = state.hosts.filter((h) => h.groups.includes('controllers')).map((h) => h.name);
  await runOnLabHosts(state, controllers, hardWayHostScript(HARDWAY_HOST_PACKAGES));
  const binDir = resolve(labDir(), 'hard-way-bin');
  const binaries = await buildHardWayBinaries(binDir);
  const { writeFileSync } = await import('node:fs');
  for (const binary of binaries) writeFileSync(`${binary.path}.sha256`, `${binary.sha256}\n`);
  for (const host of state.hosts) options.log(`lab: ${host.name}\t${host.address}\t${host.groups.join(',')}`);
  const pkiDir = join(labDir(), 'pki');
  return {
    lab: state,
    inventoryPath: state.inventoryPath,
    // file:/// on this machine, the sum published beside each file: a plain http server would need a pinned sum per binary.
    extraVars: { kubernetes_binary_url: `file://${binDir}/{binary}`, pki_dir: pkiDir },
    reused,
    summary(playbookPath) {
      const inventory = state.inventoryPath;
      const balancer = state.hosts.find((h) => h.groups.includes('loadbalancer'));
      return [
        `lab: the hosts are up (${state.hosts.map((h) => `${h.name} ${h.address}`).join(', ')}).`,
        `lab: reminder: ${HARD_WAY_STAND_IN_NOTICE}`,
        `  reach them:  capstan exec -i ${inventory} controllers -- systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler`,
        ...(balancer ? [`  the API:     curl --cacert ${pkiDir}/ca.pem https://${balancer.address}:6443/version`] : []),
        `  PKI:         ${pkiDir}`,
        `  run again:   capstan run ${playbookPath} --lab${options.inventoryPath ? ` -i ${options.inventoryPath}` : ''}   (reuses these hosts)`,
        `  remove:      capstan lab down`,
      ].join('\n');
    },
    close: async () => undefined,
  };
}
