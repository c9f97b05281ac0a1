import pLimit from 'p-limit';
import { TransportError, errorMessage } from './errors.js';
import { exitCodeOf } from './exit-codes.js';
import type { Host } from './host.js';
import type { InventoryHost } from './inventory/index.js';
import { raw, sh, type Command } from './quote.js';

export interface ExecSettings {
  connect: (host: InventoryHost) => Host;
  forks: number;
  json: boolean;
  write: (text: string) => void;
}

/** One argument is shell text typed by the user; several are an argv, each quoted. */
export function remoteCommand(words: string[]): Command {
  return words.length === 1 ? sh`${raw(words[0]!)}` : sh`${words}`;
}

/**
 * `capstan exec`: the command on every host in parallel. Each host's output is printed as one block
 * when that host finishes, so output is grouped per host, never interleaved. Returns the exit code:
 * 4 if a host was unreachable, 2 if a command failed, else 0.
 */
export async function execOnHosts(hosts: InventoryHost[], words: string[], settings: ExecSettings): Promise<number> {
  const command = remoteCommand(words);
  const limit = pLimit(settings.forks);
  let failed = false;
  let unreachable = false;
  await Promise.all(
    hosts.map((inventoryHost) =>
      limit(async () => {
        let host: Host | undefined;
        try {
          host = settings.connect(inventoryHost);
          await host.connect();
          const result = await host.exec(command);
          if (result.code !== 0) failed = true;
          print(settings, inventoryHost.name, result.code === 0 ? 'CHANGED' : 'FAILED', result.code, result.stdout, result.stderr);
        } catch (error) {
          if (error instanceof TransportError) unreachable = true;
          else failed = true;
          print(settings, inventoryHost.name, error instanceof TransportError ? 'UNREACHABLE' : 'FAILED', null, '', errorMessage(error));
        } finally {
          await host?.close().catch(() => undefined);
        }
      }),
    ),
  );
  return exitCodeOf({ anyUnreachable: unreachable, anyFailed: failed });
}

function print(settings: ExecSettings, host: string, status: string, code: number | null, stdout: string, stderr: string): void {
  if (settings.json) {
    settings.write(`${JSON.stringify({ type: 'exec', host, status: status.toLowerCase(), rc: code, stdout, stderr })}\n`);
    return;
  }
  const body = [stdout.replace(/\n$/, ''), stderr.replace(/\n$/, '')].filter(Boolean).join('\n');
  settings.write(`${host} | ${status} | rc=${code ?? '-'} >>\n${body ? `${body}\n` : ''}`);
}
