/**
 * The topology playbooks end to end on container-lab hosts with the Kubernetes stand-ins (test
 * doubles for kubeadm/kubelet/kubectl; containerd, haproxy and keepalived are Debian's, real):
 * for each playbook and variant, --check on fresh hosts lists every change apply then makes and
 * writes nothing; apply converges (every node Ready in the stand-ins' kubectl); a second run
 * changes nothing. Then what is particular to each: `run --lab` (single-node), the memory cgroup
 * and its reboot (pi-cluster), control planes joined one at a time and haproxy routing around a
 * dead API server (stacked-ha, balancer), the keepalived VIP moving when its holder fails
 * (stacked-ha, VIP). Each labs' hosts are shaped like the playbook's example inventory, as
 * `capstan run --lab` makes them (runner/lab-run.ts labShapeFor).
 */
import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { startHost, stopHost, type LabState } from '../../runner/lab/index.js';
import { containerRunning } from '../../runner/lab/nspawn.js';
import { readRecord } from '../../runner/lab/state.js';
import { labShapeFor, LAB_CNI_URL } from '../../runner/lab-run.js';
import { dnsProbe } from '../../tasks/cluster.js';
import { renderHaproxyConfig } from '../../tasks/haproxy.js';
import { renderCheckScript, renderKeepalivedConfig } from '../../tasks/keepalived.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, eventsOf, recapOf, startCapstan } from '../helpers/cli.js';
import { installKubernetesStandIns } from '../lab/install.js';
import { expectNothingChanged } from '../helpers/recap.js';

/** Names, modes, owners and sizes under /etc, /var/lib (and /boot), and the bytes of /etc and /boot: check mode must change none. */
// /var/lib/etcd is left out: a running etcd member writes there on its own (its WAL and snapshots
// follow the cluster's traffic, the API server's lease and node-status updates), whatever Capstan does.
const HASH_STATE =
  "find /etc /var/lib /boot -xdev -path /var/lib/etcd -prune -o \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %s %l\\n' 2>/dev/null | sort | sha256sum; find /etc /boot -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum";
/** Which boot a host is in: the start time of its PID 1 (a container restarted by the lab gets a new one). */
const BOOT = "sed 's/^.*) //' /proc/1/stat | cut -d ' ' -f 20";

type TaskEvent = { type: 'task'; host: string; task: string; status: string; durationMs: number; drift: { subject: string; pending?: string; current?: string; desired?: string; diff?: string }[]; message?: string };

function taskEvents(stdout: string): TaskEvent[] {
  return eventsOf(stdout).filter((e) => e.type === 'task') as unknown as TaskEvent[];
}

/** "host task" for every task that changed (or would change). */
function changed(stdout: string): Set<string> {
  return new Set(taskEvents(stdout).filter((e) => e.status === 'changed').map((e) => `${e.host} ${e.task}`));
}

async function hashes(lab: LabState): Promise<string[]> {
  return (await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, HASH_STATE)))).map((r) => r.stdout);
}

