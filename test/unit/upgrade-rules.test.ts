import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const STANDINS = fileURLToPath(new URL('../lab/standins/', import.meta.url));

/** Calls a function of the kubeadm stand-in's pure version rules (kubeadm_versions.py) with python3. */
function rules(call: string): unknown {
  const script = `import json, sys\nsys.path.insert(0, ${JSON.stringify(STANDINS)})\nimport kubeadm_versions as v\nprint(json.dumps(${call}))`;
  return JSON.parse(execFileSync('python3', ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } }));
}

describe('kubeadm stand-in upgrade version rules (kubeadm_versions.py)', function () {
  const errors = (cluster: string, kubeadm: string, target: string, kubelets: string[] = [cluster]) =>
    rules(`v.policy_errors(${JSON.stringify(cluster)}, ${JSON.stringify(kubeadm)}, ${JSON.stringify(target)}, ${JSON.stringify(kubelets)})`);

  it('lets one minor up with a kubeadm of the target, and a patch up or down within kubeadm\'s minor', function () {
    expect(errors('v1.34.1', 'v1.35.0', 'v1.35.0')).to.deep.equal([[], []]);
    expect(errors('v1.35.0', 'v1.35.1', 'v1.35.1')).to.deep.equal([[], []]);
    // kubeadm itself allows a patch downgrade; Capstan's planner is the one that refuses it.
    expect(errors('v1.35.1', 'v1.35.1', 'v1.35.0')).to.deep.equal([[], []]);
  });

  it('refuses a skipped minor and a target minor above kubeadm\'s as fatal', function () {
    expect(errors('v1.34.1', 'v1.35.0', 'v1.36.0')).to.deep.equal([
      [
        'Specified version to upgrade to "v1.36.0" is too high; kubeadm can upgrade only 1 minor version at a time',
        'Specified version to upgrade to "v1.36.0" is at least one minor release higher than the kubeadm minor release (36 > 35). Such an upgrade is not supported',
      ],
      [],
    ]);
    expect(errors('v1.34.1', 'v1.34.1', 'v1.35.0')).to.deep.equal([
      ['Specified version to upgrade to "v1.35.0" is at least one minor release higher than the kubeadm minor release (35 > 34). Such an upgrade is not supported'],
      [],
    ]);
  });

  it('needs --force for a patch above kubeadm\'s, a minor downgrade, an unstable target and too old kubelets', function () {
    expect(errors('v1.34.1', 'v1.35.0', 'v1.35.1')).to.deep.equal([
      [],
      ['Specified version to upgrade to "v1.35.1" is higher than the kubeadm version "v1.35.0". Upgrade kubeadm first using the tool you used to install kubeadm'],
    ]);
    expect(errors('v1.35.0', 'v1.35.0', 'v1.34.2')).to.deep.equal([[], ['Kubeadm version v1.35.0 can only be used to upgrade to Kubernetes version 1.35']]);
    expect(errors('v1.34.1', 'v1.35.0', 'v1.35.0-rc.1')).to.deep.equal([
      [],
      ['Specified version to upgrade to "v1.35.0-rc.1" is an unstable version and such upgrades weren\'t allowed via setting the --allow-*-upgrades flags'],
    ]);
    expect(errors('v1.34.1', 'v1.35.0', 'v1.35.0', ['v1.31.4', 'v1.34.1', 'v1.31.4'])).to.deep.equal([
      [],
      ['There are kubelets in this cluster that are too old that have these versions [v1.31.4]'],
    ]);
  });

  it('refuses a target below the minimum control plane version (kubeadm\'s minor - 1) and two minors down', function () {
    expect(errors('v1.35.0', 'v1.35.0', 'v1.33.5')).to.deep.equal([
      [
        'Specified version to upgrade to "v1.33.5" is equal to or lower than the minimum supported version "v1.35.0". Please specify a higher version to upgrade to',
        'Specified version to downgrade to "v1.33.5" is too low; kubeadm can downgrade only 1 minor version at a time',
      ],
      ['Kubeadm version v1.35.0 can only be used to upgrade to Kubernetes version 1.35'],
    ]);
  });

  it('formats refusals as upgrade apply prints them: fatal first, else skippable unless forced', function () {
    const refusal = (mandatory: string[], skippable: string[], force: boolean) =>
      rules(`v.policy_refusal(${JSON.stringify(mandatory)}, ${JSON.stringify(skippable)}, ${force ? 'True' : 'False'})`);
    expect(refusal(['a', 'b'], ['c'], true)).to.equal(
      'the version argument is invalid due to these fatal errors:\n\n\t- a\n\t- b\n\nPlease fix the misalignments highlighted above and try upgrading again',
    );
    expect(refusal([], ['c'], false)).to.equal('the version argument is invalid due to these errors:\n\n\t- c\n\nCan be bypassed if you pass the --force flag');
    expect(refusal([], ['c'], true)).to.equal(null);
    expect(refusal([], [], false)).to.equal(null);
  });

  it('parses and normalizes versions as ParseSemantic does', function () {
    expect(rules('v.normalize("1.35.0")')).to.equal('v1.35.0');
    expect(rules('[v.less_than("v1.35.0-rc.1", "v1.35.0"), v.less_than("v1.35.0", "v1.35.0"), v.less_than("v1.34.9", "v1.35.0")]')).to.deep.equal([true, false, true]);
    expect(rules('v.minimum_control_plane_version("v1.35.1")')).to.equal('v1.34.0');
    expect(() => rules('v.parse("1.35")')).to.throw(/could not parse "1\.35" as version/);
  });
});
