import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Host } from '../../runner/host.js';
import { LocalTransport } from '../../runner/transport/local.js';
import { runTask, type HostRunState, type TaskOutcome } from '../../runner/engine.js';
import type { HostView, Task } from '../../runner/task.js';
import { parseFacts } from '../../runner/facts.js';

/** A Host on this machine (local transport) and a scratch directory, for task tests without SSH. */
export function localHost(): { host: Host; view: HostView; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'capstan-test-'));
  const host = new Host('local', {}, new LocalTransport('local'), { enabled: false, user: 'root' }, userInfo().username);
  const view: HostView = { name: 'local', vars: {}, facts: parseFacts('hostname=local\narch=amd64\nosId=debian\ncodename=bookworm\n') };
  return { host, view, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs one task through the engine (check → apply → verify) on a local host. */
export function run(local: { host: Host; view: HostView }, task: Task<unknown>, checkMode = false, state: HostRunState = { pendingChanges: [] }): Promise<TaskOutcome> {
  return runTask(local.host, local.view, task.bind(local.view), { checkMode, state, log: () => undefined });
}
