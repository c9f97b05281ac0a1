/**
 * What the upgrade playbook says before it changes anything: the plan, node by node in order, or
 * the refusals that stop it. Pure text from the planner's answer.
 */
import type { NodePlan, NodeVersions, Refusal, UpgradeAction } from './upgrade-plan.js';

/** Each planned action as the plan line names it; `debian` is the packages' exact version. */
function actionText(action: UpgradeAction, target: string, debian: string): string[] {
  switch (action) {
    case 'kubeadm-package':
      return [`kubeadm ${debian}`];
    case 'kubeadm-upgrade-apply':
      return [`kubeadm upgrade apply ${target}`];
    case 'kubeadm-upgrade-node':
      return ['kubeadm upgrade node'];
    case 'drain':
      return ['cordon', 'drain'];
    case 'kubelet-kubectl-packages':
      return [`kubelet + kubectl ${debian}`];
    case 'restart-kubelet':
      return ['restart kubelet'];
    case 'wait-ready':
      return ['wait Ready'];
    case 'uncordon':
      return ['uncordon'];
  }
}

/**
 * The plan as lines (pure):
 *
 *   upgrade to v1.35.1 (packages 1.35.1-1.1), one node at a time:
 *     1. k8s-01 (control plane, kubelet v1.34.2): kubeadm 1.35.1-1.1, kubeadm upgrade apply v1.35.1, cordon, …
 *     2. k8s-02 (worker, kubelet v1.34.2): …
 *
 * Nodes of one worker batch share a number. Nodes already at the target are named as untouched.
 */
export function formatUpgradePlan(target: string, debian: string, batches: readonly NodePlan[][], nodes: readonly NodeVersions[], workerBatchSize: number): string[] {
  const planned = new Set(batches.flat().map((plan) => plan.node));
  const untouched = nodes.filter((node) => !planned.has(node.name)).map((node) => node.name);
  if (batches.length === 0) return [`upgrade to ${target}: every node is at ${target}, nothing to do`];
  const pace = workerBatchSize > 1 ? `control planes one at a time, workers ${workerBatchSize} at a time` : 'one node at a time';
  const lines = [`upgrade to ${target} (packages ${debian}), ${pace}:`];
  batches.forEach((batch, index) => {
    for (const plan of batch) {
      const node = nodes.find((candidate) => candidate.name === plan.node);
      const role = plan.controlPlane ? 'control plane' : 'worker';
      lines.push(`  ${index + 1}. ${plan.node} (${role}, kubelet ${node?.kubelet ?? '?'}): ${plan.actions.flatMap((action) => actionText(action, target, debian)).join(', ')}`);
    }
  });
  if (untouched.length) lines.push(`  already at ${target}, untouched: ${untouched.join(', ')}`);
  return lines;
}

/** The refusal message: what was refused, that nothing changed, then one line per rule (pure). */
export function formatRefusals(target: string, refusals: readonly Refusal[]): string {
  return [`upgrade to ${target} refused before any change:`, ...refusals.map((refusal) => `  ${refusal.rule}: ${refusal.message}`)].join('\n');
}
