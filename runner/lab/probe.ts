import { connect } from 'node:net';

/**
 * Connects to `host:port` and resolves with the first line the server sends (up to `timeoutMs`),
 * '' when it accepts but sends nothing in time, or null when the connection fails.
 */
function firstLine(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let connected = false;
    let received = '';
    const finish = (value: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(connected ? received : null), timeoutMs);
    socket.on('connect', () => {
      connected = true;
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (received.includes('\n')) finish(received.split(/\r?\n/)[0] ?? '');
    });
    socket.on('error', () => finish(null));
    socket.on('close', () => finish(connected ? received : null));
  });
}

/** True when something accepts TCP connections on `host:port`. */
export function portOpen(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (open: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(open);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('connect', () => finish(true));
    socket.on('error', () => finish(false));
  });
}

/** True when an SSH server answers on `host:22` with its version banner: sshd is really serving. */
export async function sshdAnswers(host: string, timeoutMs = 1000): Promise<boolean> {
  return (await firstLine(host, 22, timeoutMs))?.startsWith('SSH-') ?? false;
}
