import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { systemEnv } from './proc.js';

const UNSUPPORTED =
  'capstan lab needs root on Linux with systemd-nspawn (apt-get install systemd-container mmdebstrap apt-cacher-ng)';
/** Programs the lab runs (Debian: systemd-container, mmdebstrap, apt-cacher-ng, iproute2, openssh-client, util-linux, coreutils). */
const REQUIRED_PROGRAMS = ['systemd-nspawn', 'mmdebstrap', 'apt-cacher-ng', 'ip', 'ssh-keygen', 'nsenter', 'mount', 'chroot'];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Why the lab cannot run here, or null when it can. */
function unsupportedReason(): string | null {
  if (process.platform !== 'linux') return `this is ${process.platform}, not Linux`;
  if (process.getuid?.() !== 0) return 'not running as root';
  const dirs = (systemEnv().PATH ?? '').split(':');
  const missing = REQUIRED_PROGRAMS.filter((program) => !dirs.some((dir) => isExecutable(join(dir, program))));
  return missing.length > 0 ? `missing: ${missing.join(', ')}` : null;
}

/**
 * Throws InputError when the lab cannot run here: not Linux, not root, or a required program
 * (systemd-nspawn, mmdebstrap, apt-cacher-ng, ip, ssh-keygen, …) missing. The reason is the
 * error's `cause`.
 */
export function assertLabSupported(): void {
  const reason = unsupportedReason();
  if (reason) throw new InputError(UNSUPPORTED, { cause: new Error(reason) });
}
