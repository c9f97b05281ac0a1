import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { diffLines } from 'diff';
import { parse } from 'yaml';
import { checkManifestUrl, fetchManifest, patchCniManifest, verifyAndPatch } from '../../tasks/cni.js';

const fixture = (name: string) => readFileSync(`test/fixtures/cni/${name}-excerpt.yaml`, 'utf8');
const fixtureFile = (file: string) => readFileSync(`test/fixtures/cni/${file}`, 'utf8');
const cidr = '10.10.0.0/16';

/** The lines a patch removed (-) and added (+), in order: what a user would see in `diff download patched`. */
function changedLines(before: string, after: string): string[] {
  return diffLines(before, after).flatMap((part) =>
    part.added || part.removed ? part.value.split('\n').filter(Boolean).map((line) => `${part.added ? '+' : '-'}${line}`) : [],
  );
}

describe('patchCniManifest (on fixtures with upstream structure): the download changed by the CIDR lines alone', () => {
  const both = (cni: string) => [`${cni}-excerpt.yaml`, `${cni}-lab.yaml`];

  it('weave: IPALLOC_RANGE added after the weave container\'s last env entry (not on weave-npc); nothing else moves', () => {
    for (const file of both('weave')) {
      const source = fixtureFile(file);
      const out = patchCniManifest('weave', source, cidr);
      expect(changedLines(source, out), file).to.deep.equal(['+                - name: IPALLOC_RANGE', '+                  value: "10.10.0.0/16"']);
      const daemonSet = (parse(out) as { items: { kind: string; spec: { template: { spec: { containers: { name: string; env: { name: string }[] }[] } } } }[] }).items.find((i) => i.kind === 'DaemonSet')!;
      const envOf = (name: string) => daemonSet.spec.template.spec.containers.find((c) => c.name === name)!.env.map((e) => e.name);
      expect(envOf('weave').slice(0, 2), file).to.deep.equal(['INIT_CONTAINER', 'HOSTNAME']);
      expect(envOf('weave').at(-1), file).to.equal('IPALLOC_RANGE');
      expect(envOf('weave-npc'), file).not.to.include('IPALLOC_RANGE');
      expect(patchCniManifest('weave', out, cidr), file).to.equal(out);
      expect(patchCniManifest('weave', out, '10.20.0.0/16'), file).to.equal(out.replace('"10.10.0.0/16"', '"10.20.0.0/16"'));
    }
  });

  it('calico: the commented-out CALICO_IPV4POOL_CIDR enabled where it stood, its explanation kept', () => {
    for (const file of both('calico')) {
      const source = fixtureFile(file);
      const out = patchCniManifest('calico', source, cidr);
      expect(changedLines(source, out), file).to.deep.equal([
        '-            # - name: CALICO_IPV4POOL_CIDR',
        '-            #   value: "192.168.0.0/16"',
        '+            - name: CALICO_IPV4POOL_CIDR',
        '+              value: "10.10.0.0/16"',
      ]);
      expect(out, file).to.include('# no effect. This should fall within `--cluster-cidr`.\n            - name: CALICO_IPV4POOL_CIDR\n');
      expect(patchCniManifest('calico', out, cidr), file).to.equal(out);
    }
  });

  it('flannel: "Network" of net-conf.json replaced where it stands; without one, the JSON re-written at the block\'s indentation', () => {
    for (const file of both('flannel')) {
      const source = fixtureFile(file);
      const out = patchCniManifest('flannel', source, cidr);
      expect(changedLines(source, out), file).to.deep.equal(['-      "Network": "10.244.0.0/16",', '+      "Network": "10.10.0.0/16",']);
      expect(patchCniManifest('flannel', out, cidr), file).to.equal(out);
    }
    const noNetwork = 'kind: ConfigMap\nmetadata:\n  name: kube-flannel-cfg\ndata:\n  net-conf.json: |\n    {\n      "Backend": { "Type": "vxlan" }\n    }\nother: 1\n';
    expect(patchCniManifest('flannel', noNetwork, cidr)).to.equal(
      'kind: ConfigMap\nmetadata:\n  name: kube-flannel-cfg\ndata:\n  net-conf.json: |\n    {\n      "Backend": {\n        "Type": "vxlan"\n      },\n      "Network": "10.10.0.0/16"\n    }\nother: 1\n',
    );
  });

  it('cilium: cluster-pool-ipv4-cidr of cilium-config, in its own quoting', () => {
    const source = fixtureFile('cilium-excerpt.yaml');
    const out = patchCniManifest('cilium', source, cidr);
    expect(changedLines(source, out)).to.deep.equal(['-  cluster-pool-ipv4-cidr: "10.0.0.0/8"', '+  cluster-pool-ipv4-cidr: "10.10.0.0/16"']);
    const single = "kind: ConfigMap\nmetadata:\n  name: cilium-config\ndata:\n  cluster-pool-ipv4-cidr: '10.0.0.0/8'\n";
    expect(patchCniManifest('cilium', single, cidr)).to.equal(single.replace("'10.0.0.0/8'", "'10.10.0.0/16'"));
    expect(patchCniManifest('cilium', out, cidr)).to.equal(out);
  });

  it('an entry with valueFrom is rewritten as a value; an entry appended at the end of a file without a final newline', () => {
    const daemonSet = (env: string) => `kind: DaemonSet\nmetadata:\n  name: weave-net\nspec:\n  template:\n    spec:\n      containers:\n        - name: weave\n          env:\n${env}`;
    const fromField = daemonSet('            - name: IPALLOC_RANGE\n              valueFrom:\n                fieldRef:\n                  fieldPath: spec.podCIDR\n            - name: HOSTNAME\n              value: x\n');
    expect(patchCniManifest('weave', fromField, cidr)).to.equal(daemonSet('            - name: IPALLOC_RANGE\n              value: "10.10.0.0/16"\n            - name: HOSTNAME\n              value: x\n'));
    const compact = daemonSet('          - name: HOSTNAME\n            value: x');
    expect(patchCniManifest('weave', compact, cidr)).to.equal(`${compact}\n          - name: IPALLOC_RANGE\n            value: "10.10.0.0/16"\n`);
    expect(() => patchCniManifest('weave', daemonSet('            []\n'), cidr)).to.throw("the weave manifest's container weave has no env list to add IPALLOC_RANGE to");
  });

  it('refuses a manifest without the workload, container or key, naming it', () => {
    expect(() => patchCniManifest('weave', fixture('weave').replace('kind: DaemonSet', 'kind: Deployment'), cidr)).to.throw('the weave manifest has no DaemonSet weave-net');
    expect(() => patchCniManifest('weave', fixture('weave').replace('- name: weave\n', '- name: weave-router\n'), cidr)).to.throw(
      "the weave manifest's DaemonSet weave-net has no container weave (it has: weave-router, weave-npc)",
    );
    expect(() => patchCniManifest('calico', fixture('flannel'), cidr)).to.throw('the calico manifest has no DaemonSet calico-node');
    expect(() => patchCniManifest('flannel', 'kind: ConfigMap\nmetadata:\n  name: kube-flannel-cfg\n', cidr)).to.throw('has no data key net-conf.json');
    expect(() => patchCniManifest('cilium', fixture('flannel'), cidr)).to.throw('the cilium manifest has no ConfigMap cilium-config');
    expect(() => patchCniManifest('flannel', 'a: [\n', cidr)).to.throw(/the flannel manifest is not valid YAML/);
  });
});

