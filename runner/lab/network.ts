import { existsSync } from 'node:fs';
import { CapstanError } from '../errors.js';
import { BRIDGE, BRIDGE_MAC, GATEWAY, PREFIX_LENGTH, SUBNET } from './paths.js';
import { run, runIgnoringFailure } from './proc.js';

/** The network side of one host: its netns, its veth pair, its address and fixed MAC. */
export interface HostNetwork {
  address: string;
  mac: string;
  netns: string;
  veth: string;
}

function ip(...args: string[]): Promise<string> {
  return run('ip', args);
}

function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Refuses to shadow a route to the lab subnet that some other device (another lab) owns. */
async function assertSubnetFree(): Promise<void> {
  const routes = JSON.parse((await ip('-j', 'route', 'show', SUBNET)) || '[]') as { dev?: string }[];
  const other = routes.find((route) => route.dev !== BRIDGE);
  if (other) {
    throw new CapstanError(`${SUBNET} is already routed via ${other.dev}: remove that interface before \`capstan lab up\``);
  }
}

/**
 * Creates the lab bridge with the gateway address and a fixed MAC (idempotent). Nothing is
 * forwarded or NATed: hosts reach only each other and the machine (apt-cacher-ng).
 */
export async function ensureBridge(): Promise<void> {
  await assertSubnetFree();
  if (!linkExists(BRIDGE)) await ip('link', 'add', BRIDGE, 'type', 'bridge');
  await ip('link', 'set', BRIDGE, 'address', BRIDGE_MAC);
  await ip('addr', 'replace', `${GATEWAY}/${PREFIX_LENGTH}`, 'dev', BRIDGE);
  await ip('link', 'set', BRIDGE, 'up');
}

export async function removeBridge(name: string): Promise<void> {
  if (linkExists(name)) await ip('link', 'del', name);
}

/**
 * Gives the host its own netns with eth0 (fixed MAC) plugged into the bridge, its address and a
 * default route via the gateway. A netns of the same name left by a crash is replaced.
 */
export async function createHostNetwork(host: HostNetwork): Promise<void> {
  await removeHostNetwork(host);
  await ip('netns', 'add', host.netns);
  await ip('link', 'add', host.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'address', host.mac, 'netns', host.netns);
  // A previous host with this address may have left a neighbour entry: drop it rather than wait it out.
  await runIgnoringFailure('ip', ['neigh', 'flush', 'to', host.address, 'dev', BRIDGE]);
  await ip('link', 'set', host.veth, 'master', BRIDGE, 'up');
  await ip('-n', host.netns, 'link', 'set', 'lo', 'up');
  await ip('-n', host.netns, 'addr', 'add', `${host.address}/${PREFIX_LENGTH}`, 'dev', 'eth0');
  await ip('-n', host.netns, 'link', 'set', 'eth0', 'up');
  await ip('-n', host.netns, 'route', 'add', 'default', 'via', GATEWAY);
}

/** Deletes the host's veth and netns; what is already gone is skipped. */
export async function removeHostNetwork(host: HostNetwork): Promise<void> {
  if (linkExists(host.veth)) await ip('link', 'del', host.veth);
  if (existsSync(`/run/netns/${host.netns}`)) await ip('netns', 'del', host.netns);
}
