/**
 * kubeadm's certificates: reading their lifetimes, renewing them before they expire, and the
 * restart of the control plane that makes the components use the new ones.
 *
 * kubeadm issues every leaf certificate for one year ("Certificate Management with kubeadm"):
 * a cluster nobody upgraded for a year stops. `kubeadm certs renew all` re-issues them (CAs stay,
 * ten years), and the docs' next step is to restart the static Pods by moving their manifests out
 * of /etc/kubernetes/manifests and back, since the kubelet stops a Pod whose manifest went away.
 */
import { defineTask, raw, sh, type ApplyContext, type CheckContext, type Command, type Drift, type Task, type TaskOptions } from '../runner/index.js';
import {
  expiringWithin,
  formatExpiry,
  lifetimeFromEndDate,
  parseCheckExpiration,
  parseOpensslEndDate,
  type CertificateLifetime,
  type HostCertificates,
} from './certs-parse.js';

export const KUBELET_CLIENT_CERT = '/var/lib/kubelet/pki/kubelet-client-current.pem';
export const MANIFESTS_DIR = '/etc/kubernetes/manifests';
/** Where a renewal keeps the control plane's manifests while the kubelet stops its Pods (not a directory the kubelet reads). */
export const MANIFESTS_HOLD_DIR = '/etc/kubernetes/capstan-manifests-restarting';
const CONTROL_PLANE_MANIFESTS = ['etcd.yaml', 'kube-apiserver.yaml', 'kube-controller-manager.yaml', 'kube-scheduler.yaml'];
const KUBEADM_CA = '/etc/kubernetes/pki/ca.crt';
/** A control plane's: workers have kubeadm's CA certificate too, never the API server's. */
const KUBEADM_APISERVER_CERT = '/etc/kubernetes/pki/apiserver.crt';

/**
 * One read-only command: `kubeadm certs check-expiration` on a control plane (it has apiserver.crt),
 * the kubelet client certificate's end date, and the host's clock, in marked sections.
 */
export const READ_CERTIFICATES: Command = sh`echo '## now'; date -u +%s
if [ -e ${KUBEADM_APISERVER_CERT} ]; then echo '## kubeadm'; kubeadm certs check-expiration 2>&1 || echo "## kubeadm failed $?"; fi
if [ -e ${KUBELET_CLIENT_CERT} ]; then echo '## kubelet'; openssl x509 -noout -enddate -in ${KUBELET_CLIENT_CERT} 2>&1; fi; true`;

/** Certificates outside kubeadm's layout (the hard way's), read with openssl. */
export interface CertificateFiles {
  /** PEM certificate files (never a key: only `openssl x509` reads them). */
  files?: readonly string[];
  /** Kubeconfigs whose embedded client certificate (`client-certificate-data`) is read; the key beside it is never touched. */
  kubeconfigs?: readonly string[];
}

const X509_FIELDS = '-noout -enddate -subject -issuer -nameopt RFC2253';

/**
 * READ_CERTIFICATES, then a marked section per certificate file and per kubeconfig's client
 * certificate (`## file PATH`, `## kubeconfig PATH`, `## missing PATH`): one command, one round trip.
 */
export function readCertificatesCommand(p: CertificateFiles = {}): Command {
  if (!p.files?.length && !p.kubeconfigs?.length) return READ_CERTIFICATES;
  return sh`${READ_CERTIFICATES}
for f in ${p.files ?? []}; do if [ -e "$f" ]; then echo "## file $f"; openssl x509 ${raw(X509_FIELDS)} -in "$f" 2>&1; else echo "## missing $f"; fi; done
for f in ${p.kubeconfigs ?? []}; do if [ -e "$f" ]; then echo "## kubeconfig $f"; sed -n 's/^ *client-certificate-data: *//p' "$f" | head -n 1 | base64 -d 2>&1 | openssl x509 ${raw(X509_FIELDS)} 2>&1; else echo "## missing $f"; fi; done; true`;
}

/** One `openssl x509 -enddate -subject -issuer` reading: a CA is self-issued, a leaf names its issuer's CN (pure). */
function fileLifetime(name: string, text: string, now: Date): CertificateLifetime {
  const subject = /^subject=(.*)$/m.exec(text)?.[1];
  const issuer = /^issuer=(.*)$/m.exec(text)?.[1];
  if (subject === undefined || issuer === undefined || !/^notAfter=/m.test(text)) {
    throw new Error(`could not read the certificate ${name}: ${text.trim().split('\n').slice(-2).join(' ') || 'no output'}`);
  }
  const lifetime = lifetimeFromEndDate(name, parseOpensslEndDate(text), now);
  if (subject === issuer) return lifetime;
  return { ...lifetime, authority: /(?:^|,)CN=([^,]+)/.exec(issuer)?.[1] ?? issuer };
}

