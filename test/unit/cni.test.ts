import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { checkManifestUrl, fetchManifest, patchCniManifest, verifyAndPatch } from '../../tasks/cni.js';

const fixture = (name: string) => readFileSync(`test/fixtures/cni/${name}-excerpt.yaml`, 'utf8');
const cidr = '10.10.0.0/16';

describe('patchCniManifest (structural, on fixtures with upstream structure)', () => {
  it('weave: IPALLOC_RANGE lands on the weave container (env order kept), not on weave-npc', () => {
    const out = patchCniManifest('weave', fixture('weave'), cidr);
    const weave = out.slice(out.indexOf('- name: weave\n'), out.indexOf('- name: weave-npc'));
    expect(weave).to.match(/- name: INIT_CONTAINER\n\s+value: "true"\n\s+- name: HOSTNAME\n(.*\n){4}\s+- name: IPALLOC_RANGE\n\s+value: 10\.10\.0\.0\/16\n\s*$/);
    expect(out.slice(out.indexOf('- name: weave-npc'))).not.to.include('IPALLOC_RANGE');
    expect(out).to.include('# the launch script skips init.sh when this is set\n');
    expect(patchCniManifest('weave', out, cidr)).to.equal(out);
    expect(patchCniManifest('weave', out, '10.20.0.0/16')).to.equal(out.replace(cidr, '10.20.0.0/16'));
  });

  it('calico: the commented-out CALICO_IPV4POOL_CIDR is enabled where it stood, explanation kept', () => {
    const out = patchCniManifest('calico', fixture('calico'), cidr);
    expect(out).to.include(
      '            # no effect. This should fall within `--cluster-cidr`.\n' +
        '            - name: CALICO_IPV4POOL_CIDR\n              value: 10.10.0.0/16\n' +
        '            # Disable file logging so `kubectl logs` works.\n            - name: CALICO_DISABLE_FILE_LOGGING\n',
    );
    expect(out).not.to.include('192.168.0.0/16');
    expect(patchCniManifest('calico', out, cidr)).to.equal(out);
  });

  it('flannel: "Network" of net-conf.json, the other keys kept', () => {
    const out = patchCniManifest('flannel', fixture('flannel'), cidr);
    expect(out).to.include('  net-conf.json: |\n    {\n      "Network": "10.10.0.0/16",\n      "EnableNFTables": false,\n      "Backend": {\n        "Type": "vxlan"\n      }\n    }\n');
    expect(patchCniManifest('flannel', out, cidr)).to.equal(out);
  });

  it('cilium: cluster-pool-ipv4-cidr of cilium-config, quoting kept', () => {
    const out = patchCniManifest('cilium', fixture('cilium'), cidr);
    expect(out).to.include('  cluster-pool-ipv4-cidr: "10.10.0.0/16"\n  cluster-pool-ipv4-mask-size: "24"\n');
    expect(out).to.include('# Source: cilium/templates/cilium-configmap.yaml\n');
    expect(patchCniManifest('cilium', out, cidr)).to.equal(out);
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
