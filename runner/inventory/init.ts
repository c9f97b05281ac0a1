/**
 * `capstan inventory init`: a first inventory for one of the topologies, without hand-editing YAML.
 * It starts from the topology's example inventory (inventory/*.yaml, where every variable is
 * documented in comments) and replaces its hosts with the user's, keeping the comments, so the
 * result reads like the example and `capstan run` accepts it as is.
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { randomInt } from 'node:crypto';
import { Document, isMap, isScalar, parseDocument, type YAMLMap } from 'yaml';
import { InputError } from '../errors.js';
import { parseInventory } from './index.js';

/** The topologies `init` knows: each one's playbook, example inventory and group names. */
const TOPOLOGIES = {
  'single-node': { playbook: 'single-node.ts', example: 'single.yaml', controlPlanes: 'control_plane', balancer: undefined },
  'pi-cluster': { playbook: 'pi-cluster.ts', example: 'home.yaml', controlPlanes: 'control_plane', balancer: undefined },
  'stacked-ha': { playbook: 'stacked-ha.ts', example: 'ha.yaml', controlPlanes: 'control_plane', balancer: 'balancer' },
  'hard-way': { playbook: 'hard-way.ts', example: 'hard-way.yaml', controlPlanes: 'controllers', balancer: 'loadbalancer' },
} as const;

export type Topology = keyof typeof TOPOLOGIES;
export const TOPOLOGY_NAMES = Object.keys(TOPOLOGIES) as Topology[];

/** What the user asked for (the CLI's flags, lists already split at commas). */
export interface InventoryInitRequest {
  topology: string;
  /** `[name=]address` for each control plane (controller, for the hard way). */
  controlPlanes: string[];
  workers: string[];
  /** `[name=]address` of the external load balancer (stacked-ha's balancer variant, the hard way). */
  balancer?: string;
  /** The keepalived VIP (stacked-ha's VIP variant). */
  vip?: string;
  user?: string;
  /** The command line, recorded in the file's first comment. */
  commandLine: string;
  /** Where the text will be written, for the usage lines of its header (stdout: none). */
  output?: string;
}

interface HostSpec {
  name: string;
  address: string;
}

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]*[$]?$/;

/**
 * The inventory text for a request: the topology's example with the user's hosts (and VIP, user).
 * @throws InputError naming the flag and the value on bad input.
 */
export function initInventory(request: InventoryInitRequest): string {
  const topology = TOPOLOGIES[request.topology as Topology];
  if (!topology) throw new InputError(`--topology must be one of ${TOPOLOGY_NAMES.join(', ')}, not "${request.topology}"`);
  const name = request.topology as Topology;
  const controlPlanes = hostSpecs('--control-plane', request.controlPlanes, name === 'hard-way' ? (i) => `controller-${i}` : (i) => `cp-${i + 1}`);
  const workers = hostSpecs('--workers', request.workers, (i) => `worker-${i + 1}`);
  const balancer = request.balancer === undefined ? undefined : hostSpecs('--balancer', [request.balancer], () => topology.balancer ?? 'balancer')[0];
  checkShape(name, { controlPlanes, workers, balancer, vip: request.vip });
  if (request.vip !== undefined && !isIP(request.vip)) throw new InputError(`--vip must be an IP address, not "${request.vip}"`);
  if (request.user !== undefined && !USER_NAME.test(request.user)) throw new InputError(`--user must be a user name, not "${request.user}"`);
  const names = [...controlPlanes, ...workers, ...(balancer ? [balancer] : [])].map((host) => host.name);
  const twice = names.find((host, i) => names.indexOf(host) !== i);
  if (twice) throw new InputError(`host name ${twice} is given twice`);

  const exampleFile = name === 'stacked-ha' && request.vip !== undefined ? 'ha-vip.yaml' : topology.example;
  const examplePath = fileURLToPath(new URL(`../../inventory/${exampleFile}`, import.meta.url));
  const doc = parseDocument(readFileSync(examplePath, 'utf8'));
  const vars = doc.getIn(['all', 'vars']);
  if (!isMap(vars)) throw new Error(`${examplePath}: all.vars is not a mapping`);
  if (request.user !== undefined) {
    vars.set('ansible_user', request.user);
    // Capstan escalates with sudo for any user but root (the seeds' `sudo …`).
    if (request.user === 'root') vars.delete('ansible_become');
    else vars.set('ansible_become', true);
  }
  if (request.vip !== undefined) vars.set('vip_address', request.vip);
  // The example's VRRP password is public: every generated inventory gets its own (8 characters, keepalived's limit).
  if (vars.has('vip_auth_pass')) vars.set('vip_auth_pass', randomPassword(8));

  const children = doc.getIn(['all', 'children']);
  if (!isMap(children)) throw new Error(`${examplePath}: all.children is not a mapping`);
  const hardWay = name === 'hard-way';
  setGroupHosts(doc, children, topology.controlPlanes, controlPlanes, hardWay);
  if (children.has('workers')) setGroupHosts(doc, children, 'workers', workers, hardWay);
  if (topology.balancer && children.has(topology.balancer)) {
    if (balancer) setGroupHosts(doc, children, topology.balancer, [balancer], hardWay);
    else children.delete(topology.balancer);
  }
  // The example's header (attached to the document or to its first key) names the example's own path: replaced.
  if (isMap(doc.contents)) {
    doc.contents.commentBefore = null;
    const first = doc.contents.items[0];
    if (first && isScalar(first.key)) first.key.commentBefore = null;
  }
  doc.commentBefore = headerComment(`playbooks/${topology.playbook}`, exampleFile, request);
  const text = doc.toString({ lineWidth: 0 });
  parseInventory(text, '<inventory init>'); // what run will read: a bug here must not reach the user's file
  return text;
}

