import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.js';

/** Host key types written by `ssh-keygen -A`, as OpenSSH names their files. */
const HOST_KEY_TYPES = ['ed25519', 'ecdsa', 'rsa'] as const;

/**
 * The lab's login key (ed25519, no passphrase, 0600), made once and kept across `down`: the
 * cached rootfs carries its public half in authorized_keys. Returns the public key line.
 */
export async function ensureLabKey(keyPath: string): Promise<string> {
  if (!existsSync(keyPath)) {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'capstan-lab', '-f', keyPath]);
  }
  return readFileSync(`${keyPath}.pub`, 'utf8').trim();
}

/**
 * Generates the host keys that are missing under `root` with the host's own `ssh-keygen -A`
 * (chrooted into its overlay): a fresh overlay gets fresh keys, a restarted host keeps its own.
 */
export async function generateHostKeys(root: string): Promise<void> {
  await run('chroot', [root, 'ssh-keygen', '-A']);
}

/** known_hosts lines (`address type base64`) for the public host keys found under `root`. */
function knownHostsLines(address: string, root: string): string[] {
  return HOST_KEY_TYPES.map((type) => join(root, 'etc/ssh', `ssh_host_${type}_key.pub`))
    .filter((path) => existsSync(path))
    .map((path) => {
      const [keyType, blob] = readFileSync(path, 'utf8').trim().split(/\s+/);
      return `${address} ${keyType} ${blob}`;
    });
}

/** Writes the lab's known_hosts: every host's freshly generated keys, so clients verify, not trust. */
export function writeKnownHosts(path: string, hosts: readonly { address: string; root: string }[]): void {
  const lines = hosts.flatMap((host) => knownHostsLines(host.address, host.root));
  writeFileSync(path, `${lines.join('\n')}\n`, { mode: 0o644 });
}