/** READ_CERTIFICATES' (or {@link readCertificatesCommand}'s) output, split and parsed (pure). */
export function parseReadCertificates(host: string, output: string): HostCertificates {
  const sections = new Map<string, string>();
  let current = '';
  for (const line of output.split('\n')) {
    const mark = /^## (now|kubeadm|kubelet|file|kubeconfig|missing)(?: (\S+))?$/.exec(line);
    if (mark) sections.set((current = mark[2] ? `${mark[1]} ${mark[2]}` : mark[1]!), '');
    else if (current) sections.set(current, `${sections.get(current)}${line}\n`);
  }
  const failed = /^## kubeadm failed (\d+)$/m.exec(output);
  if (failed) throw new Error(`kubeadm certs check-expiration failed (exit ${failed[1]}): ${(sections.get('kubeadm') ?? '').trim().split('\n').slice(-3).join(' ')}`);
  const now = new Date(Number((sections.get('now') ?? '').trim()) * 1000);
  if (Number.isNaN(now.getTime())) throw new Error(`could not read the host's clock: '${sections.get('now') ?? ''}'`);
  const result: HostCertificates = { host };
  if (sections.has('kubeadm')) result.kubeadm = parseCheckExpiration(sections.get('kubeadm')!);
  if (sections.has('kubelet')) result.kubeletClient = lifetimeFromEndDate('kubelet-client', parseOpensslEndDate(sections.get('kubelet')!), now);
  const files: CertificateLifetime[] = [];
  for (const [key, text] of sections) {
    const [kind, path] = key.split(' ') as [string, string | undefined];
    if (!path) continue;
    if (kind === 'missing') files.push({ name: path, externallyManaged: false, missing: true });
    else files.push(fileLifetime(path, text, now));
  }
  if (files.length) result.files = files;
  return result;
}

async function readCertificatesOn(ctx: Pick<CheckContext, 'probe' | 'host'>, p: CertificateFiles = {}): Promise<HostCertificates> {
  const result = await ctx.probe(readCertificatesCommand(p));
  return parseReadCertificates(ctx.host.name, result.stdout);
}

/**
 * Reads a host's certificate lifetimes (read-only, never drifts): kubeadm's on a control plane, the
 * kubelet client certificate on every node, and the certificate files and kubeconfigs named (the
 * hard way's). Its values make the playbook's table ({@link certificateTable}).
 *
 * @example const read = readCertificates(); const result = await play('read certificates', 'all', [read]); result.value(read, 'cp1');
 * @example readCertificates({ files: ['/var/lib/kubernetes/ca.pem'], kubeconfigs: ['/var/lib/kubernetes/admin.kubeconfig'] })
 */
export function readCertificates(params: CertificateFiles = {}, options?: TaskOptions): Task<HostCertificates> {
  return defineTask<CertificateFiles, HostCertificates>(
    {
      kind: 'certificates',
      id: () => 'certificates:read',
      title: (p) => (p.files?.length || p.kubeconfigs?.length ? 'read certificate lifetimes (files and kubeconfigs)' : 'read certificate lifetimes'),
      validate: (p) => {
        for (const path of [...(p.files ?? []), ...(p.kubeconfigs ?? [])]) if (!/^\/\S+$/.test(path)) throw new Error(`certificate paths must be absolute, without blanks: ${JSON.stringify(path)}`);
      },
      probes: (p) => [{ kind: 'exec', command: readCertificatesCommand(p) }],
      check: async () => [],
      apply: async () => undefined,
      result: (ctx, p) => readCertificatesOn(ctx, p),
    },
    params,
    options,
  );
}

/** What {@link warnExpiringCertificates} found: kubeadm certificates expiring soon, or why they could not be read. */
export interface ExpiryWarning {
  expiring: CertificateLifetime[];
  unreadable?: string;
}

/** The warning line for the operator, or nothing when all is well (pure). */
export function expiryWarningText(found: ExpiryWarning, withinDays: number): string | undefined {
  if (found.unreadable) return `WARNING: could not read the kubeadm certificates' lifetimes: ${found.unreadable}`;
  if (found.expiring.length === 0) return undefined;
  return `WARNING: ${found.expiring.map((c) => `${c.name} (${c.residual})`).join(', ')} expire${found.expiring.length === 1 ? 's' : ''} within ${withinDays} day${withinDays === 1 ? '' : 's'}: ` +
    'renew with capstan run playbooks/certs.ts -e renew=true';
}

