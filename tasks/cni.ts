import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, parseAllDocuments, type Document, type Scalar, type YAMLMap } from 'yaml';
import { defineTask, sh, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ADMIN_CONF, CA_CERT } from './kubeadm.js';

export type CniName = 'weave' | 'calico' | 'flannel' | 'cilium';

/**
 * Where each CNI's manifest comes from by default (pinned releases). Cilium ships no plain manifest
 * (it installs with Helm or its CLI): pass `manifestUrl` with one you rendered.
 */
export const CNI_MANIFESTS: Record<CniName, string | undefined> = {
  weave: 'https://github.com/weaveworks/weave/releases/download/v2.8.1/weave-daemonset-k8s-1.11.yaml',
  calico: 'https://raw.githubusercontent.com/projectcalico/calico/v3.29.1/manifests/calico.yaml',
  flannel: 'https://github.com/flannel-io/flannel/releases/download/v0.26.1/kube-flannel.yml',
  cilium: undefined,
};

/** Records which manifest (by hash) was applied, so a second run knows it is in sync. */
export const CNI_STAMP = '/etc/kubernetes/capstan-cni';

export interface CniParams {
  name: CniName;
  /** The pod network CIDR given to kubeadm init (seed default 10.10.0.0/16). */
  podCidr: string;
  /** Where to get the manifest: an https URL fetched by the controller (or file:/// on it), default CNI_MANIFESTS[name]. */
  manifestUrl?: string;
  /** The manifest's sha256 (hex), checked before it is patched or applied; default CNI_MANIFEST_SHA256[url]. */
  sha256?: string;
}

/**
 * sha256 of each default manifest (CNI_MANIFESTS), checked before the manifest is patched or applied.
 * Empty on purpose: no digest of these releases has been verified from here (upstream publishes none beside
 * the files), and an invented pin would be worse than none. Without a pin the run names the sha256 it
 * applied, so the user can pin it with `cni_manifest_sha256`.
 */
export const CNI_MANIFEST_SHA256: Readonly<Record<string, string>> = {};

/** A map node's child map/seq at `key`, or undefined. */
function child(node: unknown, key: string): unknown {
  return isMap(node) ? node.get(key, true) : undefined;
}

function stringAt(node: unknown, ...path: string[]): string | undefined {
  let current: unknown = node;
  for (const key of path) current = child(current, key);
  return isScalar(current) && typeof current.value === 'string' ? current.value : undefined;
}

/** Every resource of the manifest: each document's top-level map, and the items of a `kind: List` (weave's). */
function resources(docs: Document.Parsed[]): YAMLMap[] {
  const found: YAMLMap[] = [];
  for (const doc of docs) {
    const top = doc.contents;
    if (!isMap(top)) continue;
    const items = child(top, 'items');
    if (stringAt(top, 'kind') === 'List' && isSeq(items)) {
      for (const item of items.items) if (isMap(item)) found.push(item);
    } else {
      found.push(top);
    }
  }
  return found;
}

function resource(docs: Document.Parsed[], cni: CniName, kind: string, name: string): YAMLMap {
  const match = resources(docs).find((r) => stringAt(r, 'kind') === kind && stringAt(r, 'metadata', 'name') === name);
  if (!match) throw new Error(`the ${cni} manifest has no ${kind} ${name} to patch the pod CIDR into`);
  return match;
}

/** The container `name` of a workload's pod template (not its initContainers), or a clear error. */
function container(workload: YAMLMap, cni: CniName, kind: string, workloadName: string, name: string): YAMLMap {
  const containers = child(child(child(child(workload, 'spec'), 'template'), 'spec'), 'containers');
  const list = isSeq(containers) ? containers.items.filter(isMap) : [];
  const match = list.find((c) => stringAt(c, 'name') === name);
  if (!match) throw new Error(`the ${cni} manifest's ${kind} ${workloadName} has no container ${name} (it has: ${list.map((c) => stringAt(c, 'name')).join(', ') || 'none'})`);
  return match;
}

/** One replacement in the manifest's text: [start, end) becomes `text`. */
interface TextEdit {
  start: number;
  end: number;
  text: string;
}

const spaces = (n: number) => ' '.repeat(n);
const lineStart = (source: string, pos: number) => source.lastIndexOf('\n', pos - 1) + 1;
const lineEnd = (source: string, pos: number) => {
  const newline = source.indexOf('\n', pos);
  return newline < 0 ? source.length : newline + 1;
};
const column = (source: string, pos: number) => pos - lineStart(source, pos);

