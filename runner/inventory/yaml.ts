/**
 * Ansible's YAML inventory format (plugins/inventory/yaml.py): every top-level key is a group
 * (normally just `all`), and a group is a mapping of `hosts` (host → vars or nothing), `vars`
 * and `children` (group → group definition), recursively. The document is walked as a YAML
 * syntax tree rather than as plain data so every error can point at the offending key.
 */
import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Document, type ScalarTag, type Tags, type YAMLError } from 'yaml';
import { InputError } from '../errors.js';
import { InventoryData } from './model.js';
import { expandHostPattern } from './pattern.js';

/** A parsed YAML file that can tell where any of its nodes starts. */
export interface YamlFile {
  doc: Document;
  /** `file:line:column` of a node (the document start when there is none). */
  at(node: unknown): string;
}

/** PyYAML's YAML 1.1 booleans: the spec's `y` and `n` are not among them and stay strings. */
const PYYAML_BOOLEANS = {
  true: /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/,
  false: /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/,
};
const BOOL_TAG = 'tag:yaml.org,2002:bool';

function pyyamlBoolean(value: boolean): ScalarTag {
  return { tag: BOOL_TAG, default: true, identify: (item) => item === value, test: PYYAML_BOOLEANS[`${value}`], resolve: () => value };
}

function pyyamlTags(tags: Tags): Tags {
  return tags.map((tag) => (typeof tag === 'object' && tag.tag === BOOL_TAG ? pyyamlBoolean(tag.identify?.(true) === true) : tag));
}

/** Ansible's loader is PyYAML: YAML 1.1, so `yes`/`no`/`on`/`off` are booleans and `0755` is octal. */
const YAML_OPTIONS = { version: '1.1', customTags: pyyamlTags } as const;

/**
 * Parses YAML as Ansible's loader does, except that a repeated key is an error rather than a
 * silent overwrite. The first syntax error becomes an InputError at its position.
 */
export function readYaml(text: string, file: string): YamlFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter, prettyErrors: false });
  const locate = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const [error] = doc.errors;
  if (error) throw syntaxError(error, text, locate);
  return { doc, at: (node) => locate(isNode(node) ? (node.range?.[0] ?? 0) : 0) };
}

function syntaxError(error: YAMLError, text: string, locate: (offset: number) => string): InputError {
  if (error.code !== 'DUPLICATE_KEY') return new InputError(`YAML syntax error: ${error.message}`, { location: locate(error.pos[0]) });
  // yaml reports a repeated key at the blank or line break before it; point at the key itself.
  const offset = error.pos[0] + text.slice(error.pos[0]).search(/\S|$/);
  const key = /^[^:,}\n]*/.exec(text.slice(offset))?.[0].trim();
  return new InputError(`YAML syntax error: key '${key}' is repeated in this mapping`, { location: locate(offset) });
}

/** True when the text parses as YAML whose top level is a mapping, the shape of a YAML inventory. */
export function isYamlMapping(text: string): boolean {
  const doc = parseDocument(text, YAML_OPTIONS);
  return doc.errors.length === 0 && isMap(doc.contents);
}

/** Parses YAML inventory text; `source` names the file in error locations. */
export function parseYamlInventory(text: string, source: string): InventoryData {
  const file = readYaml(text, source);
  const root = file.doc.contents;
  if (!isMap(root)) throw new InputError('a YAML inventory must be a mapping of group names to groups', { location: file.at(root) });
  if (root.has('plugin')) {
    throw new InputError('inventory plugin configuration files are not supported, only static inventories', { location: file.at(root) });
  }
  const parser = new YamlInventoryParser(file, new InventoryData(source));
  for (const pair of root.items) parser.group(pair.key, pair.value);
  return parser.data;
}

/** A key of a group section with its value, both still syntax nodes (the value null when absent). */
interface Entry {
  key: unknown;
  value: unknown;
}

const GROUP_KEYS = ['hosts', 'vars', 'children'];

class YamlInventoryParser {
  constructor(
    private readonly file: YamlFile,
    readonly data: InventoryData,
  ) {}