/**
 * A warning, never a failure: kubeadm certificates on this host that expire within `withinDays`
 * (default 30), shown beside the task, which is in sync either way (so is a host kubeadm has not
 * set up, and one whose lifetimes cannot be read: that is said, not failed). For preflights.
 *
 * @example await play('preflight', 'all', [warnExpiringCertificates({ withinDays: 30 })]);
 */
export function warnExpiringCertificates(params: { withinDays?: number } = {}, options?: TaskOptions): Task<ExpiryWarning> {
  return defineTask<{ withinDays?: number }, ExpiryWarning>(
    {
      kind: 'certificates',
      id: () => 'certificates:expiry-warning',
      title: (p) => `kubeadm certificates valid for ${p.withinDays ?? 30} more days`,
      desired: () => 'read-only probe',
      probes: () => [{ kind: 'exec', command: READ_CERTIFICATES }],
      check: async () => [],
      apply: async () => undefined,
      async result(ctx, p) {
        try {
          return { expiring: expiringWithin((await readCertificatesOn(ctx)).kubeadm?.certificates ?? [], p.withinDays ?? 30) };
        } catch (error) {
          return { expiring: [], unreadable: error instanceof Error ? error.message : String(error) };
        }
      },
      report: (found, p) => expiryWarningText(found, p.withinDays ?? 30),
    },
    params,
    options,
  );
}

export interface RenewCertificatesParams {
  /** Renew when a kubeadm certificate expires within this many days (default 30). */
  withinDays?: number;
  /** Renew whatever the lifetimes (`-e renew=force`): every run changes. */
  force?: boolean;
  /** How long the API server may take to answer /readyz after the restart, in seconds (default 300). */
  readyTimeoutSeconds?: number;
}

