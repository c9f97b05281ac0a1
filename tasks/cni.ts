import { createHash } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { sh } from '../runner/quote.js';
import { defineTask, type PerHostParams, type Task, type TaskOptions } from '../runner/task.js';
import { ADMIN_CONF } from './kubeadm.js';

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
  /** Where to get the manifest: an http(s) URL fetched by the controller, default CNI_MANIFESTS[name]. */
  manifestUrl?: string;
}

/**
 * The manifest with the pod CIDR patched in (pure), per CNI:
 * - calico: the commented-out CALICO_IPV4POOL_CIDR env (192.168.0.0/16) is enabled with the CIDR (seed 002's edit);
 * - flannel: "Network" in net-conf.json;
 * - weave: IPALLOC_RANGE on the weave container;
 * - cilium: cluster-pool-ipv4-cidr in the cilium-config ConfigMap.
 */
export function patchCniManifest(name: CniName, manifest: string, podCidr: string): string {
  switch (name) {
    case 'calico': {
      const commented = /^(\s*)# - name: CALICO_IPV4POOL_CIDR\n\1#   value: "[^"]*"$/m;
      if (commented.test(manifest)) return manifest.replace(commented, `$1- name: CALICO_IPV4POOL_CIDR\n$1  value: "${podCidr}"`);
      const active = /^(\s*)- name: CALICO_IPV4POOL_CIDR\n\1  value: "[^"]*"$/m;
      if (active.test(manifest)) return manifest.replace(active, `$1- name: CALICO_IPV4POOL_CIDR\n$1  value: "${podCidr}"`);
      throw new Error('the calico manifest has no CALICO_IPV4POOL_CIDR setting to patch');
    }
    case 'flannel': {
      const network = /("Network":\s*)"[^"]*"/;
      if (!network.test(manifest)) throw new Error('the flannel manifest has no "Network" in net-conf.json');
      return manifest.replace(network, `$1"${podCidr}"`);
    }
    case 'weave': {
      if (/- name: IPALLOC_RANGE\n\s*value: /.test(manifest)) return manifest.replace(/(- name: IPALLOC_RANGE\n(\s*)value: )\S+/, `$1${podCidr}`);
      const env = /^(\s*)env:\n(\s*)- name: HOSTNAME$/m;
      if (!env.test(manifest)) throw new Error('the weave manifest has no env list on the weave container to add IPALLOC_RANGE to');
      return manifest.replace(env, `$1env:\n$2- name: IPALLOC_RANGE\n$2  value: ${podCidr}\n$2- name: HOSTNAME`);
    }
    case 'cilium': {
      const pool = /(cluster-pool-ipv4-cidr:\s*)"?[^"\n]*"?/;
      if (!pool.test(manifest)) throw new Error('the cilium manifest has no cluster-pool-ipv4-cidr to patch');
      return manifest.replace(pool, `$1"${podCidr}"`);
    }
  }
}

async function fetchManifest(url: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
  } catch (error) {
    throw new Error(`cannot download the CNI manifest ${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new Error(`cannot download the CNI manifest ${url}: HTTP ${response.status}`);
  const text = await response.text();
  for (const doc of parseAllDocuments(text)) if (doc.errors.length) throw new Error(`${url} is not valid YAML: ${doc.errors[0]!.message}`);
  return text;
}

/**
 * Installs a pod network (CNI) with the pod CIDR patched in: downloads the manifest on the
 * controller (once per run), patches it in TypeScript, applies it with kubectl on a control plane.
 * In sync when the same patched manifest (by sha256) was applied before. Run it with `runOnce`.
 *
 * @example installCni({ name: 'calico', podCidr: '10.10.0.0/16' })
 */
export function installCni(params: PerHostParams<CniParams>, options?: TaskOptions): Task<void> {
  const manifests = new Map<string, Promise<string>>();
  const patched = (p: CniParams) => {
    const url = p.manifestUrl ?? CNI_MANIFESTS[p.name];
    if (!url) throw new Error(`${p.name} has no plain manifest: pass manifestUrl`);
    const key = `${p.name} ${url} ${p.podCidr}`;
    if (!manifests.has(key)) manifests.set(key, fetchManifest(url).then((text) => patchCniManifest(p.name, text, p.podCidr)));
    return manifests.get(key)!;
  };
  return defineTask<CniParams>(
    {
      kind: 'cni',
      id: () => 'cni',
      title: (p) => `pod network ${p.name} (${p.podCidr})`,
      validate: (p) => {
        if (!(p.name in CNI_MANIFESTS)) throw new Error(`name must be one of ${Object.keys(CNI_MANIFESTS).join(', ')}, got ${JSON.stringify(p.name)}`);
        if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(p.podCidr)) throw new Error(`podCidr must be an IPv4 CIDR, got ${JSON.stringify(p.podCidr)}`);
        if (p.manifestUrl !== undefined && !/^https?:\/\//.test(p.manifestUrl)) throw new Error('manifestUrl must be an http(s) URL');
        if (p.name === 'cilium' && !p.manifestUrl) throw new Error('cilium has no plain manifest upstream: pass manifestUrl (e.g. rendered with helm template)');
      },
      probes: () => [{ kind: 'read', path: CNI_STAMP }],
      async check(ctx, p) {
        const manifest = await patched(p);
        const stamp = `${p.name} sha256:${createHash('sha256').update(manifest).digest('hex')}\n`;
        const current = await ctx.readText(CNI_STAMP);
        return current === stamp ? [] : [{ subject: 'applied manifest', current: current?.trim() ?? 'none', desired: stamp.trim() }];
      },
      async apply(ctx, p) {
        const manifest = await patched(p);
        await ctx.run(sh`kubectl --kubeconfig=${ADMIN_CONF} apply -f -`, { stdin: manifest, timeoutMs: 300_000 });
        await ctx.writeFile(CNI_STAMP, `${p.name} sha256:${createHash('sha256').update(manifest).digest('hex')}\n`, { mode: '0644' });
      },
    },
    params,
    options,
  );
}
