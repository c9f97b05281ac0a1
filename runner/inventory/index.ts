/**
 * Capstan's inventory: Ansible's YAML and INI inventory files, group_vars/ and host_vars/, host
 * patterns, and `ansible-inventory --list` / `--graph` output, with Ansible's semantics.
 */
import { readFile } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { InputError, errorMessage } from '../errors.js';
import { parseIniInventory } from './ini.js';
import { buildInventory, type InventoryData } from './model.js';
import type { Inventory } from './types.js';
import { loadVarsDirs } from './vars-dirs.js';
import { isYamlMapping, parseYamlInventory } from './yaml.js';

export type { Inventory, InventoryGroup, InventoryHost } from './types.js';
export { inventoryFromHosts, toAnsibleList, toGraph, withExtraVars } from './model.js';

/**
 * Reads an inventory file and the group_vars/ and host_vars/ directories beside it.
 * Throws InputError (with `file:line:column` where there is one) on any bad input.
 */
export async function loadInventory(path: string): Promise<Inventory> {
  const text = await readFile(path, 'utf8').catch((error: unknown) => {
    throw new InputError(`cannot read inventory ${path}: ${errorMessage(error)}`, { cause: error });
  });
  const data = parseData(text, path);
  return buildInventory(data, await loadVarsDirs(dirname(path), data.groups.keys(), data.hosts.keys()));
}

/** Parses inventory text (YAML or INI, see parseInventory's format rules) without reading vars directories. */
export function parseInventory(text: string, source: string): Inventory {
  return buildInventory(parseData(text, source));
}

function parseData(text: string, source: string): InventoryData {
  return isYamlInventory(text, source) ? parseYamlInventory(text, source) : parseIniInventory(text, source);
}

const YAML_EXTENSIONS = new Set(['.yml', '.yaml', '.json']);

/**
 * Ansible tries its YAML plugin before its INI one. The extension decides when it names a format,
 * so a broken .yml file reports its YAML error rather than a puzzling INI one; otherwise YAML wins
 * when the text is a YAML mapping, or when its first line is a `---` marker or a bare `key:`,
 * which no INI inventory starts with (so a YAML file with a typo still gets a YAML error).
 */
function isYamlInventory(text: string, source: string): boolean {
  const extension = extname(source).toLowerCase();
  if (YAML_EXTENSIONS.has(extension)) return true;
  if (extension === '.ini') return false;
  if (isYamlMapping(text)) return true;
  const firstLine = text.split(/\r?\n/).find((line) => line.trim() !== '' && !/^\s*[#;]/.test(line)) ?? '';
  return /^(---|[\w.-]+:\s*(#.*)?)$/.test(firstLine.trim());
}
