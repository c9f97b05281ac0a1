import { labStatus } from '../../runner/lab/index.js';
import { runTasks } from '../helpers/tasks.js';
import { ensureModule, ensureSysctl, ensureMemoryCgroup, reboot } from '../../tasks/kernel.js';
import { ensureSwapOff } from '../../tasks/swap.js';

const lab = (await labStatus())!;
const which = process.argv[2] ?? 'check';
const tasks = [ensureSwapOff(), ensureModule('overlay'), ensureModule('br_netfilter'), ensureSysctl({ 'net.bridge.bridge-nf-call-iptables': 1, 'net.bridge.bridge-nf-call-ip6tables': 1, 'net.ipv4.ip_forward': 1 }), ensureMemoryCgroup(), ensureModule('nosuchmod')];
const run = await runTasks(lab, 'all', tasks, { check: which === 'check' });
for (const t of run.tasks) console.log(JSON.stringify({ task: t.task, status: t.status, message: t.message, drift: t.drift }, null, 1));
console.log(run.recap);
