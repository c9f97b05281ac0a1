/**
 * Ansible's INI inventory format (plugins/inventory/ini.py), line by line: hosts above the first
 * section are 'ungrouped'; `[g]` lists hosts with inline `key=value` vars, `[g:vars]` one
 * `key=value` per line, `[g:children]` group names. A child group may be used before its own
 * section, but must have one somewhere; `[g:vars]` needs g declared somewhere too.
 *
 * Value typing follows what ansible-core does, not what its docs say: the docs claim `[g:vars]`
 * values stay strings, but ini.py runs every value, inline or in `:vars`, through Python's
 * ast.literal_eval (ansible/ansible#86229). So `2222` is a number, `True` a boolean, `'22'` and
 * `"22"` the string 22, while `true`, `yes` and `10.0.0.1` stay strings. Inline values are
 * shell-split first (quotes removed, `#` starts a comment); a `:vars` value is everything after
 * the `=`, where only Python's own syntax can end it with a `#` comment (`8080 # x` is 8080, but
 * `abc # x` is the whole string).
 */
import { InputError } from '../errors.js';
import { InventoryData } from './model.js';
import { expandHostPattern } from './pattern.js';

const SECTION = /^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$/;
const GROUP_NAME = /^([^:\]\s]+)\s*(?:#.*)?$/;
const STATES = ['hosts', 'vars', 'children'] as const;
type State = (typeof STATES)[number];

/** A reference to a group that has no section yet, checked at the end of the file. */
interface Pending {
  kind: 'vars' | 'children';
  origin: string;
  /** For `children`: the groups waiting to adopt this one, each with the line that asked. */
  parents: { name: string; origin: string }[];
}

/** Parses INI inventory text; `source` names the file in error locations (`file:line:column`). */
export function parseIniInventory(text: string, source: string): InventoryData {
  const parser = new IniParser(source);
  text.split(/\r\n|\r|\n/).forEach((line, index) => parser.line(line, index + 1));
  return parser.finish();
}

class IniParser {
  private readonly data: InventoryData;
  private group = 'ungrouped';
  private state: State = 'hosts';
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly source: string) {
    this.data = new InventoryData(source);
  }

  line(raw: string, lineNumber: number): void {
    const text = raw.trim();
    if (text === '' || text.startsWith('#') || text.startsWith(';')) return;
    const origin = `${this.source}:${lineNumber}:${raw.indexOf(text) + 1}`;
    if (SECTION.test(text) || (text.startsWith('[') && text.endsWith(']'))) return this.section(text, origin);
    if (this.state === 'hosts') this.hosts(raw, lineNumber);
    else if (this.state === 'vars') this.variable(text, origin);
    else this.child(text, origin);
  }

  finish(): InventoryData {
    const [unresolved] = this.pending;
    if (!unresolved) return this.data;
    const [name, pending] = unresolved;
    const problem =
      pending.kind === 'vars'
        ? `section [${name}:vars] is for group '${name}', which is never declared with [${name}] or [${name}:children]`
        : `section [${pending.parents[0]?.name}:children] includes undefined group '${name}'`;
    throw new InputError(problem, { location: pending.origin });
  }

  private section(text: string, origin: string): void {
    const match = SECTION.exec(text);
    if (!match) throw new InputError(`invalid section header '${text}': expected [group], [group:vars] or [group:children], with no spaces`, { location: origin });
    const [, name = '', kind = 'hosts'] = match;
    if (!isState(kind)) throw new InputError(`section [${name}:${kind}] has unknown type '${kind}' (expected vars or children)`, { location: origin });
    this.group = name;
    this.state = kind;
    if (!this.data.groups.has(name)) {
      if (kind === 'vars' && !this.pending.has(name)) this.pending.set(name, { kind, origin, parents: [] });
      this.data.addGroup(name);
    }
    if (kind !== 'vars') this.declared(name);
  }

  /** A group got its own section: adopt it into the parents that named it early. */
  private declared(name: string): void {
    const pending = this.pending.get(name);
    if (!pending) return;
    this.pending.delete(name);
    for (const parent of pending.parents) this.data.addChild(parent.name, name, parent.origin);
  }

  private hosts(raw: string, lineNumber: number): void {
    const at = (column: number): string => `${this.source}:${lineNumber}:${column}`;
    const [first, ...assignments] = shellSplit(raw, at);
    if (!first) return;
    if (first.text.endsWith(':')) {
      throw new InputError(`invalid host '${first.text}': a trailing ':' must be followed by a port`, { location: at(first.column) });
    }
    const { names, port } = expandHostPattern(first.text, at(first.column));
    const vars = assignments.map((token) => {
      const equals = token.text.indexOf('=');
      if (equals <= 0) throw new InputError(`expected key=value host variable, got '${token.text}'`, { location: at(token.column) });
      return { key: token.text.slice(0, equals), value: parsePythonLiteral(token.text.slice(equals + 1)), origin: at(token.column) };
    });
    for (const name of names) {
      this.data.addHost(name, this.group);
      if (port !== undefined) this.data.setHostVar(name, 'ansible_port', port, at(first.column));
      for (const { key, value, origin } of vars) this.data.setHostVar(name, key, value, origin);
    }
  }

  private variable(text: string, origin: string): void {
    const equals = text.indexOf('=');
    const key = text.slice(0, equals).trim();
    if (equals < 0 || key === '') throw new InputError(`expected key=value in [${this.group}:vars], got '${text}'`, { location: origin });
    this.data.setGroupVar(this.group, key, parsePythonLiteral(text.slice(equals + 1).trim()), origin);
  }

  private child(text: string, origin: string): void {
    const child = GROUP_NAME.exec(text)?.[1];
    if (child === undefined) throw new InputError(`expected a group name in [${this.group}:children], got '${text}'`, { location: origin });
    if (this.data.groups.has(child)) return this.data.addChild(this.group, child, origin);
    const pending = this.pending.get(child) ?? { kind: 'children', origin, parents: [] };
    pending.parents.push({ name: this.group, origin });
    this.pending.set(child, pending);
  }
}

