/**
 * The one Kubernetes-version rule (tasks/kubernetes-version.ts) that kubernetes_version, the hard
 * way's binaries, kubeadm's config API, pkgs.k8s.io's repository and the upgrade plan all use.
 */
import { expect } from 'chai';
import { kubeadmApiVersion } from '../../tasks/kubeadm.js';
import { kubernetesMinor, parseKubernetesVersion, releasedVersion } from '../../tasks/kubernetes-version.js';

describe('Kubernetes versions (tasks/kubernetes-version.ts)', () => {
  it('reads releases, minors and pre-releases, with or without the v', () => {
    const brief = (text: string) => {
      const v = parseKubernetesVersion(text);
      return [v.major, v.minor, v.patch, v.hasPatch, v.prerelease.join('.'), v.semver.version];
    };
    expect(brief('v1.34.1')).to.deep.equal([1, 34, 1, true, '', '1.34.1']);
    expect(brief(' 1.18 ')).to.deep.equal([1, 18, 0, false, '', '1.18.0']);
    expect(brief('1.35.0-alpha.1')).to.deep.equal([1, 35, 0, true, 'alpha.1', '1.35.0-alpha.1']);
    expect(brief('v1.34.1+k3s1')).to.deep.equal([1, 34, 1, true, '', '1.34.1']);
  });

  it('refuses what semver.coerce would have guessed at, naming the text', () => {
    for (const text of ['1', 'latest', 'stable-1.34', '1.34.x', 'foo1.34bar', '1.34.1.2', 'v', '']) {
      expect(() => parseKubernetesVersion(text), text).to.throw(`not a Kubernetes version: ${JSON.stringify(text)} (expected like 1.34.1)`);
    }
  });

  it('the pkgs.k8s.io minor, released versions for the upgrade plan, kubeadm\'s config API', () => {
    expect(['1.34.2', 'v1.33', '1.35.0-rc.1'].map(kubernetesMinor)).to.deep.equal(['v1.34', 'v1.33', 'v1.35']);
    expect(() => kubernetesMinor('latest')).to.throw(/not a Kubernetes version/);
    expect(['v1.35.1', '1.35.1', '1.35', '1.35.0-rc.1', 'x'].map((t) => releasedVersion(t)?.version ?? null)).to.deep.equal(['1.35.1', '1.35.1', null, null, null]);
    expect(['v1.34.1', 'v1.31.0', 'v1.30.9'].map(kubeadmApiVersion)).to.deep.equal(['kubeadm.k8s.io/v1beta4', 'kubeadm.k8s.io/v1beta4', 'kubeadm.k8s.io/v1beta3']);
    expect(() => kubeadmApiVersion('garbage')).to.throw(`cannot read a version from kubeadm's "garbage"`);
  });
});
