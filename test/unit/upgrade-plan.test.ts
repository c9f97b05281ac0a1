import { expect } from 'chai';
import { planUpgrade, type NodeVersions, type UpgradeRequest } from '../../playbooks/lib/upgrade-plan.js';

const AVAILABLE = ['1.34.1-1.1', '1.34.2-1.1', '1.35.0-1.1', '1.35.1-1.1'].map((v) => v.replace(/-1\.1$/, ''));

function node(name: string, version: string, options: Partial<NodeVersions> = {}): NodeVersions {
  const controlPlane = options.controlPlane ?? name.startsWith('cp');
  return { name, controlPlane, kubelet: version, kubeadm: version, ...(controlPlane ? { apiServer: version } : {}), ready: true, ...options };
}

const cluster = (version: string) => [node('cp1', version), node('cp2', version), node('cp3', version), node('w1', version), node('w2', version), node('w3', version)];
const request = (nodes: NodeVersions[], target: string, extra: Partial<UpgradeRequest> = {}): UpgradeRequest => ({ nodes, target, available: AVAILABLE, ...extra });
const FULL = ['drain', 'kubelet-kubectl-packages', 'restart-kubelet', 'wait-ready', 'uncordon'];

describe('upgrade planner (playbooks/lib/upgrade-plan.ts)', function () {
  it('orders the first control plane (upgrade apply), the other control planes (upgrade node), then workers one at a time', function () {
    expect(planUpgrade(request(cluster('v1.34.1'), '1.35.1'))).to.deep.equal({
      ok: true,
      target: 'v1.35.1',
      batches: [
        [{ node: 'cp1', controlPlane: true, actions: ['kubeadm-package', 'kubeadm-upgrade-apply', ...FULL] }],
        [{ node: 'cp2', controlPlane: true, actions: ['kubeadm-package', 'kubeadm-upgrade-node', ...FULL] }],
        [{ node: 'cp3', controlPlane: true, actions: ['kubeadm-package', 'kubeadm-upgrade-node', ...FULL] }],
        [{ node: 'w1', controlPlane: false, actions: ['kubeadm-package', 'kubeadm-upgrade-node', ...FULL] }],
        [{ node: 'w2', controlPlane: false, actions: ['kubeadm-package', 'kubeadm-upgrade-node', ...FULL] }],
        [{ node: 'w3', controlPlane: false, actions: ['kubeadm-package', 'kubeadm-upgrade-node', ...FULL] }],
      ],
    });
  });

  it('batches workers by the batch size, control planes always one at a time', function () {
    const plan = planUpgrade(request(cluster('1.34.2'), 'v1.35.0', { workerBatchSize: 2 }));
    expect(plan.ok && plan.batches.map((batch) => batch.map((p) => p.node))).to.deep.equal([['cp1'], ['cp2'], ['cp3'], ['w1', 'w2'], ['w3']]);
    expect(() => planUpgrade(request(cluster('1.34.2'), 'v1.35.0', { workerBatchSize: 0 }))).to.throw('the worker batch size must be a whole number ≥ 1, not 0');
  });

  it('plans nothing on a converged cluster, and only what is left after an interrupted run', function () {
    expect(planUpgrade(request(cluster('v1.35.1'), '1.35.1'))).to.deep.equal({ ok: true, target: 'v1.35.1', batches: [] });
    // Interrupted after cp1's upgrade apply, before its kubelet: the others use upgrade node, none runs apply again.
    const nodes = cluster('v1.34.1');
    nodes[0] = node('cp1', 'v1.34.1', { kubeadm: 'v1.35.1', apiServer: 'v1.35.1' });
    nodes[3] = node('w1', 'v1.35.1');
    const plan = planUpgrade(request(nodes, '1.35.1'));
    expect(plan.ok && plan.batches.map((batch) => batch.map((p) => [p.node, p.actions[0], p.actions[1]]))).to.deep.equal([
      [['cp1', 'drain', 'kubelet-kubectl-packages']],
      [['cp2', 'kubeadm-package', 'kubeadm-upgrade-node']],
      [['cp3', 'kubeadm-package', 'kubeadm-upgrade-node']],
      [['w2', 'kubeadm-package', 'kubeadm-upgrade-node']],
      [['w3', 'kubeadm-package', 'kubeadm-upgrade-node']],
    ]);
  });

  it('refuses a downgrade, naming each node and component newer than the target', function () {
    const nodes = cluster('v1.35.0');
    nodes[4] = node('w2', 'v1.35.1');
    expect(planUpgrade(request(nodes, '1.34.2'))).to.deep.equal({
      ok: false,
      refusals: [
        {
          rule: 'downgrade',
          nodes: ['cp1', 'cp2', 'cp3', 'w1', 'w2', 'w3'],
          message: 'v1.34.2 would be a downgrade on cp1 (kubelet v1.35.0, kubeadm v1.35.0, kube-apiserver v1.35.0), cp2 (kubelet v1.35.0, kubeadm v1.35.0, kube-apiserver v1.35.0), cp3 (kubelet v1.35.0, kubeadm v1.35.0, kube-apiserver v1.35.0), w1 (kubelet v1.35.0, kubeadm v1.35.0), w2 (kubelet v1.35.1, kubeadm v1.35.1), w3 (kubelet v1.35.0, kubeadm v1.35.0)',
        },
      ],
    });
    const patch = planUpgrade(request([node('cp1', 'v1.35.0'), node('w1', 'v1.35.1')], '1.35.0'));
    expect(patch).to.deep.equal({ ok: false, refusals: [{ rule: 'downgrade', nodes: ['w1'], message: 'v1.35.0 would be a downgrade on w1 (kubelet v1.35.1, kubeadm v1.35.1)' }] });
  });

  it('refuses a skipped minor, and a target the repository does not carry, together', function () {
    expect(planUpgrade(request([node('cp1', 'v1.34.1'), node('w1', 'v1.34.1', { kubelet: 'v1.33.4' })], '1.36.0'))).to.deep.equal({
      ok: false,
      refusals: [
        { rule: 'not-in-repository', nodes: [], message: 'v1.36.0 is not in the package repository' },
        {
          rule: 'skipped-minor',
          nodes: ['cp1', 'w1'],
          message: 'v1.36.0 skips a minor on cp1 (kubelet v1.34.1, kubeadm v1.34.1, kube-apiserver v1.34.1), w1 (kubelet v1.33.4, kubeadm v1.34.1): upgrade one minor at a time (to v1.35 first)',
        },
      ],
    });
    expect(planUpgrade(request(cluster('v1.34.1'), '1.35.2'))).to.deep.equal({
      ok: false,
      refusals: [{ rule: 'not-in-repository', nodes: [], message: 'v1.35.2 is not in the package repository (it carries v1.35.0, v1.35.1)' }],
    });
  });

  it('refuses when a node is NotReady, naming it, and an unreadable target or node version', function () {
    const nodes = cluster('v1.34.1');
    nodes[1] = node('cp2', 'v1.34.1', { ready: false });
    nodes[5] = node('w3', 'v1.34.1', { ready: false });
    expect(planUpgrade(request(nodes, '1.35.0'))).to.deep.equal({ ok: false, refusals: [{ rule: 'node-not-ready', nodes: ['cp2', 'w3'], message: 'not Ready: cp2, w3' }] });
    expect(planUpgrade(request(cluster('v1.34.1'), '1.35'))).to.deep.equal({
      ok: false,
      refusals: [{ rule: 'invalid-version', nodes: [], message: '"1.35" is not a released Kubernetes version (like 1.35.1)' }],
    });
    expect(planUpgrade(request([node('cp1', 'v1.34.1', { kubelet: '' })], '1.35.0'))).to.deep.equal({
      ok: false,
      refusals: [{ rule: 'invalid-version', nodes: ['cp1'], message: 'unreadable versions on cp1 (kubelet "")' }],
    });
  });

  it('refuses an unhealthy etcd member, and says when quorum is lost; members not read are not judged', function () {
    const withEtcd = (healthy: Record<string, boolean>) => cluster('v1.34.1').map((n) => (n.name in healthy ? { ...n, etcdHealthy: healthy[n.name] } : n));
    expect(planUpgrade(request(withEtcd({ cp1: true, cp2: false, cp3: true }), '1.35.0'))).to.deep.equal({
      ok: false,
      refusals: [{ rule: 'etcd-unhealthy', nodes: ['cp2'], message: 'the etcd member does not answer `etcdctl endpoint health` (or etcdctl is missing) on cp2' }],
    });
    expect(planUpgrade(request(withEtcd({ cp1: true, cp2: false, cp3: false }), '1.35.0'))).to.deep.equal({
      ok: false,
      refusals: [
        {
          rule: 'etcd-unhealthy',
          nodes: ['cp2', 'cp3'],
          message: 'the etcd member does not answer `etcdctl endpoint health` (or etcdctl is missing) on cp2, cp3: etcd has lost quorum (1 of 3 members healthy, 2 needed)',
        },
      ],
    });
    expect(planUpgrade(request(withEtcd({ cp1: true, cp2: true, cp3: true }), '1.35.0')).ok).to.equal(true);
    expect(planUpgrade(request(cluster('v1.34.1'), '1.35.0')).ok).to.equal(true);
  });
});