function isState(kind: string): kind is State {
  return (STATES as readonly string[]).includes(kind);
}

interface Token {
  text: string;
  /** 1-based column in the line where the token starts. */
  column: number;
}

const SHELL_SPACE = new Set([' ', '\t', '\r', '\n']);

/**
 * Python's shlex.split(line, comments=True), which Ansible uses for host lines: whitespace
 * separates tokens, quotes group (and are removed), a backslash escapes outside single quotes,
 * and `#` outside quotes ends the line even inside a token. Tokens keep their column for errors.
 */
function shellSplit(line: string, at: (column: number) => string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    while (SHELL_SPACE.has(line.charAt(i))) i++;
    if (i >= line.length || line.charAt(i) === '#') break;
    const start = i;
    let text = '';
    for (; i < line.length && !SHELL_SPACE.has(line.charAt(i)); ) {
      const char = line.charAt(i);
      if (char === '#') return [...tokens, { text, column: start + 1 }];
      if (char === "'" || char === '"') {
        const quoted = readQuoted(line, i, at);
        text += quoted.text;
        i = quoted.end;
      } else if (char === '\\') {
        if (i + 1 >= line.length) throw new InputError('no character after the escaping backslash', { location: at(i + 1) });
        text += line.charAt(i + 1);
        i += 2;
      } else {
        text += char;
        i++;
      }
    }
    tokens.push({ text, column: start + 1 });
  }
  return tokens;
}

/** Reads a quoted run starting at `open`; inside double quotes a backslash escapes only `"` and `\`. */
function readQuoted(line: string, open: number, at: (column: number) => string): { text: string; end: number } {
  const quote = line.charAt(open);
  let text = '';
  for (let i = open + 1; i < line.length; i++) {
    const char = line.charAt(i);
    if (char === quote) return { text, end: i + 1 };
    const next = line.charAt(i + 1);
    if (quote === '"' && char === '\\' && (next === '"' || next === '\\')) {
      text += next;
      i++;
    } else text += char;
  }
  throw new InputError(`no closing quotation for the ${quote} opened here`, { location: at(open + 1) });
}

/** Thrown inside LiteralReader when the text is not a Python literal; never escapes this module. */
class NotALiteral extends Error {}

/**
 * Python's ast.literal_eval for one INI value, giving back the text itself when it is not a
 * literal, as Ansible's _parse_value does. Covers what inventories hold: integers (decimal, 0x,
 * 0o, 0b, `_` separators), floats, quoted strings (r/u/b prefixes, the usual escapes),
 * True/False/None, lists, tuples (as lists, like Ansible) and dicts. Sets, complex numbers,
 * triple quotes and implicit string concatenation are not recognised and stay text, and so do
 * numbers a JS number cannot hold exactly (beyond 2^53, or infinite).
 */
export function parsePythonLiteral(text: string): unknown {
  const reader = new LiteralReader(text);
  try {
    const value = reader.value();
    reader.end();
    return value;
  } catch (error) {
    if (error instanceof NotALiteral) return text;
    throw error;
  }
}