  /** One group definition; `parent` is the group whose `children` it appears under. */
  group(keyNode: unknown, valueNode: unknown, parent?: string): void {
    const name = this.name(keyNode, 'group name');
    const value = this.resolve(valueNode);
    if (!isEmpty(value) && !isMap(value)) {
      throw new InputError(`group '${name}' must be a mapping of hosts, vars and children`, { location: this.file.at(keyNode) });
    }
    this.data.addGroup(name);
    if (parent !== undefined) this.data.addChild(parent, name, this.file.at(keyNode));
    if (!isMap(value)) return;
    for (const { key, value: section } of value.items) this.section(name, key, this.resolve(section));
  }

  private section(group: string, keyNode: unknown, value: unknown): void {
    const key = this.name(keyNode, 'group key');
    if (!GROUP_KEYS.includes(key)) {
      throw new InputError(`unknown key '${key}' in group '${group}' (expected one of: ${GROUP_KEYS.join(', ')})`, {
        location: this.file.at(keyNode),
      });
    }
    if (isEmpty(value)) return;
    if (key === 'vars') return this.groupVars(group, keyNode, value);
    for (const entry of this.entries(group, key, keyNode, value)) {
      if (key === 'hosts') this.host(group, entry);
      else this.group(entry.key, entry.value, group);
    }
  }

  /**
   * The members of a `hosts` or `children` section: a mapping, or (as Ansible allows) a single
   * name written as a plain string. A list is the classic mistake and is refused.
   */
  private entries(group: string, key: string, keyNode: unknown, value: unknown): Entry[] {
    if (isMap(value)) return value.items.map((pair) => ({ key: pair.key, value: this.resolve(pair.value) }));
    if (isScalar(value) && typeof value.value === 'string') return [{ key: value, value: null }];
    throw new InputError(`'${key}' of group '${group}' must be a mapping (name: ...), not ${describe(value)}`, {
      location: this.file.at(keyNode),
    });
  }

  private groupVars(group: string, keyNode: unknown, value: unknown): void {
    for (const [key, item, origin] of this.vars(`'vars' of group '${group}'`, keyNode, value)) {
      this.data.setGroupVar(group, key, item, origin);
    }
  }

  private host(group: string, { key, value }: Entry): void {
    const entry = this.name(key, 'host name');
    const location = this.file.at(key);
    const vars = isEmpty(value) ? [] : this.vars(`host '${entry}'`, key, value);
    const { names, port } = expandHostPattern(entry, location);
    for (const name of names) {
      this.data.addHost(name, group);
      if (port !== undefined) this.data.setHostVar(name, 'ansible_port', port, location);
      for (const [varName, item, origin] of vars) this.data.setHostVar(name, varName, item, origin);
    }
  }

  /** A vars mapping as [name, value, where the name is written]; merge keys (`<<`) are applied. */
  private vars(what: string, keyNode: unknown, value: unknown): [string, unknown, string][] {
    if (!isMap(value)) throw new InputError(`${what} must be a mapping of variables, not ${describe(value)}`, { location: this.file.at(keyNode) });
    const origins = new Map<string, string>();
    for (const pair of value.items) origins.set(String(isScalar(pair.key) ? pair.key.value : pair.key), this.file.at(pair.key));
    const values = value.toJS(this.file.doc) as Record<string, unknown>;
    return Object.entries(values).map(([name, item]) => [name, item, origins.get(name) ?? this.file.at(value)]);
  }

  /** The string a key must be; Ansible refuses non-string group and host names too. */
  private name(node: unknown, what: string): string {
    if (isScalar(node) && typeof node.value === 'string' && node.value !== '') return node.value;
    throw new InputError(`${what} must be a non-empty string, got ${describe(node)}`, { location: this.file.at(node) });
  }

  /** Follows an alias (`*anchor`) to the node it names, so shared definitions work anywhere. */
  private resolve(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.file.doc) : node;
  }
}

function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/** What a node holds, for messages: `a list`, `number 123`, `a mapping`. */
function describe(node: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isScalar(node)) return node.value === null ? 'nothing' : `${typeof node.value} ${JSON.stringify(node.value)}`;
  if (isSeq(node)) return 'a list';
  return 'nothing';
}
