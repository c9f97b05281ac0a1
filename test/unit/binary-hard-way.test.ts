import { expect } from 'chai';
import { InputError } from '../../runner/index.js';
import { binarySource, HARD_WAY_BINARIES } from '../../playbooks/hard-way.js';

/** The hard way's binary variables (kubernetes_binary_url, <binary>_url, <binary>_sha256) and issue 19's rule on plain http. */
describe('hard-way binary sources: a published sum only over https or file:///', () => {
  const [apiserver, , , kubectl] = HARD_WAY_BINARIES;

  it('refuses a plain http URL without a pinned sum, before any connection, naming the variable to set', () => {
    let error: unknown;
    try {
      binarySource({ kubernetes_binary_url: 'http://mirror.lan/{version}/{binary}' }, 'vars of all', kubectl, 'amd64', '1.34.1');
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(InputError);
    expect((error as Error).message).to.equal(
      'kubectl would be downloaded over plain http (http://mirror.lan/1.34.1/kubectl, vars of all) and checked against a sum fetched the same way, which is no check: set kubectl_sha256 (the pinned SHA-256), or use an https:// or file:/// URL',
    );
    // The per-binary URL is held to the same rule.
    expect(() => binarySource({ kube_apiserver_url: 'http://mirror.lan/kube-apiserver' }, 'test', apiserver, 'amd64', '1.34.1')).to.throw(/set kube_apiserver_sha256/);
  });

  it('accepts http with a pin, https and file:/// with the published sum beside them', () => {
    expect(binarySource({ kubernetes_binary_url: 'http://mirror.lan/{binary}', kubectl_sha256: 'D'.repeat(64) }, 'test', kubectl, 'amd64', '1.34.1')).to.deep.equal({
      url: 'http://mirror.lan/kubectl',
      sha256: 'd'.repeat(64),
    });
    expect(binarySource({ kubernetes_binary_url: 'file:///var/tmp/capstan-lab/hard-way-bin/{binary}' }, 'test', kubectl, 'arm64', '1.34.1')).to.deep.equal({
      url: 'file:///var/tmp/capstan-lab/hard-way-bin/kubectl',
      sha256Url: 'file:///var/tmp/capstan-lab/hard-way-bin/kubectl.sha256',
    });
    expect(binarySource({ kubectl_url: 'https://mirror.example/{arch}/kubectl' }, 'test', kubectl, 'arm64', '1.34.1')).to.deep.equal({
      url: 'https://mirror.example/arm64/kubectl',
      sha256Url: 'https://mirror.example/arm64/kubectl.sha256',
    });
    expect(() => binarySource({ kubernetes_binary_url: 'ftp://mirror.lan/{binary}' }, 'test', kubectl, 'amd64', '1.34.1')).to.throw(
      /kubernetes_binary_url \(test\) must be an https:\/\/ or http:\/\/ URL, or file:\/\/\/ on this machine/,
    );
  });
});