/** A string scalar written in the style it had (double- or single-quoted, or plain: a CIDR needs no quotes). */
function scalarText(style: Scalar['type'], value: string): string {
  if (style === 'QUOTE_DOUBLE') return JSON.stringify(value);
  if (style === 'QUOTE_SINGLE') return `'${value.replaceAll("'", "''")}'`;
  return value;
}

/** The edit that gives a scalar node a new string value in its own style. */
function scalarEdit(node: Scalar, value: string): TextEdit {
  return { start: node.range![0], end: node.range![1], text: scalarText(node.type, value) };
}

/**
 * Sets env `name` to `value` on a container, as a text edit: an existing entry's value is replaced
 * in its own quoting (or the entry rewritten when it had valueFrom); one shipped commented out
 * (calico's `# - name: CALICO_IPV4POOL_CIDR` / `#   value: …`) is un-commented where it stands, as
 * seed 002 does by hand; otherwise an entry is added after the last one, at the list's indentation.
 */
function envEdit(source: string, target: YAMLMap, cni: CniName, containerName: string, name: string, value: string): TextEdit {
  const env: unknown = target.get('env', true);
  if (!isSeq(env) || env.items.length === 0 || !isMap(env.items[0])) throw new Error(`the ${cni} manifest's container ${containerName} has no env list to add ${name} to`);
  const entries = env.items.filter(isMap);
  const dashOf = (item: YAMLMap) => {
    const at = item.range![0];
    return { dash: column(source, source.lastIndexOf('-', at - 1)), key: column(source, at) };
  };
  const existing = entries.find((item) => stringAt(item, 'name') === name);
  if (existing) {
    const current = existing.get('value', true);
    if (isScalar(current) && current.range) return scalarEdit(current, value);
    const { key } = dashOf(existing);
    // A block map's range ends after its last line break: keep the breaks and what follows.
    const [start, valueEnd] = existing.range!;
    const end = start + source.slice(start, valueEnd).trimEnd().length;
    return { start, end, text: `name: ${name}\n${spaces(key)}value: ${JSON.stringify(value)}` };
  }
  const region = source.slice(0, target.range![2]);
  const commented = new RegExp(`^([ \\t]*)#[ \\t]?-([ \\t]+)name: ${name}[ \\t]*\\n\\1#[ \\t]*value:.*$`, 'm');
  const from = env.range![0];
  const match = commented.exec(region.slice(from));
  if (match) {
    const [indent, gap] = [match[1]!, match[2]!];
    const start = from + match.index;
    return { start, end: start + match[0].length, text: `${indent}-${gap}name: ${name}\n${indent} ${gap}value: ${JSON.stringify(value)}` };
  }
  const last = entries[entries.length - 1]!;
  const { dash, key } = dashOf(last);
  const at = lineEnd(source, last.range![1] - 1);
  const newline = at === source.length && !source.endsWith('\n') ? '\n' : '';
  return { start: at, end: at, text: `${newline}${spaces(dash)}-${spaces(key - dash - 1)}name: ${name}\n${spaces(key)}value: ${JSON.stringify(value)}\n` };
}

/** A ConfigMap's `data` scalar at `key`, or a clear error. */
function dataScalar(map: YAMLMap, key: string, cni: CniName, configMap: string): Scalar {
  const node = child(child(map, 'data'), key);
  if (!isScalar(node) || typeof node.value !== 'string' || !node.range) throw new Error(`the ${cni} manifest's ConfigMap ${configMap} has no data key ${key}`);
  return node;
}

/**
 * flannel's net-conf.json with "Network" set, as a text edit inside the block scalar: the value of
 * the top-level "Network" replaced where it stands; without one, the JSON re-rendered at the
 * block's indentation with Network first.
 */
