/**
 * stacked-ha's load balancing in front of the API servers, in one place for the playbooks that
 * render it: stacked-ha.ts builds it, remove-node.ts renders it again without a removed control
 * plane. Two variants (the inventory picks): seed 002's external balancer host (haproxy
 * <balancer ip>:6443, TCP checks) or seed 004's haproxy + keepalived VIP on every control plane
 * (haproxy *:vip_port, /healthz checks).
 */
import { InputError } from '../../runner/index.js';
import type { Inventory } from '../../runner/inventory/index.js';
import type { HaproxyParams, HaproxyServer } from '../../tasks/index.js';
import { hostIp, hostsOf, type VarReader } from '../vars.js';

export type HaVariant = 'balancer' | 'vip';

/** Which variant an inventory asks for: a non-empty `balancer` group, or `vip_address` (not both). */
export function haVariant(balancers: number, vars: VarReader): HaVariant {
  const vip = vars.has('vip_address');
  if (balancers > 0 && vip) throw new InputError('stacked-ha.ts: the inventory has both a balancer group and vip_address: pick one (seed 002 or seed 004)');
  if (balancers > 0) return 'balancer';
  if (vip) return 'vip';
  throw new InputError('stacked-ha.ts needs a load balancer in front of the API servers: a balancer group (seed 002, inventory/ha.yaml) or vip_address (seed 004, inventory/ha-vip.yaml)');
}

/** Where haproxy runs and what it is given, less its servers. */
export interface HaproxyPlacement {
  variant: HaVariant;
  /** The hosts running haproxy: `balancer`, or `control_plane` (the VIP variant). */
  group: 'balancer' | 'control_plane';
  /** haproxy's parameters for a list of API servers. */
  params(servers: readonly HaproxyServer[]): HaproxyParams;
}

/** The API servers behind haproxy: each control plane's address, port 6443 (addresses checked before any connection). */
export function apiServers(hosts: readonly { name: string; vars: Readonly<Record<string, unknown>> }[]): HaproxyServer[] {
  return hosts.map((host) => ({ name: host.name, address: hostIp(host), port: 6443 }));
}

/**
 * The inventory's haproxy placement, or undefined when it has no load balancer (single-node,
 * pi-cluster: one API server, no balancer group and no vip_address).
 */
export function haproxyPlacement(inventory: Inventory, vars: VarReader): HaproxyPlacement | undefined {
  return hostsOf(inventory, 'balancer').length === 0 && !vars.has('vip_address') ? undefined : stackedHaPlacement(inventory, vars);
}

/** stacked-ha's haproxy placement; an InputError saying what to add when the inventory picks no variant, or both. */
export function stackedHaPlacement(inventory: Inventory, vars: VarReader): HaproxyPlacement {
  const balancers = hostsOf(inventory, 'balancer');
  const variant = haVariant(balancers.length, vars);
  if (variant === 'balancer') {
    if (balancers.length > 1) throw new InputError(`the balancer group lists ${balancers.map((b) => b.name).join(', ')}: seed 002 has one balancer (for two, use the VIP variant)`);
    const bind = `${hostIp(balancers[0]!)}:6443`;
    return { variant, group: 'balancer', params: (servers) => ({ bind, check: 'tcp', servers }) };
  }
  const vipPort = vars.integer('vip_port', 8888, 1, 65535);
  return { variant, group: 'control_plane', params: (servers) => ({ bind: `*:${vipPort}`, check: 'healthz', servers }) };
}
