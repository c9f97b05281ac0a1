import { defineTask, sh, type CheckContext, type Command, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ADMIN_CONF } from './kubeadm.js';

const kubectl = (args: ReturnType<typeof sh>) => sh`kubectl --kubeconfig=${ADMIN_CONF} ${args}`;

/** Runs a read-only kubectl query that must succeed; its stdout. */
async function query(ctx: CheckContext, args: ReturnType<typeof sh>): Promise<string> {
  const result = await ctx.probe(kubectl(args));
  if (result.code !== 0) throw new Error(`kubectl ${args.display} failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  return result.stdout;
}

/** "name=Ready name2=NotReady" lines from `kubectl get nodes -o jsonpath` (pure). */
export function parseNodeReadiness(text: string): Map<string, boolean> {
  const nodes = new Map<string, boolean>();
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [name, ready] = line.split(' ');
    if (name) nodes.set(name, ready === 'True');
  }
  return nodes;
}

const READY_JSONPATH = `{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}`;
const TAINT_KEY = 'node-role.kubernetes.io/control-plane';
const TAINTS_JSONPATH = `{range .items[*]}{.metadata.name}{" "}{.spec.taints[*].key}{"\\n"}{end}`;

/**
 * Removes the control-plane NoSchedule taint from every node (seed 002:
 * `kubectl taint nodes --all node-role.kubernetes.io/control-plane-`), so a small cluster schedules
 * workloads on its control planes. Run with `runOnce` on a control plane.
 *
 * @example untaintControlPlanes()
 */
export function untaintControlPlanes(options?: TaskOptions): Task<void> {
  return defineTask<Record<string, never>>(
    {
      kind: 'untaint',
      id: () => 'untaint-control-planes',
      title: () => 'control planes schedulable (no control-plane taint)',
      async check(ctx) {
        const tainted = (await query(ctx, sh`get nodes -o ${`jsonpath=${TAINTS_JSONPATH}`}`))
          .split('\n')
          .filter((l) => l.split(' ').slice(1).includes(TAINT_KEY))
          .map((l) => l.split(' ')[0]!);
        return tainted.length ? [{ subject: 'tainted nodes', current: tainted.join(', '), desired: 'none' }] : [];
      },
      async apply(ctx) {
        await ctx.run(kubectl(sh`taint nodes --all ${`${TAINT_KEY}-`}`));
      },
    },
    {},
    options,
  );
}

export interface WaitForNodesParams {
  /** How long to wait, in seconds (default 300). */
  timeoutSeconds?: number;
  /** How many nodes must exist and be Ready (default: all that are registered). */
  expected?: number;
}

/**
 * Waits until every node is Ready (after the CNI is up), like
 * `kubectl wait --for=condition=Ready nodes --all`. In sync when all are Ready already.
 *
 * @example waitForNodesReady({ timeoutSeconds: 300, expected: 3 })
 */
export function waitForNodesReady(params: PerHostParams<WaitForNodesParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<WaitForNodesParams>(
    {
      kind: 'nodes-ready',
      id: () => 'nodes-ready',
      title: (p) => `nodes Ready${p.expected ? ` (${p.expected})` : ''}`,
      validate: (p) => {
        if (p.timeoutSeconds !== undefined && !(p.timeoutSeconds > 0)) throw new Error('timeoutSeconds must be positive');
      },
      async check(ctx, p) {
        const nodes = parseNodeReadiness(await query(ctx, sh`get nodes -o ${`jsonpath=${READY_JSONPATH}`}`));
        const notReady = [...nodes].filter(([, ready]) => !ready).map(([name]) => name);
        const drift = [];
        if (notReady.length) drift.push({ subject: 'nodes not Ready', current: notReady.join(', '), desired: 'none' });
        if (p.expected !== undefined && nodes.size < p.expected) drift.push({ subject: 'nodes registered', current: String(nodes.size), desired: String(p.expected) });
        return drift;
      },
      async apply(ctx, p) {
        const deadline = Date.now() + (p.timeoutSeconds ?? 300) * 1000;
        for (;;) {
          const nodes = parseNodeReadiness((await ctx.run(kubectl(sh`get nodes -o ${`jsonpath=${READY_JSONPATH}`}`))).stdout);
          const ready = [...nodes.values()].filter(Boolean).length;
          if (ready === nodes.size && nodes.size >= (p.expected ?? 0)) return;
          if (Date.now() > deadline) throw new Error(`${ready} of ${nodes.size} nodes Ready after ${p.timeoutSeconds ?? 300} s`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      },
    },
    params,
    options,
  );
}

/**
 * Seed 002's smoke test: a DaemonSet, so every node must run one pod (seed 000's nginx as the
 * image), and a ClusterIP Service in front of those pods. It tolerates the control-plane taint, so
 * control planes are checked too even when they stay tainted.
 */
export const SMOKE_TEST_MANIFEST = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: capstan-smoke-nginx
  namespace: default
  labels:
    app: capstan-smoke-nginx
spec:
  selector:
    matchLabels:
      app: capstan-smoke-nginx
  template:
    metadata:
      labels:
        app: capstan-smoke-nginx
    spec:
      tolerations:
        - key: node-role.kubernetes.io/control-plane
          operator: Exists
          effect: NoSchedule
      containers:
        - name: nginx
          image: nginx:stable
          ports:
            - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: capstan-smoke-nginx
  namespace: default
  labels:
    app: capstan-smoke-nginx
spec:
  type: ClusterIP
  selector:
    app: capstan-smoke-nginx
  ports:
    - name: http
      port: 80
      targetPort: 80
`;

/** The smoke Service, the cluster DNS Service and the API's own Service, as namespace/name. */
export const SMOKE_SERVICE = 'default/capstan-smoke-nginx';
export const DNS_SERVICE = 'kube-system/kube-dns';
export const KUBERNETES_SERVICE = 'default/kubernetes';

/** One pod as the smoke test reads it. */
export interface PodState {
  name: string;
  node: string;
  phase: string;
  /** Every container ready (kubectl's READY column n/n with n > 0). */
  ready: boolean;
}

/** "name node phase ready…" lines (one `ready` per container) from {@link POD_STATE_JSONPATH} (pure). */
export function parsePodStates(text: string): PodState[] {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [name = '', node = '', phase = '', ...readies] = line.split(' ');
      const flags = readies.filter(Boolean);
      return { name, node, phase, ready: flags.length > 0 && flags.every((flag) => flag === 'true') };
    });
}