function hostSpecs(flag: string, values: string[], defaultName: (index: number) => string): HostSpec[] {
  return values.map((value, index) => {
    const eq = value.indexOf('=');
    const name = eq < 0 ? defaultName(index) : value.slice(0, eq);
    const address = eq < 0 ? value : value.slice(eq + 1);
    if (!HOST_NAME.test(name)) throw new InputError(`${flag} ${value}: "${name}" is not a valid host name`);
    if (!isIP(address) && !DNS_NAME.test(address)) throw new InputError(`${flag} ${value}: "${address}" is neither an IP address nor a DNS name`);
    return { name, address };
  });
}

/** The topology's rules on how many hosts of each kind, checked before anything is written. */
function checkShape(name: Topology, hosts: { controlPlanes: HostSpec[]; workers: HostSpec[]; balancer: HostSpec | undefined; vip: string | undefined }): void {
  const { controlPlanes, workers, balancer, vip } = hosts;
  if (controlPlanes.length === 0) throw new InputError(`--control-plane is required: the address of at least one ${name === 'hard-way' ? 'controller' : 'control plane'}`);
  if ((name === 'single-node' || name === 'pi-cluster') && controlPlanes.length !== 1) {
    throw new InputError(`${name} has exactly one control plane; got ${controlPlanes.length} (stacked-ha has several)`);
  }
  if (name === 'stacked-ha' && (balancer === undefined) === (vip === undefined)) {
    throw new InputError('stacked-ha needs exactly one of --balancer ADDRESS (an external HAProxy machine) or --vip ADDRESS (keepalived on the control planes)');
  }
  if (name === 'hard-way' && balancer === undefined) throw new InputError('hard-way needs --balancer ADDRESS: the HAProxy machine in front of the controllers');
  if (name === 'hard-way' && workers.length > 0) throw new InputError('hard-way has no workers group: its playbook builds the control plane only');
  if (name !== 'stacked-ha' && vip !== undefined) throw new InputError(`--vip is for stacked-ha only, not ${name}`);
  if ((name === 'single-node' || name === 'pi-cluster') && balancer !== undefined) throw new InputError(`--balancer is for stacked-ha and hard-way, not ${name}`);
}

/** Replaces a group's hosts; the hard way's hosts also get `ip:` (its playbook's --advertise-address). */
function setGroupHosts(doc: Document, children: YAMLMap, group: string, hosts: HostSpec[], withIp: boolean): void {
  const hostMap = doc.createNode(
    Object.fromEntries(hosts.map((host) => [host.name, withIp ? { ansible_host: host.address, ip: host.address } : { ansible_host: host.address }])),
  );
  if (hosts.length === 0) hostMap.flow = true; // `hosts: {}`, as the examples write an empty group
  const groupNode = children.get(group);
  if (isMap(groupNode)) groupNode.set('hosts', hostMap);
  else children.set(group, doc.createNode({ hosts: hostMap.toJSON() }));
}

/** The file's first comment: what it is, how it was made, how to use it (the example's header names the example's own path). */
function headerComment(playbook: string, exampleFile: string, request: InventoryInitRequest): string {
  const file = request.output ?? '<this file>';
  return [
    ` Inventory for ${playbook}, written by:`,
    `   ${request.commandLine}`,
    ` The variables are those of inventory/${exampleFile}, explained there and in the README ("Playbook variables").`,
    '',
    `   capstan run ${playbook} -i ${file} --check    # what would change`,
    `   capstan run ${playbook} -i ${file}            # apply`,
  ].join('\n');
}

/** Letters and digits, no characters a YAML or keepalived config would need quoted. */
function randomPassword(length: number): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('');
}