describe('CNI manifest download and integrity', () => {
  it('refuses http:// naming the variable; accepts https and file:///', () => {
    expect(() => checkManifestUrl('http://example.org/weave.yaml', 'cni_manifest_url')).to.throw(/^cni_manifest_url must be an https:\/\/ URL/);
    checkManifestUrl('https://example.org/weave.yaml', 'cni_manifest_url');
    checkManifestUrl('file:///srv/weave.yaml', 'cni_manifest_url');
  });

  it('checks the sha256 of the downloaded bytes before patching', () => {
    const bytes = Buffer.from(fixture('weave'));
    const actual = createHash('sha256').update(bytes).digest('hex');
    const url = 'https://example.org/weave.yaml';
    const good = verifyAndPatch({ name: 'weave', podCidr: cidr, sha256: actual }, url, bytes);
    expect(good.pinned).to.equal(true);
    expect(good.manifest).to.include('IPALLOC_RANGE');
    const unpinned = verifyAndPatch({ name: 'weave', podCidr: cidr }, url, bytes);
    expect(unpinned).to.deep.include({ pinned: false, downloadedSha256: actual });
    const wrong = '0'.repeat(64);
    expect(() => verifyAndPatch({ name: 'weave', podCidr: cidr, sha256: wrong }, url, bytes)).to.throw(
      `the CNI manifest ${url} has sha256 ${actual}, expected ${wrong}: refusing to apply it`,
    );
    expect(() => verifyAndPatch({ name: 'weave', podCidr: cidr }, url, Buffer.from('kind: List\nitems: []\n'))).to.throw(`${url}: the weave manifest has no DaemonSet weave-net`);
  });

  it('a failed download or read is an error naming the URL', async () => {
    // fetchManifest is called directly: http is refused at load, so a plain loopback server cannot be reached through the task.
    const missing = pathToFileURL('/nonexistent/weave.yaml').href;
    let error: Error | undefined;
    await fetchManifest(missing).catch((e: Error) => (error = e));
    expect(error?.message).to.match(/^cannot read the CNI manifest file:\/\/\/nonexistent\/weave\.yaml: ENOENT/);
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => { res.statusCode = 404; res.end('no'); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const notFound = await fetchManifest(`http://127.0.0.1:${port}/weave.yaml`).then(() => undefined, (e: Error) => e).finally(() => server.close());
    expect(notFound?.message).to.equal(`cannot download the CNI manifest http://127.0.0.1:${port}/weave.yaml: HTTP 404`);
  });
});