const KEYWORD = /^(True|False|None)(?!\w)/;
const STRING_START = /^([rRuUbB]|[bB][rR]|[rR][bB])?(['"])/;
const NUMBER =
  /^([+-]?)[ \t]*(0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|(?:\d(?:_?\d)*)?\.\d(?:_?\d)*(?:[eE][+-]?\d(?:_?\d)*)?|\d(?:_?\d)*\.?(?:[eE][+-]?\d(?:_?\d)*)?)(?![\w.])/;
const HEX_ESCAPE_WIDTHS: Record<string, number> = { x: 2, u: 4, U: 8 };
const RADIX_PREFIXES: Record<string, number> = { x: 16, o: 8, b: 2 };
const ESCAPES: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

class LiteralReader {
  private pos = 0;

  constructor(private readonly text: string) {}

  value(): unknown {
    this.space();
    const rest = this.text.slice(this.pos);
    if (rest.startsWith('[')) return this.items('[', ']');
    if (rest.startsWith('(')) return this.tuple();
    if (rest.startsWith('{')) return this.dict();
    const keyword = KEYWORD.exec(rest);
    if (keyword) {
      this.pos += keyword[0].length;
      return keyword[1] === 'None' ? null : keyword[1] === 'True';
    }
    const string = STRING_START.exec(rest);
    if (string) return this.string(string[0].length, (string[1] ?? '').toLowerCase().includes('r'), string[2] ?? '');
    const number = NUMBER.exec(rest);
    if (number) {
      this.pos += number[0].length;
      return toNumber(number[1] === '-', number[2] ?? '');
    }
    throw new NotALiteral();
  }

  /** Only trailing blanks or a Python comment may follow the value. */
  end(): void {
    this.space();
    if (this.pos < this.text.length) throw new NotALiteral();
  }

  private space(): void {
    while (this.pos < this.text.length && ' \t\f'.includes(this.text.charAt(this.pos))) this.pos++;
    if (this.text.charAt(this.pos) === '#') this.pos = this.text.length;
  }

  private expect(char: string): boolean {
    this.space();
    if (this.text.charAt(this.pos) !== char) return false;
    this.pos++;
    return true;
  }

  /** Comma-separated values up to `close`, a trailing comma allowed. */
  private items(open: string, close: string): unknown[] {
    this.expect(open);
    const values: unknown[] = [];
    while (!this.expect(close)) {
      values.push(this.value());
      if (!this.expect(',') && this.text.charAt(this.pos) !== close) throw new NotALiteral();
    }
    return values;
  }

  /** `()` and `(a, b)` are tuples (lists here), while `(a)` is just a parenthesised `a`. */
  private tuple(): unknown {
    const start = this.pos;
    this.expect('(');
    if (this.expect(')')) return [];
    const first = this.value();
    if (this.expect(')')) return first;
    this.pos = start;
    return this.items('(', ')');
  }

  private dict(): Record<string, unknown> {
    this.expect('{');
    const entries: [string, unknown][] = [];
    while (!this.expect('}')) {
      const key = this.value();
      if (!this.expect(':')) throw new NotALiteral();
      entries.push([dictKey(key), this.value()]);
      if (!this.expect(',') && this.text.charAt(this.pos) !== '}') throw new NotALiteral();
    }
    return Object.fromEntries(entries);
  }

  private string(prefixLength: number, raw: boolean, quote: string): string {
    const text = this.text;
    let i = this.pos + prefixLength;
    if (text.startsWith(quote.repeat(3), i - 1)) throw new NotALiteral();
    let out = '';
    for (; i < text.length; i++) {
      const char = text.charAt(i);
      if (char === quote) {
        this.pos = i + 1;
        return out;
      }
      if (char !== '\\') out += char;
      else if (raw) out += char + text.charAt(++i);
      else {
        const escape = readEscape(text, i + 1);
        out += escape.text;
        i = escape.end - 1;
      }
    }
    throw new NotALiteral();
  }
}

/** One escape after a backslash at `start - 1`; unknown escapes keep their backslash, as in Python. */
function readEscape(text: string, start: number): { text: string; end: number } {
  const char = text.charAt(start);
  const simple = ESCAPES[char];
  if (simple !== undefined) return { text: simple, end: start + 1 };
  const octal = /^[0-7]{1,3}/.exec(text.slice(start))?.[0];
  if (octal) return { text: String.fromCodePoint(parseInt(octal, 8)), end: start + octal.length };
  const width = HEX_ESCAPE_WIDTHS[char];
  if (width === undefined) return { text: `\\${char}`, end: start + 1 };
  const hex = text.slice(start + 1, start + 1 + width);
  if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(hex)) throw new NotALiteral();
  return { text: String.fromCodePoint(parseInt(hex, 16)), end: start + 1 + width };
}

function toNumber(negative: boolean, literal: string): number {
  const digits = literal.replace(/_/g, '');
  const radix = RADIX_PREFIXES[digits.charAt(1).toLowerCase()];
  const isDecimalInteger = radix === undefined && /^\d+$/.test(digits);
  // Python 3 rejects 0755-style literals, so Ansible keeps them as text.
  if (isDecimalInteger && /^0+[1-9]/.test(digits)) throw new NotALiteral();
  const magnitude = radix === undefined ? Number(digits) : parseInt(digits.slice(2), radix);
  const isInteger = radix !== undefined || isDecimalInteger;
  if (!Number.isFinite(magnitude) || (isInteger && !Number.isSafeInteger(magnitude))) throw new NotALiteral();
  return negative ? -magnitude : magnitude;
}

/** Dict keys as Python's json.dumps writes them: strings as-is, True → "true", None → "null". */
function dictKey(key: unknown): string {
  if (typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'boolean' || key === null) return String(key);
  throw new NotALiteral();
}