function netConfEdit(source: string, node: Scalar, podCidr: string): TextEdit {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(String(node.value)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`the flannel manifest's net-conf.json is not JSON: ${(error as Error).message}`);
  }
  const [start, end] = node.range!;
  const block = source.slice(start, end);
  const network = /("Network"\s*:\s*)"[^"\\]*"/.exec(block);
  if (typeof config.Network === 'string' && network) {
    const at = start + network.index + network[1]!.length;
    return { start: at, end: at + network[0].length - network[1]!.length, text: JSON.stringify(podCidr) };
  }
  const contentStart = lineEnd(source, start);
  const indent = /^[ \t]*/.exec(source.slice(contentStart))![0];
  const json = JSON.stringify({ ...config, Network: podCidr }, null, 2).split('\n').map((line) => `${indent}${line}`).join('\n');
  return { start: contentStart, end, text: `${json}\n` };
}

/**
 * The manifest with the pod CIDR patched in (pure). The edit is made in the TEXT of the download:
 * the YAML is parsed to find where (which document, workload, container, key), then only those
 * bytes change — comments, key order, quoting, indentation and sequence style stay the download's,
 * so the patched file differs from upstream's by the CIDR lines alone. Patching twice is patching
 * once. Per CNI:
 * - weave: env IPALLOC_RANGE on the `weave` container of DaemonSet weave-net (weave-npc never reads it);
 * - calico: env CALICO_IPV4POOL_CIDR on the calico-node container of DaemonSet calico-node, un-commented where
 *   upstream ships it commented out (seed 002's edit);
 * - flannel: "Network" in net-conf.json of ConfigMap kube-flannel-cfg;
 * - cilium: cluster-pool-ipv4-cidr in ConfigMap cilium-config.
 * Throws, naming what is missing, when the manifest lacks the workload, container or key.
 */
export function patchCniManifest(name: CniName, manifest: string, podCidr: string): string {
  const docs = parseAllDocuments(manifest);
  if (!Array.isArray(docs)) throw new Error(`the ${name} manifest is not YAML documents`);
  for (const doc of docs) if (doc.errors.length) throw new Error(`the ${name} manifest is not valid YAML: ${doc.errors[0]!.message}`);
  let edit: TextEdit;
  switch (name) {
    case 'weave': {
      const ds = resource(docs, name, 'DaemonSet', 'weave-net');
      edit = envEdit(manifest, container(ds, name, 'DaemonSet', 'weave-net', 'weave'), name, 'weave', 'IPALLOC_RANGE', podCidr);
      break;
    }
    case 'calico': {
      const ds = resource(docs, name, 'DaemonSet', 'calico-node');
      edit = envEdit(manifest, container(ds, name, 'DaemonSet', 'calico-node', 'calico-node'), name, 'calico-node', 'CALICO_IPV4POOL_CIDR', podCidr);
      break;
    }
    case 'flannel': {
      const cm = resource(docs, name, 'ConfigMap', 'kube-flannel-cfg');
      edit = netConfEdit(manifest, dataScalar(cm, 'net-conf.json', name, 'kube-flannel-cfg'), podCidr);
      break;
    }
    case 'cilium': {
      const cm = resource(docs, name, 'ConfigMap', 'cilium-config');
      edit = scalarEdit(dataScalar(cm, 'cluster-pool-ipv4-cidr', name, 'cilium-config'), podCidr);
      break;
    }
  }
  return manifest.slice(0, edit.start) + edit.text + manifest.slice(edit.end);
}

/** Refuses a manifest URL that is not https (or a file on this machine): it is applied as cluster-admin. */
export function checkManifestUrl(url: string, variable: string): void {
  if (!/^(https:\/\/\S+|file:\/\/\/\S+)$/.test(url)) {
    throw new Error(`${variable} must be an https:// URL (or file:/// on this machine): the manifest is applied as cluster-admin, so plain http is refused; got ${JSON.stringify(url)}`);
  }
}

