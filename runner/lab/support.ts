import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { run, systemEnv } from './proc.js';

const UNSUPPORTED =
  'capstan lab needs root on Linux with systemd-nspawn (apt-get install systemd-container mmdebstrap apt-cacher-ng)';
/** Programs the lab runs (Debian: systemd-container, mmdebstrap, apt-cacher-ng, iproute2, openssh-client, util-linux, coreutils). */
const REQUIRED_PROGRAMS = ['systemd-nspawn', 'mmdebstrap', 'apt-cacher-ng', 'ip', 'ssh-keygen', 'nsenter', 'mount', 'chroot'];

/** The Debian package that provides each program a lab runs (container lab and VM lab). */
const PACKAGE_OF: Record<string, string> = {
  'systemd-nspawn': 'systemd-container',
  mmdebstrap: 'mmdebstrap',
  'apt-cacher-ng': 'apt-cacher-ng',
  ip: 'iproute2',
  'ssh-keygen': 'openssh-client',
  nsenter: 'util-linux',
  mount: 'mount',
  chroot: 'coreutils',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  mke2fs: 'e2fsprogs',
  tar: 'tar',
};

/** Programs of `programs` that are not on the PATH. */
export function missingPrograms(programs: readonly string[] = REQUIRED_PROGRAMS): string[] {
  const dirs = (systemEnv().PATH ?? '').split(':');
  return programs.filter((program) => !dirs.some((dir) => isExecutable(join(dir, program))));
}

/**
 * On a fresh Debian/Ubuntu machine, installs the Debian packages of the lab's programs that are
 * missing (`apt-get update`, then `apt-get install`), saying so first — so that
 * `npx capstan run playbooks/single-node.ts --lab` works as the first command on a new machine.
 * Does nothing when everything is there, or when this is not root on a machine with apt-get (the
 * assert that follows then says what is missing).
 */
export async function installLabPrerequisites(log: (line: string) => void, programs: readonly string[] = REQUIRED_PROGRAMS): Promise<void> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0 || missingPrograms(['apt-get']).length > 0) return;
  const missing = missingPrograms(programs);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((program) => PACKAGE_OF[program] ?? program))];
  log(`installing what the lab needs (${missing.join(', ')} missing): apt-get install ${packages.join(' ')}`);
  try {
    await run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', 'update', '-q']);
    await run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-q', '--no-install-recommends', ...packages]);
  } catch (error) {
    throw new InputError(`installing the lab's Debian packages (${packages.join(' ')}) failed; install them yourself and run again`, { cause: error });
  }
}

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
  const missing = missingPrograms();
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
