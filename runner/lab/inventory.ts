import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { BRIDGE, SUBNET } from './paths.js';
import type { HostRecord, LabRecord } from './state.js';

/** First line of every inventory the lab writes; `down` deletes only files that start with it. */
const HEADER = '# Capstan lab inventory';

function header(record: LabRecord): string {
  return [
    `${HEADER}, written by \`capstan lab up\` on ${new Date().toISOString()}:`,
    `# ${record.hosts.length} systemd-nspawn Debian hosts on bridge ${BRIDGE} (${SUBNET}), lab state in ${record.dir}.`,
    `# Host keys are pinned in ${record.knownHostsPath}. Remove the lab (and this file) with \`capstan lab down\`.`,
    '',
  ].join('\n');
}

/** Groups in order of first appearance, each with its members. */
function groupMembers(hosts: readonly HostRecord[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const host of hosts) {
    for (const group of host.groups) groups.set(group, [...(groups.get(group) ?? []), host.name]);
  }
  return groups;
}

/** The inventory in Ansible's YAML format; connection settings are group vars of `all`. */
export function renderInventory(record: LabRecord): string {
  const hosts = Object.fromEntries(
    // The lab's address wins over a host var of the same name: it is the only one that works.
    record.hosts.map((host) => [host.name, { ...host.vars, ansible_host: host.address }]),
  );
  const children = Object.fromEntries(
    [...groupMembers(record.hosts)].map(([group, members]) => [
      group,
      { hosts: Object.fromEntries(members.map((name) => [name, null])) },
    ]),
  );
  const all = {
    vars: {
      ansible_user: 'root',
      ansible_ssh_private_key_file: record.keyPath,
      capstan_known_hosts_file: record.knownHostsPath,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${record.knownHostsPath}`,
    },
    hosts,
    ...(Object.keys(children).length > 0 ? { children } : {}),
  };
  return header(record) + stringify({ all }, { nullStr: '' });
}

export function writeInventory(record: LabRecord): void {
  writeFileSync(record.inventoryPath, renderInventory(record));
}

/** Deletes the inventory if the lab wrote it (a file the user put there instead is left alone). */
export function removeInventory(path: string): void {
  if (existsSync(path) && readFileSync(path, 'utf8').startsWith(HEADER)) rmSync(path);
}