/** The manifest's bytes: downloaded over https, or read from a file:/// URL (the lab's). */
export async function fetchManifest(url: string): Promise<Buffer> {
  if (url.startsWith('file://')) {
    try {
      return await readFile(fileURLToPath(url));
    } catch (error) {
      throw new Error(`cannot read the CNI manifest ${url}: ${(error as Error).message}`);
    }
  }
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
  } catch (error) {
    throw new Error(`cannot download the CNI manifest ${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new Error(`cannot download the CNI manifest ${url}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

/** The downloaded manifest checked against its pin (when there is one) and patched. */
export function verifyAndPatch(p: CniParams, url: string, bytes: Buffer): { manifest: string; downloadedSha256: string; pinned: boolean } {
  const actual = createHash('sha256').update(bytes).digest('hex');
  const expected = p.sha256 ?? CNI_MANIFEST_SHA256[url];
  if (expected !== undefined && expected.toLowerCase() !== actual) {
    throw new Error(`the CNI manifest ${url} has sha256 ${actual}, expected ${expected.toLowerCase()}: refusing to apply it`);
  }
  const text = bytes.toString('utf8');
  try {
    return { manifest: patchCniManifest(p.name, text, p.podCidr), downloadedSha256: actual, pinned: expected !== undefined };
  } catch (error) {
    throw new Error(`${url}: ${(error as Error).message}`);
  }
}

/**
 * Installs a pod network (CNI) with the pod CIDR patched in: downloads the manifest on the
 * controller (once per run), patches it in TypeScript, applies it with kubectl on a control plane.
 * In sync when the same patched manifest (by sha256) was applied before to the same cluster (by
 * its CA certificate). Run it with `runOnce`.
 *
 * @example installCni({ name: 'calico', podCidr: '10.10.0.0/16' })
 */
export function installCni(params: PerHostParams<CniParams>, options?: TaskOptions): Task<void> {
  const manifests = new Map<string, Promise<ReturnType<typeof verifyAndPatch>>>();
  const patched = (p: CniParams) => {
    const url = p.manifestUrl ?? CNI_MANIFESTS[p.name];
    if (!url) throw new Error(`${p.name} has no plain manifest: pass manifestUrl`);
    const key = `${p.name} ${url} ${p.podCidr} ${p.sha256 ?? ''}`;
    if (!manifests.has(key)) manifests.set(key, fetchManifest(url).then((bytes) => verifyAndPatch(p, url, bytes)));
    return manifests.get(key)!;
  };
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  // The stamp names the cluster too (its CA): a stamp left by a cluster that was reset and built
  // again on the same host (kubeadm reset keeps /etc/kubernetes/capstan-cni) must not pass for
  // the new cluster, whose API server has never seen the manifest.
  const stampOf = (p: CniParams, manifest: string, caCert: string | null) => `${p.name} sha256:${sha256(manifest)} cluster-ca:${caCert === null ? 'none' : sha256(caCert)}\n`;
  return defineTask<CniParams>(
    {
      kind: 'cni',
      id: () => 'cni',
      title: (p) => `pod network ${p.name} (${p.podCidr})`,
      validate: (p) => {
        if (!(p.name in CNI_MANIFESTS)) throw new Error(`name must be one of ${Object.keys(CNI_MANIFESTS).join(', ')}, got ${JSON.stringify(p.name)}`);
        if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(p.podCidr)) throw new Error(`podCidr must be an IPv4 CIDR, got ${JSON.stringify(p.podCidr)}`);
        if (p.manifestUrl !== undefined) checkManifestUrl(p.manifestUrl, 'manifestUrl');
        if (p.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(p.sha256)) throw new Error(`sha256 must be 64 hex digits, got ${JSON.stringify(p.sha256)}`);
        if (p.name === 'cilium' && !p.manifestUrl) throw new Error('cilium has no plain manifest upstream: pass manifestUrl (e.g. rendered with helm template)');
      },
      probes: () => [{ kind: 'read', path: CNI_STAMP }, { kind: 'read', path: CA_CERT }],
      async check(ctx, p) {
        const { manifest, downloadedSha256, pinned } = await patched(p);
        const stamp = stampOf(p, manifest, await ctx.readText(CA_CERT));
        const current = await ctx.readText(CNI_STAMP);
        if (current === stamp) return [];
        // Unpinned: say which download is applied, so the user can pin it (cni_manifest_sha256).
        const source = pinned ? 'pinned' : `NOT pinned, set cni_manifest_sha256=${downloadedSha256} to pin it`;
        return [{ subject: `applied manifest (downloaded sha256 ${downloadedSha256}, ${source})`, current: current?.trim() ?? 'none', desired: stamp.trim() }];
      },
      async apply(ctx, p) {
        const { manifest } = await patched(p);
        await ctx.run(sh`kubectl --kubeconfig=${ADMIN_CONF} apply -f -`, { stdin: manifest, timeoutMs: 300_000 });
        await ctx.writeFile(CNI_STAMP, stampOf(p, manifest, await ctx.readText(CA_CERT)), { mode: '0644' });
      },
    },
    params,
    options,
  );
}