export const POD_STATE_JSONPATH = `{range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{" "}{.status.phase}{" "}{.status.containerStatuses[*].ready}{"\\n"}{end}`;
const NODE_NAMES_JSONPATH = `{range .items[*]}{.metadata.name}{"\\n"}{end}`;
export const SERVICES_JSONPATH = `{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.spec.clusterIP}{" "}{.spec.ports[*].port}{"\\n"}{end}`;

/** A Service as the smoke test reads it. */
export interface ServiceState {
  clusterIP: string;
  ports: number[];
}

/** "namespace name clusterIP port…" lines from {@link SERVICES_JSONPATH} → Services by namespace/name (pure). */
export function parseServices(text: string): Map<string, ServiceState> {
  const services = new Map<string, ServiceState>();
  for (const line of text.split('\n').filter((l) => l.trim())) {
    const [namespace = '', name = '', clusterIP = '', ...ports] = line.split(' ');
    services.set(`${namespace}/${name}`, { clusterIP, ports: ports.filter(Boolean).map(Number) });
  }
  return services;
}

/**
 * What the smoke test finds wrong, one line per problem naming the node (pure): a node without a
 * smoke pod, a smoke pod or a kube-system pod that is not Running and Ready. Empty when it passes.
 */
export function smokeTestFindings(nodes: readonly string[], smokePods: readonly PodState[], systemPods: readonly PodState[]): string[] {
  const findings: string[] = [];
  for (const node of nodes) {
    const pods = smokePods.filter((pod) => pod.node === node);
    if (!pods.length) findings.push(`node ${node}: no capstan-smoke-nginx pod`);
    for (const pod of pods) if (pod.phase !== 'Running' || !pod.ready) findings.push(`node ${node}: pod ${pod.name} ${pod.phase}${pod.ready ? '' : ', not Ready'}`);
  }
  for (const pod of systemPods) {
    if (pod.phase !== 'Running' || !pod.ready) findings.push(`node ${pod.node || '(unscheduled)'}: kube-system pod ${pod.name} ${pod.phase}${pod.ready ? '' : ', not Ready'}`);
  }
  return findings;
}

/** The address a Service answers on: its ClusterIP and first port; undefined without one (pure). */
export function serviceAddress(service: ServiceState | undefined): { ip: string; port: number } | undefined {
  if (!service || !service.clusterIP || service.clusterIP === 'None' || !service.ports.length) return undefined;
  return { ip: service.clusterIP, port: service.ports[0]! };
}

/** What nginx's default page has (the smoke pods' answer through the Service). */
export const NGINX_WELCOME = '<title>Welcome to nginx!</title>';