async function sh(lab: LabState, host: string, command: string): Promise<string> {
  const result = await sshToLab(lab, host, command);
  if (result.code !== 0) throw new Error(`${host}: ${command}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** --check lists every change: whatever apply changed, check said would change; what check said beyond that was only predicted (pending). */
function expectCheckListedEveryChange(check: string, apply: string): void {
  const predicted = changed(check);
  const made = changed(apply);
  expect([...made].filter((t) => !predicted.has(t)), 'changed by apply but not listed by --check').to.deep.equal([]);
  const extra = taskEvents(check).filter((e) => e.status === 'changed' && !made.has(`${e.host} ${e.task}`));
  for (const e of extra) expect(e.drift.some((d) => d.pending !== undefined) || /pending/.test(e.message ?? ''), `${e.host} ${e.task} would change in --check but did not`).to.equal(true);
  expect(taskEvents(check).filter((e) => e.status === 'failed')).to.deep.equal([]);
}

/** One line per playbook in the test log: hosts, task results, changed, seconds. */
function logSummary(name: string, stdout: string, started: number): void {
  const tasks = taskEvents(stdout);
  const hosts = Object.keys(recapOf(stdout)).length;
  const slowest = [...tasks].sort((a, b) => b.durationMs - a.durationMs).slice(0, 3).map((t) => `${t.host} ${t.task} ${(t.durationMs / 1000).toFixed(1)} s`);
  console.log(`      [playbooks] ${name}: ${hosts} hosts, ${tasks.length} tasks, ${tasks.filter((t) => t.status === 'changed').length} changed, ${((Date.now() - started) / 1000).toFixed(1)} s (slowest: ${slowest.join(', ')})`);
}

/** Every node Ready, as the stand-ins' kubectl sees them. */
async function nodesReady(lab: LabState, host: string): Promise<string[]> {
  const out = await sh(lab, host, 'kubectl get nodes --no-headers');
  return out.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2).join(' ')).sort();
}

const ip = (lab: LabState, name: string) => lab.hosts.find((h) => h.name === name)!.address;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

/** The kube-dns query the smoke test makes, made here from another node: `rcode N` and `A address` lines. */
async function resolve(lab: LabState, host: string, server: string, name: string): Promise<string> {
  return sh(lab, host, dnsProbe(server, name).text);
}

/**
 * The smoke test passed, and what it claims holds as seen from other nodes: one Running, Ready nginx
 * pod per node (a DaemonSet), every kube-system pod Running and Ready, the Service's ClusterIP
 * answering with nginx's page from every node (kube-proxy's DNAT to the three pod IPs), and
 * kubernetes.default resolving through kube-dns to the kubernetes Service's ClusterIP.
 */
async function expectSmokeTestPassed(lab: LabState, apply: string): Promise<void> {
  const smoke = taskEvents(apply).filter((e) => e.task === 'smoke-test').map((e) => [e.host, e.status]);
  expect(smoke).to.deep.equal([['k8s-01', 'changed']]);
  const pods = (await sh(lab, 'k8s-01', 'kubectl get pods -l app=capstan-smoke-nginx -o wide --no-headers')).trim().split('\n').map((l) => l.split(/\s+/));
  expect(pods.map(([, ready, status, , , , node]) => `${node} ${ready} ${status}`).sort()).to.deep.equal(['k8s-01 1/1 Running', 'k8s-02 1/1 Running', 'k8s-03 1/1 Running']);
  const system = (await sh(lab, 'k8s-01', 'kubectl get pods -n kube-system --no-headers')).trim().split('\n').map((l) => l.split(/\s+/));
  expect(system.filter(([, ready, status]) => status !== 'Running' || ready!.split('/')[0] !== ready!.split('/')[1] || ready === '0/0')).to.deep.equal([]);
  expect([system.filter(([name]) => name!.startsWith('coredns-')).length, system.filter(([name]) => name!.startsWith('kube-proxy-')).length]).to.deep.equal([2, 3]);
  const service = (await sh(lab, 'k8s-01', 'kubectl get svc capstan-smoke-nginx --no-headers')).split(/\s+/);
  const ip = service[2]!;
  expect([service[1], service[4]]).to.deep.equal(['ClusterIP', '80/TCP']);
  expect(ip).to.match(/^10\.(9[6-9]|10[0-9]|11[01])\./);
  const podIps = pods.map((p) => p[5]!).sort();
  const nat = await sh(lab, 'k8s-02', 'iptables-save -t nat');
  expect(nat.split('\n').filter((l) => l.includes(`-d ${ip}/32`)).map((l) => l.replace(/.*--to-destination /, '')).sort()).to.deep.equal(podIps.map((p) => `${p}:80`));
  for (const host of ['k8s-01', 'k8s-02', 'k8s-03']) expect(await sh(lab, host, `curl -sS --max-time 5 -i http://${ip}:80/`), host).to.match(/^HTTP\/1\.1 200 OK\r\nServer: nginx\/[\d.]+\r\n[\s\S]*<title>Welcome to nginx!<\/title>/);
  const dns = (await sh(lab, 'k8s-01', 'kubectl get svc kube-dns -n kube-system -o jsonpath={.spec.clusterIP}')).trim();
  const api = (await sh(lab, 'k8s-01', 'kubectl get svc kubernetes -o jsonpath={.spec.clusterIP}')).trim();
  expect([dns, api]).to.deep.equal(['10.96.0.10', '10.96.0.1']);
  expect(await resolve(lab, 'k8s-03', dns, 'kubernetes.default.svc.cluster.local')).to.equal('rcode 0\nA 10.96.0.1\n');
  expect(await resolve(lab, 'k8s-02', dns, 'nothing.default.svc.cluster.local')).to.equal('rcode 3\n');
}

describe('playbooks end to end (lab, Kubernetes stand-ins)', function () {
  this.timeout(900_000);

  describe('single-node.ts with `capstan run --lab` (the README\'s first command)', () => {
    let lab: LabState;
    const args = ['run', 'playbooks/single-node.ts', '--lab', '--json'];
    let check: string;
    let apply: string;

    before(async () => {
      // The hosts --lab would make, made first so their state can be hashed before --check; --lab then reuses them.
      lab = await withLab(await labShapeFor('inventory/single.yaml'));
      await installKubernetesStandIns(lab);
      rmSync(join(lab.dir, 'kubeconfig'), { force: true });
    });

    it('--check on fresh hosts reuses the lab, says the Kubernetes tools are stand-ins, lists every change and writes nothing', async () => {
      const before = await hashes(lab);
      const result = await capstan([...args, '--check']);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stderr).to.include('lab: reusing the 3 lab hosts that are up, shaped like inventory/single.yaml');
      expect(result.stderr).to.include('kubeadm, kubelet and kubectl on these lab hosts are STAND-INS');
      expect(result.stderr).to.include(`capstan exec -i ${lab.inventoryPath} all -- hostname`);
      expect(result.stderr).to.include('capstan lab down');
      expect(await hashes(lab)).to.deep.equal(before);
      expect(() => readFileSync(join(lab.dir, 'kubeconfig'))).to.throw(/ENOENT/);
      const init = taskEvents(result.stdout).find((e) => e.task === 'kubeadm:init')!;
      expect([init.host, init.status, init.drift]).to.deep.equal(['k8s-01', 'changed', [{ subject: 'control plane', current: 'not initialised', desired: 'initialised with kubeadm init' }]]);
      check = result.stdout;
    });

    it('applies: init with the seed\'s pod CIDR, workers joined, Weave Net with the CIDR, every node Ready, the smoke test', async () => {
      const started = Date.now();
      const result = await capstan(args);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      apply = result.stdout;
      logSummary('single-node (--lab)', apply, started);
      expectCheckListedEveryChange(check, apply);
      expect(await nodesReady(lab, 'k8s-01')).to.deep.equal(['k8s-01 Ready', 'k8s-02 Ready', 'k8s-03 Ready']);
      expect(await sh(lab, 'k8s-01', 'grep -E "podSubnet|advertiseAddress" /etc/kubernetes/kubeadm-config.yaml')).to.equal(`  advertiseAddress: ${ip(lab, 'k8s-01')}\n  podSubnet: 10.10.0.0/16\n`);
      expect(await sh(lab, 'k8s-01', 'kubectl get ds weave-net -n kube-system -o yaml')).to.match(/- name: IPALLOC_RANGE\n\s+value: 10\.10\.0\.0\/16\n/);
      // Weave's manifest is one `kind: List` (its RBAC objects, then the DaemonSet): every item was applied, and
      // IPALLOC_RANGE went to the weave container, after INIT_CONTAINER and HOSTNAME, not to weave-npc.
      const weave = "'{.spec.template.spec.initContainers[*].name}{range .spec.template.spec.containers[*]} {.name}={.env[*].name}{end}'";
      expect(await sh(lab, 'k8s-01', `kubectl get ds weave-net -n kube-system -o jsonpath=${weave}`)).to.equal('weave-init weave=INIT_CONTAINER HOSTNAME IPALLOC_RANGE weave-npc=HOSTNAME');
      expect(await sh(lab, 'k8s-01', 'kubectl get clusterrolebinding weave-net --no-headers')).to.match(/^weave-net +ClusterRole\/weave-net +\S+\n$/);
      await expectSmokeTestPassed(lab, apply);
      expect(await sh(lab, 'k8s-02', 'grep -c "SystemdCgroup = true" /etc/containerd/config.toml; systemctl is-active containerd; systemctl is-enabled kubelet')).to.equal('1\nactive\nenabled\n');
      // The cluster's admin kubeconfig, merged on this machine under the context single-node.
      const local = parse(readFileSync(join(lab.dir, 'kubeconfig'), 'utf8')) as { 'current-context': string; clusters: { name: string; cluster: { server: string } }[] };
      expect([local['current-context'], local.clusters.map((c) => `${c.name} ${c.cluster.server}`)]).to.deep.equal(['single-node', [`single-node https://${ip(lab, 'k8s-01')}:6443`]]);
    });

    it('a second `--lab` run reuses the hosts and changes nothing', async () => {
      const result = await capstan(args);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('smoke test: a Service without Ready pods does not answer; a node whose pod is not Ready is named, and the Service stops sending to it', async () => {
      // A Service that selects no pod: kube-proxy REJECTs its ClusterIP, nothing answers.
      await sh(lab, 'k8s-01', `kubectl apply -f - <<'EOF'\napiVersion: v1\nkind: Service\nmetadata:\n  name: capstan-e2e-empty\nspec:\n  selector:\n    app: capstan-e2e-nothing\n  ports:\n    - port: 80\nEOF`);
      const empty = await sh(lab, 'k8s-01', 'kubectl get svc capstan-e2e-empty -o jsonpath={.spec.clusterIP}');
      expect(await sh(lab, 'k8s-01', 'kubectl get endpoints capstan-e2e-empty --no-headers')).to.match(/^capstan-e2e-empty\s+<none>\s/);
      const refused = await until('k8s-01 to REJECT the empty Service', 30_000, async () => {
        const rules = await sh(lab, 'k8s-01', 'iptables-save -t filter');
        return rules.includes(`-A KUBE-SERVICES -d ${empty}/32 -p tcp -m comment --comment "default/capstan-e2e-empty has no endpoints"`) && rules;
      });
      expect(refused).to.include('-j REJECT --reject-with icmp-port-unreachable');
      const noAnswer = await sshToLab(lab, 'k8s-01', `curl -sS --max-time 5 http://${empty}:80/`);
      expect([noAnswer.code === 0, noAnswer.stdout]).to.deep.equal([false, '']);
      await sh(lab, 'k8s-01', 'kubectl delete svc capstan-e2e-empty');

      // k8s-03's container runtime stops: its kubelet posts NotReady, its smoke pod stays but is not Ready.
      await sh(lab, 'k8s-03', 'systemctl stop containerd');
      try {
        await until('k8s-03 NotReady', 60_000, async () => (await nodesReady(lab, 'k8s-01')).includes('k8s-03 NotReady'));
        const endpoints = await until('the smoke Endpoints without k8s-03', 30_000, async () => {
          const ep = JSON.parse(await sh(lab, 'k8s-01', 'kubectl get endpoints capstan-smoke-nginx -o json')) as { subsets: { addresses?: { nodeName: string }[]; notReadyAddresses?: { nodeName: string }[] }[] };
          const [subset] = ep.subsets;
          return subset?.notReadyAddresses?.length === 1 && subset;
        });
        expect([endpoints.addresses!.map((a) => a.nodeName).sort(), endpoints.notReadyAddresses!.map((a) => a.nodeName)]).to.deep.equal([['k8s-01', 'k8s-02'], ['k8s-03']]);
        const k3 = (await sh(lab, 'k8s-01', `kubectl get pods -l app=capstan-smoke-nginx -o jsonpath='{range .items[?(@.spec.nodeName=="k8s-03")]}{.metadata.name} {.status.podIP}{end}'`)).split(' ');
        await until('k8s-01 to stop sending to k8s-03\'s pod', 30_000, async () => !(await sh(lab, 'k8s-01', 'iptables-save -t nat')).includes(`--to-destination ${k3[1]}:80`));
        const check = await capstan([...args, '--check']);
        expect(check.code, check.stderr).to.equal(0);
        const smoke = taskEvents(check.stdout).find((e) => e.task === 'smoke-test')!;
        expect([smoke.host, smoke.status]).to.deep.equal(['k8s-01', 'changed']);
        expect(smoke.drift[0]!.current!.split('\n')).to.include(`node k8s-03: pod ${k3[0]} Running, not Ready`);
        // Still answered, by the Ready pods on k8s-01 and k8s-02.
        const ip = await sh(lab, 'k8s-01', 'kubectl get svc capstan-smoke-nginx -o jsonpath={.spec.clusterIP}');
        for (let i = 0; i < 6; i++) expect(await sh(lab, 'k8s-01', `curl -sS --max-time 5 http://${ip}/`)).to.include('<title>Welcome to nginx!</title>');
      } finally {
        await sh(lab, 'k8s-03', 'systemctl start containerd');
      }
      await until('k8s-03 Ready', 60_000, async () => (await nodesReady(lab, 'k8s-01')).includes('k8s-03 Ready'));
      const result = await capstan(args);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('containerd back on cgroupfs on a worker: its kubelet crash-loops and the node goes NotReady; a re-run restores SystemdCgroup = true and the node is Ready', async () => {
      // What a user's hand edit (or a config management tool) would do to a converged node.
      await sh(lab, 'k8s-02', "sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml && systemctl restart containerd");
      const ready = `kubectl get node k8s-02 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason} {.status.conditions[?(@.type=="Ready")].message}'`;
      // The kubelet exits, systemd restarts it every 10 s, it exits again; after the node monitor's grace period the node is NotReady.
      expect(await until('k8s-02 NotReady', 120_000, async () => (await nodesReady(lab, 'k8s-01')).includes('k8s-02 NotReady'))).to.equal(true);
      // While containerd restarts, the kubelet may first post NotReady ("container runtime is down"), as a real
      // one does; once it crash-loops and stops posting, the node monitor marks the condition Unknown.
      const stopped = 'Unknown NodeStatusUnknown Kubelet stopped posting node status.';
      await until('k8s-02 status Unknown', 120_000, async () => (await sh(lab, 'k8s-01', ready)) === stopped);
      expect(await sh(lab, 'k8s-01', ready)).to.equal(stopped);
      const journal = await sh(lab, 'k8s-02', 'journalctl -u kubelet -o cat --no-pager -n 200');
      expect(journal).to.include('"CRI implementation should be updated to support RuntimeConfig when KubeletCgroupDriverFromCRI feature gate has been enabled. Falling back to using cgroupDriver from kubelet config."');
      expect(journal).to.include('"Pod sandbox changed, it will be killed and re-created."');
      expect(journal).to.include('"command failed" err="failed to run Kubelet: cgroup driver mismatch (stand-in): the kubelet uses \\"systemd\\", containerd\'s runc runtime \\"cgroupfs\\" (SystemdCgroup = false); pods cannot run on this node"');
      expect(await sh(lab, 'k8s-02', 'curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:10248/healthz || true')).to.equal('000');

      const check = await capstan([...args, '--check']);
      expect(check.code, check.stderr).to.equal(0);
      expect([...changed(check.stdout)].filter((t) => t.includes('containerd-cgroup'))).to.deep.equal(['k8s-02 containerd-cgroup:/etc/containerd/config.toml']);
      const result = await capstan(args);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      expect([...changed(result.stdout)].filter((t) => t.includes('containerd-cgroup'))).to.deep.equal(['k8s-02 containerd-cgroup:/etc/containerd/config.toml']);
      expect(recapOf(result.stdout)['k8s-03']!.changed).to.equal(0);
      expect(await sh(lab, 'k8s-02', 'grep -c "SystemdCgroup = true" /etc/containerd/config.toml')).to.equal('1\n');
      await until('k8s-02 Ready', 120_000, async () => (await nodesReady(lab, 'k8s-01')).includes('k8s-02 Ready'));
      expect(await nodesReady(lab, 'k8s-01')).to.deep.equal(['k8s-01 Ready', 'k8s-02 Ready', 'k8s-03 Ready']);
      expect(await sh(lab, 'k8s-01', ready)).to.equal('True KubeletReady kubelet is posting ready status');
    });
  });

  describe('pi-cluster.ts: the memory cgroup where it is missing (cmdline.txt, reboot), the rest untouched', () => {
    let lab: LabState;
    let args: string[];
    let check: string;
    const PI_CMDLINE = 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait cfg80211.ieee80211_regdom=GB\n';
    let boots: Record<string, string>;

    before(async () => {
      lab = await withLab(await labShapeFor('inventory/home.yaml'));
      await installKubernetesStandIns(lab);
      args = ['run', 'playbooks/pi-cluster.ts', '-i', lab.inventoryPath, '-e', `cni_manifest_url=${LAB_CNI_URL}`, '-e', 'reboot_timeout=180', '--json'];
      // pi-03 plays a Pi whose kernel has no memory cgroup: Raspberry Pi OS's cmdline.txt, and
      // /proc/cgroups with memory disabled (a bind mount, gone after the reboot, as the new kernel
      // command line would make it). The container lab cannot boot another kernel: the lab restarts
      // the container when it reboots, which is what the playbook waits for.
      await sh(lab, 'pi-03', `mkdir -p /boot/firmware && printf %s '${PI_CMDLINE}' > /boot/firmware/cmdline.txt && awk 'BEGIN { OFS = "\\t" } $1 == "memory" { $4 = 0 } { print }' /proc/cgroups > /run/cgroups-without-memory && mount --bind /run/cgroups-without-memory /proc/cgroups`);
      expect(await sh(lab, 'pi-03', "awk '$1 == \"memory\" { print $4 }' /proc/cgroups")).to.equal('0\n');
      boots = Object.fromEntries(await Promise.all(lab.hosts.map(async (h) => [h.name, await sh(lab, h.name, BOOT)])));
    });

    it('--check: pi-03 would get the kernel command line and a reboot, the others nothing of the kind; nothing is written', async () => {
      const before = await hashes(lab);
      const result = await capstan([...args, '--check', '--diff']);
      expect(result.code, result.stderr).to.equal(0);
      expect(await hashes(lab)).to.deep.equal(before);
      const cgroup = taskEvents(result.stdout).filter((e) => e.task === 'cgroup:memory');
      expect(cgroup.map((e) => [e.host, e.status]).sort()).to.deep.equal([['pi-01', 'ok'], ['pi-02', 'ok'], ['pi-03', 'changed']]);
      const pi3 = cgroup.find((e) => e.host === 'pi-03')!;
      expect(pi3.drift.map((d) => [d.subject, d.current, d.desired])).to.deep.equal([
        ['memory cgroup', 'missing', 'active'],
        ['/boot/firmware/cmdline.txt', undefined, undefined],
        ['reboot', undefined, 'reboot for the new kernel command line'],
      ]);
      expect(pi3.drift[1]!.diff).to.include(`\n-${PI_CMDLINE}+${PI_CMDLINE.replace('\n', ' cgroup_memory=1 cgroup_enable=memory\n')}`);
      check = result.stdout;
    });

    it('applies: pi-03 gets cgroup_memory=1 cgroup_enable=memory and is rebooted (only it), then every Pi joins and is Ready', async () => {
      const started = Date.now();
      const run = startCapstan(args);
      // The reboot: pi-03's container exits; the lab starts it again, as a Pi's firmware would boot it.
      const record = () => readRecord(lab.dir)!.hosts.find((h) => h.name === 'pi-03')!;
      await until('pi-03 to reboot (its container to exit)', 300_000, async () => !containerRunning(record()) || (run.child.exitCode !== null ? 'exited' : false));
      expect(run.child.exitCode, run.stdout.slice(-3000)).to.equal(null);
      await startHost('pi-03');
      const result = await run.done;
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      logSummary('pi-cluster', result.stdout, started);
      expectCheckListedEveryChange(check, result.stdout);
      expect(await sh(lab, 'pi-03', 'cat /boot/firmware/cmdline.txt')).to.equal(PI_CMDLINE.replace('\n', ' cgroup_memory=1 cgroup_enable=memory\n'));
      expect(await sh(lab, 'pi-03', "awk '$1 == \"memory\" { print $4 }' /proc/cgroups")).to.equal('1\n');
      const after = Object.fromEntries(await Promise.all(lab.hosts.map(async (h) => [h.name, await sh(lab, h.name, BOOT)])));
      expect(Object.keys(after).filter((h) => after[h] !== boots[h])).to.deep.equal(['pi-03']);
      expect(await nodesReady(lab, 'pi-01')).to.deep.equal(['pi-01 Ready', 'pi-02 Ready', 'pi-03 Ready']);
    });

    it('a second run changes nothing and reboots nothing', async () => {
      const before = Object.fromEntries(await Promise.all(lab.hosts.map(async (h) => [h.name, await sh(lab, h.name, BOOT)])));
      const result = await capstan(args);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
      const after = Object.fromEntries(await Promise.all(lab.hosts.map(async (h) => [h.name, await sh(lab, h.name, BOOT)])));
      expect(after).to.deep.equal(before);
    });

    it('status.ts on the Pi cluster: three Ready nodes with their roles, pi-01 ready, one etcd member, the bootstrap token by id; nothing changed', async () => {
      const result = await capstan(['run', 'playbooks/status.ts', '-i', lab.inventoryPath, '--json']);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      const reports = reportsOf(result.stdout);
      expect(reports.map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'etcd members', 'Certificates', 'Join tokens']);
      expect(reports[0]!.rows.map((r) => [r[0], r[1], r[2], r[3], r[4]])).to.deep.equal(
        ['pi-01', 'pi-02', 'pi-03'].map((name) => [name, name === 'pi-01' ? 'control-plane' : '<none>', 'v1.34.1', 'Ready', ip(lab, name)]),
      );
      expect(reports[1]).to.deep.equal({ title: 'Control planes', columns: ['HOST', 'READYZ'], rows: [['pi-01', 'ok']] });
      expect(reports[2]!.rows.map((r) => [r[0], r[2], r[4]])).to.deep.equal([['pi-01', `https://${ip(lab, 'pi-01')}:2380`, 'healthy']]);
      // kubeadm's certificates on pi-01 and every node's kubelet client certificate, none expiring.
      expect(reports[3]!.rows.filter((r) => r[1] === 'kubelet-client').map((r) => r[0])).to.deep.equal(['pi-01', 'pi-02', 'pi-03']);
      expect(reports[3]!.rows.every((r) => r[5] === '')).to.equal(true);
      const tokens = (await sh(lab, 'pi-01', "kubeadm token list | awk 'NR > 1 { print substr($1, 1, 6) }'")).trim().split('\n');
      expect(reports[4]!.rows.map((r) => r[0]).sort()).to.deep.equal(tokens.sort());
      expect(result.stdout).not.to.match(/[a-z0-9]{6}\.[a-z0-9]{16}/);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });
  });

  describe('stacked-ha.ts, external balancer (inventory/ha.yaml, seed 002)', () => {
    let lab: LabState;
    let args: string[];
    let check: string;
    let apply: string;
    const masters = ['master1', 'master2', 'master3'];

    before(async () => {
      lab = await withLab(await labShapeFor('inventory/ha.yaml'));
      await installKubernetesStandIns(lab, masters);
      args = ['run', 'playbooks/stacked-ha.ts', '-i', lab.inventoryPath, '-e', `cni_manifest_url=${LAB_CNI_URL}`, '--json'];
    });

    it('--check on fresh hosts lists every change and writes nothing', async () => {
      const before = await hashes(lab);
      const result = await capstan([...args, '--check']);
      expect(result.code, result.stderr).to.equal(0);
      expect(await hashes(lab)).to.deep.equal(before);
      check = result.stdout;
    });

    it('applies: haproxy on the balancer, init with controlPlaneEndpoint, control planes joined one at a time, Calico, all Ready', async () => {
      const started = Date.now();
      const result = await capstan(args);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      apply = result.stdout;
      logSummary('stacked-ha (balancer)', apply, started);
      expectCheckListedEveryChange(check, apply);
      const servers = masters.map((name) => ({ name, address: ip(lab, name), port: 6443 }));
      expect(await sh(lab, 'balancer', 'cat /etc/haproxy/haproxy.cfg')).to.equal(renderHaproxyConfig({ bind: `${ip(lab, 'balancer')}:6443`, check: 'tcp', servers }));
      expect(await sh(lab, 'master1', 'grep controlPlaneEndpoint /etc/kubernetes/kubeadm-config.yaml')).to.equal(`controlPlaneEndpoint: ${ip(lab, 'balancer')}:6443\n`);
      for (const name of masters) {
        expect(await sh(lab, name, 'cat /etc/default/kubelet; update-alternatives --query iptables | grep ^Value')).to.equal(`KUBELET_EXTRA_ARGS=--node-ip=${ip(lab, name)}\nValue: /usr/sbin/iptables-legacy\n`);
      }
      // One at a time: master3's join starts only after master2's has finished.
      const events = eventsOf(apply);
      const at = (type: string, host: string) => events.findIndex((e) => e.type === type && e.host === host && e.task === 'kubeadm:join');
      expect(at('task', 'master2')).to.be.greaterThan(-1);
      expect(at('task-start', 'master3')).to.be.greaterThan(at('task', 'master2'));
      expect(await nodesReady(lab, 'master2')).to.deep.equal(['master1 Ready', 'master2 Ready', 'master3 Ready']);
      expect(await sh(lab, 'master1', 'kubectl get ds calico-node -n kube-system -o yaml')).to.match(/- name: CALICO_IPV4POOL_CIDR\n\s+value: 10\.244\.0\.0\/16\n/);
      expect(await sh(lab, 'master1', "kubectl get ds calico-node -n kube-system -o jsonpath='{.spec.template.spec.initContainers[*].name} {.spec.template.spec.containers[*].name}'")).to.equal('upgrade-ipam install-cni mount-bpffs calico-node');
    });

    it('a second run changes nothing', async () => {
      const result = await capstan(args);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('status.ts on this cluster: the three masters ready, haproxy active on the balancer, etcd three healthy members; nothing changed', async () => {
      const result = await capstan(['run', 'playbooks/status.ts', '-i', lab.inventoryPath, '--json']);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      const reports = reportsOf(result.stdout);
      expect(reports.map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'etcd members', 'Certificates', 'Join tokens']);
      expect(reports[0]!.rows.map((r) => `${r[0]} ${r[1]} ${r[3]}`)).to.deep.equal(masters.map((m) => `${m} control-plane Ready`));
      expect(reports[1]).to.deep.equal({
        title: 'Control planes',
        columns: ['HOST', 'READYZ', 'HAPROXY'],
        rows: [...masters.map((m) => [m, 'ok', '-']), ['balancer', '-', 'active']],
      });
      expect(reports[2]!.rows.map((r) => [r[0], r[2], r[4]]).sort()).to.deep.equal(masters.map((m) => [m, `https://${ip(lab, m)}:2380`, 'healthy']));
      expect(reports[3]!.rows.filter((r) => r[1] === 'apiserver').map((r) => r[0])).to.deep.equal(masters);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('haproxy routes to every API server, and around one that stopped (its TLS certificate names the server that answered)', async () => {
      /** The control plane behind one new connection through the balancer: its API server certificate's DNS names include the node's. */
      const answeredBy = () =>
        new Promise<string>((resolve, reject) => {
          const socket = connect({ host: ip(lab, 'balancer'), port: 6443, rejectUnauthorized: false, timeout: 5000 }, () => {
            const names = socket.getPeerCertificate().subjectaltname ?? '';
            socket.end();
            resolve(masters.find((m) => names.split(', ').includes(`DNS:${m}`)) ?? names);
          });
          socket.on('error', reject);
          socket.on('timeout', () => socket.destroy(new Error('timeout')));
        });
      const round = async (n: number) => {
        const seen: string[] = [];
        for (let i = 0; i < n; i++) seen.push(await answeredBy());
        return seen;
      };
      await until('haproxy to see every API server up', 60_000, async () => new Set(await round(6)).size === 3);
      const downs = async () => Number((await sh(lab, 'balancer', "journalctl -u haproxy -o cat --no-pager | grep -c 'Server kubernetes-master-nodes/master1 is DOWN' || true")).trim());
      const before = await downs();
      // Stop master1's API server the way one stops a static Pod: its manifest out of the kubelet's directory.
      await sh(lab, 'master1', 'mkdir -p /root/parked && mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/parked/');
      await until('haproxy to take master1 out (3 failed checks)', 60_000, async () => (await downs()) > before);
      const seen = await round(9);
      expect(seen.filter((m) => m === 'master1')).to.deep.equal([]);
      expect(new Set(seen)).to.deep.equal(new Set(['master2', 'master3']));
      await sh(lab, 'master1', 'mv /root/parked/kube-apiserver.yaml /etc/kubernetes/manifests/');
      await until('master1 back behind haproxy', 60_000, async () => (await round(6)).includes('master1'));
    });
  });

  describe('stacked-ha.ts, keepalived VIP (inventory/ha-vip.yaml, seed 004)', () => {
    let lab: LabState;
    let args: string[];
    let check: string;
    let vip: string;
    const cps = ['node1', 'node2', 'node3'];

    before(async () => {
      const shape = await labShapeFor('inventory/ha-vip.yaml');
      vip = String(shape[0]!.vars!.vip_address);
      lab = await withLab(shape);
      await installKubernetesStandIns(lab);
      args = ['run', 'playbooks/stacked-ha.ts', '-i', lab.inventoryPath, '-e', `cni_manifest_url=${LAB_CNI_URL}`, '--json'];
    });

    /** The control planes that hold the VIP now. */
    const holders = async () => (await Promise.all(cps.map(async (n) => ((await sh(lab, n, 'ip -o -4 addr show')).includes(` inet ${vip}/`) ? n : null)))).filter((n): n is string => n !== null);
    /** GET https://VIP:8888/healthz from this machine: the body, or the error. */
    const healthz = () =>
      new Promise<string>((resolve) => {
        const req = request({ host: vip, port: 8888, path: '/healthz', rejectUnauthorized: false, timeout: 3000 }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
        });
        req.on('error', (e) => resolve(`error ${e.message}`));
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.end();
      });

    it('--check on fresh hosts lists every change and writes nothing', async () => {
      const before = await hashes(lab);
      const result = await capstan([...args, '--check']);
      expect(result.code, result.stderr).to.equal(0);
      expect(await hashes(lab)).to.deep.equal(before);
      check = result.stdout;
    });

    it('applies: names, haproxy 8888 → 6443 with /healthz checks and keepalived on every control plane, the VIP as endpoint, all Ready', async () => {
      const started = Date.now();
      const result = await capstan(args);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      logSummary('stacked-ha (VIP)', result.stdout, started);
      expectCheckListedEveryChange(check, result.stdout);
      const servers = cps.map((name) => ({ name, address: ip(lab, name), port: 6443 }));
      expect(await sh(lab, 'node2', 'cat /etc/haproxy/haproxy.cfg')).to.equal(renderHaproxyConfig({ bind: '*:8888', check: 'healthz', servers }));
      expect(await sh(lab, 'node2', 'cat /etc/keepalived/keepalived.conf; stat -c "%a %U" /etc/keepalived/keepalived.conf')).to.equal(
        `${renderKeepalivedConfig({ vip, port: 8888, interface: 'eth0', authPass: 'ZqSj#f1G' })}640 root\n`,
      );
      expect(await sh(lab, 'node2', 'cat /etc/keepalived/check_apiserver.sh; stat -c "%a %U" /etc/keepalived/check_apiserver.sh')).to.equal(`${renderCheckScript({ vip, port: 8888 })}755 root\n`);
      expect(await sh(lab, 'node4', "hostname; getent -s files hosts node1.internal k8s-cp.internal | awk '{ print $1, $2 }'")).to.equal(`node4.internal\n${ip(lab, 'node1')} node1.internal\n${vip} k8s-cp.internal\n`);
      expect(await sh(lab, 'node1', 'grep controlPlaneEndpoint /etc/kubernetes/kubeadm-config.yaml')).to.equal(`controlPlaneEndpoint: ${vip}:8888\n`);
      expect(await nodesReady(lab, 'node3')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready', 'node4.internal Ready', 'node5.internal Ready']);
      expect(await holders()).to.have.length(1);
      expect(await healthz()).to.equal('200 ok');
    });

    it('a second run changes nothing', async () => {
      const result = await capstan(args);
      expect(result.code, result.stderr).to.equal(0);
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('status.ts on this cluster: every control plane ready, one holding the VIP, haproxy active on each, etcd three healthy members; nothing changed', async () => {
      const result = await capstan(['run', 'playbooks/status.ts', '-i', lab.inventoryPath, '--json']);
      expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
      const [holder] = await holders();
      const reports = eventsOf(result.stdout).filter((e) => e.type === 'report') as unknown as { title: string; columns: string[]; rows: string[][] }[];
      const table = (title: string) => reports.find((r) => r.title === title)!;
      expect(reports.map((r) => r.title)).to.deep.equal(['Nodes', 'Control planes', 'etcd members', 'Certificates', 'Join tokens']);
      expect(table('Nodes').rows.map((r) => `${r[0]} ${r[3]}`)).to.deep.equal(lab.hosts.map((h) => `${h.name}.internal Ready`));
      expect([table('Control planes').columns, table('Control planes').rows]).to.deep.equal([
        ['HOST', 'READYZ', `VIP ${vip}`, 'HAPROXY'],
        cps.map((name) => [name, 'ok', name === holder ? 'holds it' : '-', 'active']),
      ]);
      expect(table('etcd members').rows.map((r) => [r[0], r[4]]).sort()).to.deep.equal(cps.map((name) => [`${name}.internal`, 'healthy']));
      expectNothingChanged(result.stdout, lab.hosts.map((h) => h.name));
    });

    it('the VIP moves when its holder\'s keepalived stops, the API stays reachable through it, and the old holder does not take it back (nopreempt)', async () => {
      const [first] = await holders();
      await sh(lab, first!, 'systemctl stop keepalived');
      const started = Date.now();
      const [second] = await until('another control plane to take the VIP', 30_000, async () => {
        const now = await holders();
        return now.length === 1 && now[0] !== first ? now : undefined;
      });
      console.log(`      [playbooks] VIP ${vip} moved from ${first} to ${second} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(await until('the API through the VIP', 15_000, async () => ((await healthz()) === '200 ok' ? 'ok' : undefined))).to.equal('ok');
      // Every node has priority 100, and VRRP never preempts on a tie: the old holder comes back with a
      // higher one (150), so that without nopreempt it WOULD take the VIP back on the first
      // advertisement it hears. It stays BACKUP: asserted from keepalived's own VRRP counters after it
      // has heard the holder's advertisements, and from its state changes in the journal — no sleep.
      const conf = '/etc/keepalived/keepalived.conf';
      await sh(lab, first!, `sed -i 's/^    priority 100$/    priority 150/' ${conf} && grep -qx '    priority 150' ${conf}`);
      const cursor = /^-- cursor: (.+)$/m.exec(await sh(lab, first!, 'journalctl -u keepalived -n 0 --show-cursor --no-pager'))![1]!;
      try {
        await sh(lab, first!, 'systemctl start keepalived');
        const stats = await until('the restarted keepalived to hear 3 of the holder\'s advertisements', 30_000, async () => {
          const text = await sh(lab, first!, `rm -f /tmp/keepalived.stats; systemctl kill -s USR2 --kill-whom=main keepalived; for i in $(seq 50); do [ -s /tmp/keepalived.stats ] && break; sleep 0.1; done; cat /tmp/keepalived.stats`);
          const received = Number(/Advertisements:\s*\n\s*Received: (\d+)/.exec(text)?.[1] ?? 0);
          return received >= 3 ? text : undefined;
        });
        expect(/Became master: (\d+)/.exec(stats)?.[1]).to.equal('0');
        const states = await sh(lab, first!, `journalctl -u keepalived --after-cursor '${cursor}' -o cat --no-pager | grep -o 'Entering [A-Z]* STATE' || true`);
        expect(states.trim().split('\n')).to.deep.equal(['Entering BACKUP STATE']);
        expect(await holders()).to.deep.equal([second]);
        expect(await healthz()).to.equal('200 ok');
      } finally {
        await sh(lab, first!, `sed -i 's/^    priority 150$/    priority 100/' ${conf} && systemctl restart keepalived`);
      }
    });

    it('the check script gives the VIP up when the holder\'s haproxy stops answering', async () => {
      const [holder] = await holders();
      await sh(lab, holder!, 'systemctl stop haproxy');
      try {
        await until('the VIP to leave the node whose haproxy stopped', 30_000, async () => {
          const now = await holders();
          return now.length === 1 && now[0] !== holder ? now : undefined;
        });
        expect(await sh(lab, holder!, 'journalctl -u keepalived -o cat --no-pager | grep -c "Entering FAULT STATE"')).not.to.equal('0\n');
        expect(await until('the API through the VIP', 15_000, async () => ((await healthz()) === '200 ok' ? 'ok' : undefined))).to.equal('ok');
      } finally {
        await sh(lab, holder!, 'systemctl start haproxy');
      }
    });

    // Day 2 on the same cluster (issue: remove/replace a node): these run after the tests above.
    describe('remove-node.ts on this cluster, then a control plane replaced', () => {
      const removal = (nodes: string, ...extra: string[]) => ['run', 'playbooks/remove-node.ts', '-i', lab.inventoryPath, '-e', `node=${nodes}`, '-e', 'confirm=kubernetes', '--json', ...extra];
      const ETCDCTL = 'ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key';
      /** etcd's member names, as node1's member lists them. */
      const members = async () => (await sh(lab, 'node1', `${ETCDCTL} member list`)).split('\n').filter(Boolean).map((line) => line.split(', ')[2]).sort();
      const reportsOf = (stdout: string) => eventsOf(stdout).filter((e) => e.type === 'report') as unknown as { title: string; columns: string[]; rows: string[][] }[];
      /** "host task" of each task that changed, in the order the run finished them. */
      const changedInOrder = (stdout: string) => taskEvents(stdout).filter((e) => e.status === 'changed').map((e) => `${e.host} ${e.task}`);
      const servers = (...names: string[]) => names.map((name) => ({ name, address: ip(lab, name), port: 6443 }));

      it('refuses to remove every control plane before contacting any host (exit 1)', async () => {
        const result = await capstan(removal('node1,node2,node3'));
        expect(result.code, result.stderr).to.equal(1);
        expect(result.stderr).to.include('removing node1, node2, node3 would remove every control plane of the cluster (node1, node2, node3): refused, nothing was changed');
        expect(eventsOf(result.stdout).filter((e) => e.type === 'task' || e.type === 'play')).to.deep.equal([]);
      });

      it('--check shows the plan in order and every step pending; nothing is written, drained or cordoned', async () => {
        const before = await hashes(lab);
        const result = await capstan(removal('node4,node3', '--check'));
        expect(result.code, result.stderr).to.equal(0);
        expect(await hashes(lab)).to.deep.equal(before);
        const node3Member = (await sh(lab, 'node1', `${ETCDCTL} member list`)).split('\n').find((line) => line.includes(', node3.internal, '))!.split(', ')[0];
        expect(reportsOf(result.stdout)).to.deep.equal([
          {
            type: 'report',
            title: 'Removal plan, in order',
            columns: ['HOST', 'NODE', 'ROLE', 'IN CLUSTER', 'ETCD MEMBER', 'STEPS'],
            rows: [
              ['node4', 'node4.internal', 'worker', 'Ready', '-', 'drain, kubeadm reset + cleanup, delete node'],
              ['node3', 'node3.internal', 'control-plane', 'Ready', `${node3Member} (healthy)`, 'drain, load balancers without it, kubeadm reset + cleanup, etcd member remove, delete node'],
            ],
          },
        ]);
        const deleteNode3 = taskEvents(result.stdout).find((e) => e.task === 'remove-node-object:node3.internal')!;
        expect([deleteNode3.host, deleteNode3.status, deleteNode3.drift[0]!.pending]).to.deep.equal(['node1', 'changed', 'kubeadm reset on node3']);
        expect(await nodesReady(lab, 'node1')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready', 'node4.internal Ready', 'node5.internal Ready']);
      });

      it('removes a worker: drained, its host reset, its Node deleted, in that order; a second run changes nothing', async () => {
        const result = await capstan(removal('node4'));
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        const order = changedInOrder(result.stdout);
        expect(order.filter((t) => /remove-drain|kubeadm:reset|remove-node-object/.test(t))).to.deep.equal([
          'node1 remove-drain:node4.internal',
          'node4 kubeadm:reset',
          'node1 remove-node-object:node4.internal',
        ]);
        expect(await nodesReady(lab, 'node1')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready', 'node5.internal Ready']);
        expect(await sh(lab, 'node4', 'find /etc/kubernetes/manifests /etc/cni/net.d -mindepth 1 2>/dev/null; test -e /etc/kubernetes/kubelet.conf && echo kubelet.conf; systemctl is-active kubelet || true')).to.equal('inactive\n');
        const again = await capstan(removal('node4'));
        expect(again.code, again.stderr).to.equal(0);
        expectNothingChanged(again.stdout, ['node1', 'node4']);
      });

      it('removes a worker that is down from the cluster, and ends with exit 4 saying its host was not cleaned', async () => {
        await stopHost('node5');
        const result = await capstan(removal('node5'));
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(4);
        const [plan, uncleaned] = reportsOf(result.stdout);
        expect(plan!.rows).to.deep.equal([['node5', 'node5.internal', 'worker', 'Ready', '-', 'host unreachable: not drained, not cleaned, delete node']]);
        expect(uncleaned!.title).to.equal('Removed from the cluster, hosts NOT cleaned (they did not answer)');
        expect(uncleaned!.rows.map((row) => row.slice(0, 2))).to.deep.equal([['node5', 'node5.internal']]);
        expect(changedInOrder(result.stdout)).to.deep.equal(['node1 remove-node-object:node5.internal']);
        expect(await nodesReady(lab, 'node1')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready']);
      });

      it('removes a control plane of three: etcd keeps two members, haproxy everywhere else without it, its VIP services stopped, the API answers through the VIP', async () => {
        const result = await capstan(removal('node3'));
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        expect(await members()).to.deep.equal(['node1.internal', 'node2.internal']);
        for (const host of ['node1', 'node2']) expect(await sh(lab, host, 'cat /etc/haproxy/haproxy.cfg'), host).to.equal(renderHaproxyConfig({ bind: '*:8888', check: 'healthz', servers: servers('node1', 'node2') }));
        expect(await sh(lab, 'node3', 'systemctl is-active keepalived haproxy kubelet || true; systemctl is-enabled keepalived haproxy || true')).to.equal('inactive\ninactive\ninactive\ndisabled\ndisabled\n');
        expect(await holders()).to.have.length(1);
        expect(await holders()).not.to.include('node3');
        expect(await until('the API through the VIP', 15_000, async () => ((await healthz()) === '200 ok' ? 'ok' : undefined))).to.equal('ok');
        expect(await nodesReady(lab, 'node1')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready']);
        const again = await capstan(removal('node3'));
        expect(again.code, again.stderr).to.equal(0);
        expectNothingChanged(again.stdout, ['node1', 'node2', 'node3']);
      });

      it('replaces it: the topology playbook run again joins node3 back (etcd three members, haproxy with it again)', async () => {
        const result = await capstan([...args, '-l', 'node1,node2,node3']);
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        expect(await members()).to.deep.equal(['node1.internal', 'node2.internal', 'node3.internal']);
        expect(await sh(lab, 'node1', 'cat /etc/haproxy/haproxy.cfg')).to.equal(renderHaproxyConfig({ bind: '*:8888', check: 'healthz', servers: servers('node1', 'node2', 'node3') }));
        expect(await sh(lab, 'node3', 'systemctl is-active keepalived haproxy kubelet')).to.equal('active\nactive\nactive\n');
        expect(await nodesReady(lab, 'node1')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready']);
      });

      it('refuses to remove a healthy control plane while another is down: etcd would lose quorum (exit 1, nothing changed)', async () => {
        await stopHost('node3');
        try {
          const result = await capstan(removal('node2'));
          expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(1);
          // With --json the refusal is the run's error event (stderr has only the closing lines).
          const errors = eventsOf(result.stdout).filter((e) => e.type === 'error').map((e) => (e as unknown as { message: string }).message);
          expect(errors).to.deep.equal([
            'remove-node refused (nothing was changed):\n  [etcd-quorum] removing node2 would leave etcd 1 healthy of 2 members, below its quorum of 2: the cluster would stop accepting writes. ' +
              'Not answering now: node3.internal (host node3) — bring them back, or remove them first (-e node=node3)',
          ]);
          expect(changedInOrder(result.stdout)).to.deep.equal([]);
          expect(await members()).to.deep.equal(['node1.internal', 'node2.internal', 'node3.internal']);
        } finally {
          await startHost('node3');
        }
      });

      it('removing the first control plane works through the next one; the topology playbook run unchanged then refuses to start a second cluster on it', async () => {
        await until('node3\'s etcd member to answer again', 60_000, async () => !(await sh(lab, 'node1', `${ETCDCTL} endpoint health --cluster 2>&1`)).includes('unhealthy'));
        const result = await capstan(removal('node1'));
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        expect(taskEvents(result.stdout).find((e) => e.task === 'remove-node-object:node1.internal')!.host).to.equal('node2');
        expect((await sh(lab, 'node2', `${ETCDCTL} member list`)).split('\n').filter(Boolean).map((line) => line.split(', ')[2]).sort()).to.deep.equal(['node2.internal', 'node3.internal']);
        // The refusal holds whatever the earlier plays would change (RefusalError): --check fails it too.
        const rerun = await capstan([...args, '--check', '-l', 'node1,node2,node3']);
        expect(rerun.code, rerun.stdout.slice(-3000) + rerun.stderr).to.equal(2);
        const init = taskEvents(rerun.stdout).find((e) => e.host === 'node1' && e.task === 'kubeadm:init')!;
        expect(init.status).to.equal('failed');
        expect(init.message!.replace(/\(v1\.\d+\.\d+\)/, '(vX)')).to.equal(
          `check failed: a Kubernetes API server (vX) already answers at the control-plane endpoint ${vip}:8888, and node1 has no control plane: ` +
            'kubeadm init here would start a second cluster behind it. If node1 was removed from that cluster, put a control plane of the running cluster first in the control_plane group, so node1 joins it',
        );
      });

      it('and replaced: with another control plane listed first, the topology playbook joins node1 back (three members, Ready)', async () => {
        // README, "Removing and replacing nodes": kubeadm init runs on the first control_plane host, so the
        // running cluster's control plane goes first and the replaced one joins it.
        const inventory = parse(readFileSync(lab.inventoryPath, 'utf8')) as { all: { children: { control_plane: { hosts: Record<string, unknown> } } } };
        const cpHosts = inventory.all.children.control_plane.hosts;
        inventory.all.children.control_plane.hosts = { node2: cpHosts.node2, node3: cpHosts.node3, node1: cpHosts.node1 };
        const reordered = join(lab.dir, 'inventory-node2-first.yaml');
        writeFileSync(reordered, stringify(inventory));
        const result = await capstan(['run', 'playbooks/stacked-ha.ts', '-i', reordered, '-e', `cni_manifest_url=${LAB_CNI_URL}`, '--json', '-l', 'node1,node2,node3']);
        expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
        expect(changedInOrder(result.stdout).filter((t) => /kubeadm:(init|join)/.test(t))).to.deep.equal(['node1 kubeadm:join']);
        expect((await sh(lab, 'node2', `${ETCDCTL} member list`)).split('\n').filter(Boolean).map((line) => line.split(', ')[2]).sort()).to.deep.equal(['node1.internal', 'node2.internal', 'node3.internal']);
        expect(await nodesReady(lab, 'node2')).to.deep.equal(['node1.internal Ready', 'node2.internal Ready', 'node3.internal Ready']);
      });
    });
  });
});

/** A playbook's tables: its `report` events in --json, in order. */
function reportsOf(stdout: string): { title: string; columns: string[]; rows: string[][] }[] {
  return eventsOf(stdout).filter((e) => e.type === 'report').map((e) => ({ title: String(e.title), columns: e.columns as string[], rows: e.rows as string[][] }));
}
