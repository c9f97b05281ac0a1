import { join } from 'node:path';

/**
 * Names and addresses of the lab, in one place. Network names are derived from the host's address,
 * not its name: host names come from the user and may be long, while interface names have a
 * 15-character limit and netns names become file names.
 */

/**
 * Which lab network this process uses: CAPSTAN_LAB_NET=N (0–9) gives bridge capbrN on 10.77.N.0/24,
 * so several labs (parallel test suites, each with its own CAPSTAN_LAB_DIR) can be up at once.
 */
export const LAB_NET = labNetIndex(process.env.CAPSTAN_LAB_NET);

function labNetIndex(value: string | undefined): number {
  const index = Number(value ?? 0);
  if (!Number.isInteger(index) || index < 0 || index > 9) throw new Error(`CAPSTAN_LAB_NET must be 0..9, not ${value}`);
  return index;
}

/** The lab bridge in the machine's own network namespace. */
export const BRIDGE = `capbr${LAB_NET}`;
/** The machine's address on the bridge: gateway of every host and where apt-cacher-ng listens. */
export const GATEWAY = `10.77.${LAB_NET}.1`;
export const PREFIX_LENGTH = 24;
export const SUBNET = `10.77.${LAB_NET}.0/${PREFIX_LENGTH}`;
/** Fixed, so the bridge MAC does not change as ports come and go (hosts would keep a stale ARP entry). */
export const BRIDGE_MAC = `52:54:00:77:0${LAB_NET}:01`;
export const APT_PROXY_PORT = 3142;
export const APT_PROXY_URL = `http://${GATEWAY}:${APT_PROXY_PORT}`;
/** Last octet of the first host's address; .2–.10 stay free for VIPs in tests. */
const FIRST_HOST_OCTET = 11;
/** How many hosts fit in the /24 after FIRST_HOST_OCTET (.255 is broadcast). */
export const MAX_HOSTS = 254 - FIRST_HOST_OCTET + 1;

/** The lab's state directory: `CAPSTAN_LAB_DIR`, else /var/tmp/capstan-lab (survives reboots, unlike /tmp). */
export function labDir(): string {
  return process.env.CAPSTAN_LAB_DIR ?? '/var/tmp/capstan-lab';
}

/** Where the lab key and the root filesystem are cached: CAPSTAN_LAB_CACHE, else the lab directory (shared by parallel labs). */
export function labCacheDir(dir: string = labDir()): string {
  return process.env.CAPSTAN_LAB_CACHE ?? dir;
}

/** Address of the host at position `index` (0-based) in the lab. */
export function hostAddress(index: number): string {
  return `10.77.${LAB_NET}.${FIRST_HOST_OCTET + index}`;
}

function lastOctet(address: string): number {
  return Number(address.split('.')[3]);
}

/**
 * A MAC fixed per address: a host re-created with the same IP and a new random MAC hits the
 * machine's stale ARP entry and waits 30+ s of SYN retries (measured in the lab notes).
 */
export function hostMac(address: string): string {
  return `52:54:00:77:${(0x10 + LAB_NET).toString(16)}:${lastOctet(address).toString(16).padStart(2, '0')}`;
}

export function netnsName(address: string): string {
  return `capstan-lab-${LAB_NET}-${lastOctet(address)}`;
}

/** The machine-side end of the host's veth pair (the host side is eth0 inside its netns). */
export function vethName(address: string): string {
  return `capv${LAB_NET}x${lastOctet(address)}`;
}

/** Files and directories under the lab directory. */
export function labPaths(dir: string = labDir()) {
  return {
    state: join(dir, 'state.json'),
    lock: join(dir, 'lock'),
    key: join(labCacheDir(dir), 'id_ed25519'),
    knownHosts: join(dir, 'known_hosts'),
    inventory: join(dir, 'inventory.yaml'),
    hosts: join(dir, 'hosts'),
    rootfsParent: join(labCacheDir(dir), 'rootfs'),
    aptProxy: join(dir, 'apt-cacher-ng'),
  };
}

/** Per-host directories: overlay upper/work layers, the mounted root, the console log. */
export function hostPaths(dir: string, name: string) {
  const base = join(labPaths(dir).hosts, name);
  return {
    upper: join(base, 'upper'),
    work: join(base, 'work'),
    root: join(base, 'root'),
    console: join(base, 'console.log'),
  };
}