/** curl of the smoke Service's ClusterIP from the node: at most 5 s, the body on stdout, curl's error on stderr. */
export function httpProbe(ip: string, port: number): Command {
  return sh`curl -sS --max-time 5 ${`http://${ip}:${port}/`}`;
}

/** The finding for the answer (or none) the smoke Service gave to curl on `node`; undefined when nginx answered (pure). */
export function httpFinding(node: string, url: string, result: { code: number | null; stdout: string; stderr: string }): string | undefined {
  if (result.code === 0 && result.stdout.includes(NGINX_WELCOME)) return undefined;
  const why = result.code === 0 ? 'the answer is not nginx\'s page' : result.stderr.trim().split('\n').pop() || `curl exit ${result.code}`;
  return `node ${node}: service ${SMOKE_SERVICE} at ${url} does not answer: ${why}`;
}

/**
 * A DNS A query over UDP in Python 3's standard library (nodes have no dig by default): prints
 * `rcode N`, then `A address` per answer, or `error …` when nothing came back within 3 s.
 */
export const DNS_QUERY_SCRIPT = `import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
qid = random.randrange(65536)
question = b''.join(bytes([len(label)]) + label.encode() for label in name.rstrip('.').split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
try:
    s.sendto(struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0) + question, (server, 53))
    reply = s.recv(4096)
except OSError as error:
    print('error', error or 'timed out')
    sys.exit(0)
rid, flags, qdcount, ancount = struct.unpack('>HHHH', reply[:8])
if rid != qid:
    print('error the reply has another id')
    sys.exit(0)
print('rcode', flags & 15)
def skip(offset):
    while reply[offset]:
        if reply[offset] >= 192:
            return offset + 2
        offset += reply[offset] + 1
    return offset + 1
offset = 12
for _ in range(qdcount):
    offset = skip(offset) + 4
for _ in range(ancount):
    offset = skip(offset)
    rtype, rclass, ttl, length = struct.unpack('>HHIH', reply[offset:offset + 10])
    offset += 10
    if rtype == 1:
        print('A', socket.inet_ntoa(reply[offset:offset + 4]))
    offset += length
`;

/** Asks the DNS server at `server` for the A records of `name`, from the node (see {@link DNS_QUERY_SCRIPT}). */
export function dnsProbe(server: string, name: string): Command {
  return sh`python3 -c ${DNS_QUERY_SCRIPT} ${server} ${name}`;
}

const RCODES: Record<string, string> = { '0': 'NOERROR', '1': 'FORMERR', '2': 'SERVFAIL', '3': 'NXDOMAIN', '5': 'REFUSED' };

/**
 * The finding for cluster DNS on `node` (pure): `name` must resolve at `server` to exactly `want`
 * (the kubernetes Service's ClusterIP); undefined when it does.
 */
export function dnsFinding(node: string, server: string, name: string, want: string, result: { code: number | null; stdout: string; stderr: string }): string | undefined {
  const prefix = `node ${node}: cluster DNS ${server} does not resolve ${name} to ${want}`;
  if (result.code !== 0) return `${prefix}: ${result.stderr.trim().split('\n').pop() || `exit ${result.code}`}${result.code === 127 ? ' (the DNS check needs python3 on the node)' : ''}`;
  const lines = result.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => l.startsWith('error '));
  if (error) return `${prefix}: ${error.slice(6)}`;
  const rcode = lines.find((l) => l.startsWith('rcode '))?.slice(6) ?? '?';
  const addresses = lines.filter((l) => l.startsWith('A ')).map((l) => l.slice(2));
  if (rcode === '0' && addresses.length === 1 && addresses[0] === want) return undefined;
  return `${prefix}: ${RCODES[rcode] ?? `rcode ${rcode}`}${addresses.length ? `, answered ${addresses.join(', ')}` : ', no address'}`;
}