/** The API server's address and port from its static Pod manifest (kubeadm's own flags), for /readyz (pure). */
export function apiserverEndpoint(manifest: string): { address: string; port: number } {
  const address = /--advertise-address=(\S+)/.exec(manifest)?.[1];
  const port = Number(/--secure-port=(\d+)/.exec(manifest)?.[1] ?? 6443);
  if (!address) throw new Error(`no --advertise-address in ${MANIFESTS_DIR}/kube-apiserver.yaml`);
  return { address: address.replace(/^["']|["']$/g, ''), port };
}

/** The ports the control plane's components listen on: API server, etcd client, controller manager, scheduler. */
function componentPorts(apiserverPort: number): number[] {
  return [apiserverPort, 2379, 10257, 10259];
}

/** Which of `ports` have a listening TCP socket, from `ss -Hltn` (pure). */
export function listeningPorts(ssOutput: string, ports: readonly number[]): number[] {
  const open = new Set<number>();
  for (const line of ssOutput.split('\n')) {
    const local = line.trim().split(/\s+/)[3]; // State Recv-Q Send-Q Local:Port Peer:Port
    if (local) open.add(Number(local.slice(local.lastIndexOf(':') + 1)));
  }
  return ports.filter((port) => open.has(port));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(ctx: ApplyContext, what: string, timeoutSeconds: number, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutSeconds} s waiting for ${what}`);
    await sleep(1000);
  }
}

/**
 * The kubeadm documentation's restart of static Pods: manifests out of the kubelet's directory,
 * wait until the kubelet has stopped the components (their ports closed), manifests back, wait
 * until they listen again and the API server's /readyz says ok.
 */
async function restartControlPlane(ctx: ApplyContext, readyTimeoutSeconds: number): Promise<void> {
  const manifest = (await ctx.readText(`${MANIFESTS_DIR}/kube-apiserver.yaml`)) ?? (await ctx.readText(`${MANIFESTS_HOLD_DIR}/kube-apiserver.yaml`));
  if (manifest === null) throw new Error(`no kube-apiserver manifest in ${MANIFESTS_DIR}: is this a kubeadm control plane?`);
  const { address, port } = apiserverEndpoint(manifest);
  const ss = async () => (await ctx.exec(sh`ss -Hltn`)).stdout;
  const wasListening = listeningPorts(await ss(), componentPorts(port));
  const present = (await ctx.exec(sh`cd ${MANIFESTS_DIR} && ls ${CONTROL_PLANE_MANIFESTS} 2>/dev/null; true`)).stdout.split('\n').filter(Boolean);
  ctx.log(`moving ${present.join(', ')} out of ${MANIFESTS_DIR}; listening before: ${wasListening.join(', ')}`);
  if (present.length) {
    await ctx.run(sh`mkdir -p -m 0700 ${MANIFESTS_HOLD_DIR} && cd ${MANIFESTS_DIR} && mv ${present} ${MANIFESTS_HOLD_DIR}/`);
    try {
      await waitFor(ctx, `the kubelet to stop the control plane's Pods (ports ${wasListening.join(', ')} closed)`, 120, async () => listeningPorts(await ss(), wasListening).length === 0);
    } catch (error) {
      await moveManifestsBack(ctx); // a kubelet that stops nothing would start nothing either: leave the node as it was
      throw error;
    }
  }
  await moveManifestsBack(ctx);
  await waitFor(ctx, `the control plane to listen again (ports ${wasListening.join(', ')})`, readyTimeoutSeconds, async () => listeningPorts(await ss(), wasListening).length === wasListening.length);
  const readyz = sh`curl -sS --max-time 5 --cacert ${KUBEADM_CA} ${`https://${address.includes(':') ? `[${address}]` : address}:${port}/readyz`}`;
  await waitFor(ctx, `https://${address}:${port}/readyz to answer ok`, readyTimeoutSeconds, async () => (await ctx.exec(readyz)).stdout.trim() === 'ok');
}

async function moveManifestsBack(ctx: ApplyContext): Promise<void> {
  await ctx.run(sh`if [ -d ${MANIFESTS_HOLD_DIR} ]; then cd ${MANIFESTS_HOLD_DIR} && for f in *.yaml; do [ -e "$f" ] && mv "$f" ${MANIFESTS_DIR}/; done; rmdir ${MANIFESTS_HOLD_DIR}; fi`);
}

/**
 * Renews this control plane's kubeadm certificates with `kubeadm certs renew all` when one expires
 * within `withinDays` (or always with `force`), then restarts its control-plane static Pods and
 * waits for the API server's /readyz: run it on one control plane at a time. Drift names each
 * certificate that expires soon, so `--check` is the list of what would be renewed. A renewal
 * interrupted while the manifests were moved out is finished by the next run (they are put back).
 *
 * @example await play('renew cp1', 'cp1', [renewCertificates({ withinDays: 30 })]); // one control plane per play
 */
export function renewCertificates(params: RenewCertificatesParams = {}, options?: TaskOptions): Task<void> {
  return defineTask<RenewCertificatesParams>(
    {
      kind: 'certificates',
      id: () => 'certificates:renew',
      title: (p) => (p.force ? 'kubeadm certs renew all (forced)' : `kubeadm certs renewed before ${p.withinDays ?? 30} days from expiry`),
      validate: (p) => {
        if (p.withinDays !== undefined && !(Number.isInteger(p.withinDays) && p.withinDays >= 0 && p.withinDays < 365)) throw new Error('withinDays must be a whole number of days from 0 to 364');
        if (p.readyTimeoutSeconds !== undefined && !(p.readyTimeoutSeconds > 0)) throw new Error('readyTimeoutSeconds must be positive');
      },
      probes: () => [{ kind: 'exec', command: READ_CERTIFICATES }, { kind: 'stat', path: MANIFESTS_HOLD_DIR }],
      // After a forced renewal nothing is left to renew, but force drifts on every check.
      verify: (p) => !p.force,
      async check(ctx, p) {
        const drift: Drift[] = [];
        if (await ctx.stat(MANIFESTS_HOLD_DIR)) drift.push({ subject: 'control-plane manifests', current: `in ${MANIFESTS_HOLD_DIR} (a restart was interrupted)`, desired: `in ${MANIFESTS_DIR}` });
        const kubeadm = (await readCertificatesOn(ctx)).kubeadm;
        if (!kubeadm) throw new Error(`${KUBEADM_APISERVER_CERT} is missing: not a kubeadm control plane`);
        const due = p.force ? kubeadm.certificates.filter((c) => !c.missing && !c.externallyManaged) : expiringWithin(kubeadm.certificates, p.withinDays ?? 30);
        for (const c of due) drift.push({ subject: `certificate ${c.name}`, current: `expires ${formatExpiry(c.expires!)} (${c.residual})`, desired: 'renewed for one year' });
        return drift;
      },
      async apply(ctx, p, drift) {
        if (drift.some((d) => d.subject.startsWith('certificate '))) {
          const renewed = await ctx.run(sh`kubeadm certs renew all`);
          for (const line of renewed.stdout.split('\n').filter(Boolean)) ctx.log(line);
        }
        await restartControlPlane(ctx, p.readyTimeoutSeconds ?? 300);
      },
    },
    params,
    options,
  );
}
