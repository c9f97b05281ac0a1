/**
 * group_vars/ and host_vars/ beside the inventory file, loaded like Ansible's host_group_vars
 * vars plugin: for each group or host name the first of `<name>` (a file, or a directory read
 * recursively in sorted order), `<name>.yml`, `<name>.yaml`, `<name>.json`; inside a directory
 * only files with those extensions or none, skipping hidden files and `~` backups. Later files
 * replace earlier keys. Only names that exist in the inventory are looked up, as in Ansible, and
 * an `ansible_group_priority` found here is an ordinary variable (Ansible reads it from the
 * inventory source only, because it is needed to order these very files).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { isMap, isScalar } from 'yaml';
import { InputError } from '../errors.js';
import type { FileVars } from './model.js';
import type { Vars } from './types.js';
import { readYaml } from './yaml.js';

const EXTENSIONS = ['.yml', '.yaml', '.json'];

/** Reads `<dir>/group_vars` and `<dir>/host_vars` for the given group and host names. */
export async function loadVarsDirs(dir: string, groups: Iterable<string>, hosts: Iterable<string>): Promise<FileVars> {
  return {
    groups: await loadEntities(join(dir, 'group_vars'), groups),
    hosts: await loadEntities(join(dir, 'host_vars'), hosts),
  };
}

async function loadEntities(dir: string, names: Iterable<string>): Promise<Map<string, Vars>> {
  const loaded = new Map<string, Vars>();
  if ((await kindOf(dir)) !== 'directory') return loaded;
  for (const name of names) {
    // Like Ansible: a name that is an absolute path (a chroot "host") has no vars files.
    if (name.startsWith('/')) continue;
    const files = await findVarsFiles(dir, name);
    if (files.length === 0) continue;
    const vars: Vars = {};
    for (const file of files) Object.assign(vars, await readVarsFile(file));
    loaded.set(name, vars);
  }
  return loaded;
}

async function findVarsFiles(dir: string, name: string): Promise<string[]> {
  for (const extension of ['', ...EXTENSIONS]) {
    const path = join(dir, name + extension);
    const kind = await kindOf(path);
    if (kind === 'directory') return listVarsDir(path);
    if (kind === 'file') return [path];
  }
  return [];
}

async function listVarsDir(dir: string): Promise<string[]> {
  const found: string[] = [];
  // Plain code-point order, as Python's sorted(os.listdir()).
  for (const entry of (await readdir(dir)).sort()) {
    if (entry.startsWith('.') || entry.endsWith('~')) continue;
    const path = join(dir, entry);
    const extension = extname(entry);
    const kind = await kindOf(path);
    if (kind === 'directory' && extension === '') found.push(...(await listVarsDir(path)));
    else if (kind === 'file' && (extension === '' || EXTENSIONS.includes(extension))) found.push(path);
  }
  return found;
}

/** One vars file: a YAML (or JSON) mapping; an empty file counts as no vars, as in Ansible. */
async function readVarsFile(path: string): Promise<Vars> {
  const text = await readFile(path, 'utf8');
  if (text.startsWith('$ANSIBLE_VAULT;')) {
    throw new InputError('Ansible Vault encrypted vars files are not supported; decrypt it or pass the secret another way', {
      location: `${path}:1:1`,
    });
  }
  const { doc, at } = readYaml(text, path);
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return {};
  if (!isMap(doc.contents)) throw new InputError('a vars file must be a mapping of variable names to values', { location: at(doc.contents) });
  return doc.toJS() as Vars;
}

async function kindOf(path: string): Promise<'file' | 'directory' | undefined> {
  const stats = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw error;
  });
  if (stats?.isDirectory()) return 'directory';
  return stats?.isFile() ? 'file' : undefined;
}
