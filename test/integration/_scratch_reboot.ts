import { labStatus, startHost } from '../../runner/lab/index.js';
import { runTasks } from '../helpers/tasks.js';
import { reboot } from '../../tasks/kernel.js';

const lab = (await labStatus())!;
const t0 = Date.now();
let restarted = false;
const watcher = (async () => {
  for (let i = 0; i < 120; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const s = await labStatus();
    const up = s!.hosts[0]!.up;
    if (!up) { console.log('down at', Date.now() - t0); await startHost('node1'); restarted = true; console.log('restarted at', Date.now() - t0); return; }
  }
})();
const run = await runTasks(lab, 'all', [reboot({ timeoutMs: 60_000 })]);
await watcher;
for (const t of run.tasks) console.log(JSON.stringify(t));
console.log(run.recap, restarted, Date.now() - t0);
