import { expect } from 'chai';
import { resolveTarget } from '../../playbooks/lib/upgrade-target.js';
import { planUpgrade, type NodeVersions } from '../../playbooks/lib/upgrade-plan.js';
import { formatRefusals, upgradePlanTable } from '../../playbooks/lib/upgrade-report.js';
import { manifestImageTag, parseClusterNodes, parsePackagesIndex, upstreamVersion } from '../../tasks/upgrade-facts.js';

const node = (name: string, version: string, extra: Partial<NodeVersions> = {}): NodeVersions => ({
  name,
  controlPlane: name.startsWith('cp'),
  kubelet: version,
  kubeadm: version,
  ...(name.startsWith('cp') ? { apiServer: version, apiServerReady: true } : {}),
  ready: true,
  ...extra,
});

describe('upgrade playbook: target, facts and report (pure)', function () {
  it('resolves kubernetes_version to the newest patch the repository has, or an exact one', function () {
    const carried = ['1.35.0-1.1', '1.35.1-1.1', '1.34.2-1.1'];
    expect(resolveTarget('1.35', carried)).to.deep.equal({ target: 'v1.35.1', debian: '1.35.1-1.1' });
    expect(resolveTarget('v1.35.0', carried)).to.deep.equal({ target: 'v1.35.0', debian: '1.35.0-1.1' });
    expect(resolveTarget('1.35.7', carried)).to.deep.equal({ target: 'v1.35.7' });
    expect(resolveTarget('1.36', carried)).to.deep.equal({ target: 'v1.36.0' });
  });

  it('parses nodes, Packages indexes, Debian versions and manifest image tags', function () {
    const list = JSON.stringify({
      kind: 'List',
      items: [
        { metadata: { name: 'cp1' }, spec: {}, status: { nodeInfo: { kubeletVersion: 'v1.34.1' }, conditions: [{ type: 'Ready', status: 'True' }] } },
        { metadata: { name: 'w1' }, spec: { unschedulable: true }, status: { nodeInfo: { kubeletVersion: 'v1.34.2' }, conditions: [{ type: 'Ready', status: 'Unknown' }] } },
      ],
    });
    expect(parseClusterNodes(list)).to.deep.equal([
      { name: 'cp1', kubeletVersion: 'v1.34.1', ready: true, unschedulable: false },
      { name: 'w1', kubeletVersion: 'v1.34.2', ready: false, unschedulable: true },
    ]);
    expect(parseClusterNodes(JSON.stringify({ kind: 'Node', metadata: { name: 'w1' }, status: { nodeInfo: { kubeletVersion: 'v1.35.0' } } }))).to.deep.equal([
      { name: 'w1', kubeletVersion: 'v1.35.0', ready: false, unschedulable: false },
    ]);
    const index = 'Package: kubeadm\nVersion: 1.35.0-1.1\nArchitecture: amd64\n\nPackage: kubelet\nVersion: 1.35.9-1.1\n\nPackage: kubeadm\nVersion: 1.35.1-1.1\n';
    expect(parsePackagesIndex(index, 'kubeadm')).to.deep.equal(['1.35.0-1.1', '1.35.1-1.1']);
    expect([upstreamVersion('1.35.1-1.1'), upstreamVersion('1:1.35.1-00')]).to.deep.equal(['1.35.1', '1.35.1']);
    expect(manifestImageTag('spec:\n  containers:\n  - image: registry.k8s.io/kube-apiserver:v1.34.1\n')).to.equal('v1.34.1');
    expect([manifestImageTag('image: localhost:5000/kube-apiserver\n'), manifestImageTag(null)]).to.deep.equal([null, null]);
  });

  it('prints the plan node by node in order, workers of a batch under one number, untouched nodes named', function () {
    const nodes = [node('cp1', 'v1.34.1'), node('w1', 'v1.34.1'), node('w2', 'v1.34.1'), node('w3', 'v1.35.1')];
    const plan = planUpgrade({ nodes, target: '1.35.1', available: ['1.35.1'], workerBatchSize: 2 });
    expect(plan.ok).to.equal(true);
    if (!plan.ok) return;
    const steps = 'kubeadm upgrade node, cordon, drain, kubelet + kubectl 1.35.1-1.1, restart kubelet, wait Ready, uncordon';
    expect(upgradePlanTable(plan.target, '1.35.1-1.1', plan.batches, nodes, 2)).to.deep.equal({
      title: 'upgrade plan: v1.35.1 (packages 1.35.1-1.1), control planes one at a time, workers 2 at a time',
      columns: ['STEP', 'NODE', 'ROLE', 'KUBELET', 'ACTIONS'],
      rows: [
        ['1', 'cp1', 'control plane', 'v1.34.1', 'kubeadm 1.35.1-1.1, kubeadm upgrade apply v1.35.1, cordon, drain, kubelet + kubectl 1.35.1-1.1, restart kubelet, wait Ready, uncordon'],
        ['2', 'w1', 'worker', 'v1.34.1', `kubeadm 1.35.1-1.1, ${steps}`],
        ['2', 'w2', 'worker', 'v1.34.1', `kubeadm 1.35.1-1.1, ${steps}`],
        ['-', 'w3', 'worker', 'v1.35.1', 'untouched: at v1.35.1'],
      ],
    });
    expect(upgradePlanTable('v1.35.1', '1.35.1-1.1', [], nodes.slice(3), 1)).to.deep.equal({
      title: 'upgrade plan: every node is at v1.35.1, nothing to do',
      columns: ['STEP', 'NODE', 'ROLE', 'KUBELET', 'ACTIONS'],
      rows: [['-', 'w3', 'worker', 'v1.35.1', 'untouched: at v1.35.1']],
    });
  });

  it('refuses an API server that is not ready; a node an interrupted run left cordoned is only uncordoned', function () {
    const plan = planUpgrade({ nodes: [node('cp1', 'v1.34.1', { apiServerReady: false }), node('w1', 'v1.34.1')], target: '1.35.1', available: ['1.35.1'] });
    expect(plan.ok).to.equal(false);
    if (plan.ok) return;
    expect(formatRefusals('v1.35.1', plan.refusals)).to.equal('upgrade to v1.35.1 refused before any change:\n  api-server-not-ready: the API server does not answer /readyz with 200 on cp1');
    const resumed = planUpgrade({ nodes: [node('cp1', 'v1.35.1'), node('w1', 'v1.35.1', { cordonedForUpgrade: true })], target: '1.35.1', available: ['1.35.1'] });
    expect(resumed).to.deep.equal({ ok: true, target: 'v1.35.1', batches: [[{ node: 'w1', controlPlane: false, actions: ['uncordon'] }]] });
  });
});
