/**
 * What the upgrade playbook says before it changes anything: the plan as a table, node by node in
 * order (shown with ctx.report), or the refusals that stop it. Pure, from the planner's answer.
 */
import type { ReportTable } from '../../runner/index.js';
import type { NodePlan, NodeVersions, Refusal, UpgradeAction } from './upgrade-plan.js';

/** Each planned action as the plan names it; `debian` is the packages' exact version. */
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
 * The plan as a table (pure): one row per node in the order the upgrade takes them (the workers of
 * one batch share a step number), then the nodes already at the target, untouched.
 *
 *   UPGRADE PLAN: V1.35.1 (PACKAGES 1.35.1-1.1), ONE NODE AT A TIME
 *   STEP  NODE    ROLE           KUBELET  ACTIONS
 *   1     k8s-01  control plane  v1.34.1  kubeadm 1.35.1-1.1, kubeadm upgrade apply v1.35.1, cordon, …
 */
export function upgradePlanTable(target: string, debian: string, batches: readonly NodePlan[][], nodes: readonly NodeVersions[], workerBatchSize: number): ReportTable {
  const planned = new Set(batches.flat().map((plan) => plan.node));
  const role = (node: NodeVersions) => (node.controlPlane ? 'control plane' : 'worker');
  const pace = workerBatchSize > 1 ? `control planes one at a time, workers ${workerBatchSize} at a time` : 'one node at a time';
  const rows = batches.flatMap((batch, index) =>
    batch.map((plan) => {
      const node = nodes.find((candidate) => candidate.name === plan.node)!;
      return [String(index + 1), plan.node, role(node), node.kubelet, plan.actions.flatMap((action) => actionText(action, target, debian)).join(', ')];
    }),
  );
  const untouched = nodes.filter((node) => !planned.has(node.name)).map((node) => ['-', node.name, role(node), node.kubelet, `untouched: at ${target}`]);
  return {
    title: batches.length ? `upgrade plan: ${target} (packages ${debian}), ${pace}` : `upgrade plan: every node is at ${target}, nothing to do`,
    columns: ['STEP', 'NODE', 'ROLE', 'KUBELET', 'ACTIONS'],
    rows: [...rows, ...untouched],
  };
}

/** The refusal message: what was refused, that nothing changed, then one line per rule (pure). */
export function formatRefusals(target: string, refusals: readonly Refusal[]): string {
  return [`upgrade to ${target} refused before any change:`, ...refusals.map((refusal) => `  ${refusal.rule}: ${refusal.message}`)].join('\n');
}
