import { loadInventory } from '../../runner/inventory/index.js';
import { hostFactory } from '../../runner/connect.js';
import { runPlaybook, type RunSummary } from '../../runner/run.js';
import { playbook } from '../../runner/playbook.js';
import type { RunEvent } from '../../runner/events.js';
import type { Task } from '../../runner/task.js';
import type { LabState } from '../../runner/lab/index.js';

export interface TaskRun extends RunSummary {
  events: RunEvent[];
  /** task events only */
  tasks: Extract<RunEvent, { type: 'task' }>[];
}

/**
 * Runs tasks on lab hosts through the real engine and SSH transport (in-process, so tests can
 * inspect events): one play on `pattern`, check mode or apply.
 */
export async function runTasks(lab: LabState, pattern: string, tasks: Task<unknown>[], options: { check?: boolean } = {}): Promise<TaskRun> {
  const inventory = await loadInventory(lab.inventoryPath);
  const events: RunEvent[] = [];
  const summary = await runPlaybook(
    playbook('test', async ({ play }) => {
      await play('test', pattern, tasks);
    }),
    {
      inventory,
      checkMode: options.check === true,
      forks: 50,
      extraVars: {},
      reporter: { emit: (event) => void events.push(event), close: () => undefined },
      connect: hostFactory({ acceptNewHostKeys: false }),
    },
  );
  return { ...summary, events, tasks: events.filter((e): e is Extract<RunEvent, { type: 'task' }> => e.type === 'task') };
}