/** The cluster domain the kubelet gives pods (`clusterDomain` in its config; Kubernetes' default cluster.local) (pure). */
export function clusterDomain(kubeletConfig: string | null): string {
  const match = kubeletConfig?.match(/^clusterDomain:\s*["']?([A-Za-z0-9.-]+)["']?\s*$/m);
  return match?.[1]?.replace(/\.$/, '') || 'cluster.local';
}

export const KUBELET_CONFIG = '/var/lib/kubelet/config.yaml';

/**
 * Reads the nodes, the smoke pods, the kube-system pods and the Services, then asks the smoke Service
 * over HTTP and cluster DNS for `kubernetes.default` from this node; returns every finding.
 */
async function smokeTestState(ctx: CheckContext): Promise<string[]> {
  const node = ctx.host.name;
  const nodes = (await query(ctx, sh`get nodes -o ${`jsonpath=${NODE_NAMES_JSONPATH}`}`)).split('\n').map((n) => n.trim()).filter(Boolean);
  const smokePods = parsePodStates(await query(ctx, sh`get pods -n default -l app=capstan-smoke-nginx -o ${`jsonpath=${POD_STATE_JSONPATH}`}`));
  const systemPods = parsePodStates(await query(ctx, sh`get pods -n kube-system -o ${`jsonpath=${POD_STATE_JSONPATH}`}`));
  const services = parseServices(await query(ctx, sh`get services -A -o ${`jsonpath=${SERVICES_JSONPATH}`}`));
  const findings = smokeTestFindings(nodes, smokePods, systemPods);
  const web = serviceAddress(services.get(SMOKE_SERVICE));
  if (!web) findings.push(`node ${node}: no ClusterIP Service ${SMOKE_SERVICE}`);
  else {
    const finding = httpFinding(node, `http://${web.ip}:${web.port}/`, await ctx.probe(httpProbe(web.ip, web.port)));
    if (finding) findings.push(finding);
  }
  const dns = serviceAddress(services.get(DNS_SERVICE));
  const api = serviceAddress(services.get(KUBERNETES_SERVICE));
  if (!dns) findings.push(`node ${node}: no ClusterIP Service ${DNS_SERVICE} (cluster DNS)`);
  if (!api) findings.push(`node ${node}: no ClusterIP Service ${KUBERNETES_SERVICE}`);
  if (dns && api) {
    const name = `kubernetes.default.svc.${clusterDomain(await ctx.readText(KUBELET_CONFIG))}`;
    const finding = dnsFinding(node, dns.ip, name, api.ip, await ctx.probe(dnsProbe(dns.ip, name)));
    if (finding) findings.push(finding);
  }
  return findings;
}

/** "pod node" lines → pods per node (pure). */
export function podsPerNode(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const node = line.split(' ')[1] || '(unscheduled)';
    counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  return counts;
}

/**
 * Seed 002's check, and what the tutorials check by hand: a DaemonSet of nginx runs a Running,
 * Ready pod on every node; every kube-system pod is Running and Ready; a ClusterIP Service in front
 * of the nginx pods answers HTTP from this node (curl); and cluster DNS (the kube-dns Service)
 * resolves `kubernetes.default.svc.<cluster domain>` — what `kubernetes.default` expands to in a
 * pod — to the kubernetes Service's ClusterIP (a query from python3 on this node). Applies the
 * DaemonSet and the Service and waits; on timeout fails with one line per problem, naming the node.
 * In sync when all of that holds already (both are left in place, so a second run reports no change).
 * Runs on a control plane (`runOnce`); needs curl (node preparation installs it) and python3 there.
 *
 * @example smokeTest({ timeoutSeconds: 300 })
 */
export function smokeTest(params: PerHostParams<{ timeoutSeconds?: number }> = {}, options?: TaskOptions): Task<Record<string, number>> {
  return defineTask<{ timeoutSeconds?: number }, Record<string, number>>(
    {
      kind: 'smoke-test',
      id: () => 'smoke-test',
      title: () => 'smoke test: nginx on every node, kube-system Ready, a Service through its ClusterIP, cluster DNS',
      async check(ctx) {
        const findings = await smokeTestState(ctx);
        return findings.length ? [{ subject: 'smoke test', current: findings.join('\n'), desired: 'every node runs a Ready smoke pod, kube-system pods Ready, the Service answers, kubernetes.default resolves' }] : [];
      },
      async apply(ctx, p) {
        await ctx.run(kubectl(sh`apply -f -`), { stdin: SMOKE_TEST_MANIFEST });
        const timeout = p.timeoutSeconds ?? 300;
        const deadline = Date.now() + timeout * 1000;
        for (;;) {
          const findings = await smokeTestState(ctx);
          if (!findings.length) return;
          if (Date.now() > deadline) throw new Error(`smoke test failed after ${timeout} s:\n${findings.join('\n')}`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      },
      async result(ctx) {
        const pods = await ctx.probe(kubectl(sh`get pods -l app=capstan-smoke-nginx -o ${`jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{"\\n"}{end}`}`));
        return Object.fromEntries(podsPerNode(pods.stdout));
      },
    },
    params,
    options,
  );
}
