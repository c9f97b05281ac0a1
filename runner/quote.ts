import { Secret } from './secret.js';

/**
 * A command line for POSIX `sh` (dash on Debian), built only by the `sh` tagged template.
 * `text` is what runs; `display` is what may be printed (secrets replaced by ***).
 */
export class Command {
  constructor(
    readonly text: string,
    readonly display: string,
    readonly secrets: readonly Secret[] = [],
  ) {}
  toString(): string {
    return this.display;
  }
}

/** A fragment inserted into a command as-is (already-quoted text, operators). Never for user input. */
export class Raw {
  constructor(readonly text: string) {}
}

/** Marks trusted shell text (pipes, redirections written in our own source) for interpolation into `sh`. */
export function raw(text: string): Raw {
  return new Raw(text);
}

/**
 * Quotes one argument for POSIX sh: single quotes, with each embedded `'` written as `'\''`.
 * Works in dash, bash and busybox sh (no `$'…'`). NUL cannot be passed in an argv and is rejected.
 */
export function quote(value: string | number): string {
  const text = String(value);
  if (text.includes('\0')) throw new TypeError('a shell argument cannot contain a NUL byte');
  if (text !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

type Interpolation = string | number | Secret | Raw | Command | readonly (string | number | Secret)[];

/**
 * The one way to build a remote command. Every interpolated value is quoted as a single argument;
 * arrays become several arguments; a `Secret` is quoted in `text` and shown as *** in `display`;
 * a nested `Command` or `raw()` is inserted as shell text.
 *
 * @example
 * const mode = '0644', src = '/tmp/motd.new', dest = '/etc/motd';
 * sh`install -m ${mode} -- ${src} ${dest}`
 */
export function sh(strings: TemplateStringsArray, ...values: Interpolation[]): Command {
  let text = strings[0] ?? '';
  let display = text;
  const secrets: Secret[] = [];
  values.forEach((value, index) => {
    const [t, d] = render(value, secrets);
    const literal = strings[index + 1] ?? '';
    text += t + literal;
    display += d + literal;
  });
  return new Command(text, display, secrets);
}

function render(value: Interpolation, secrets: Secret[]): [string, string] {
  if (value instanceof Raw) return [value.text, value.text];
  if (value instanceof Command) {
    secrets.push(...value.secrets);
    return [value.text, value.display];
  }
  if (value instanceof Secret) {
    secrets.push(value);
    return [quote(value.reveal()), '***'];
  }
  if (Array.isArray(value)) {
    const parts = value.map((item) => render(item as Interpolation, secrets));
    return [parts.map((p) => p[0]).join(' '), parts.map((p) => p[1]).join(' ')];
  }
  const quoted = quote(value as string | number);
  return [quoted, quoted];
}

/** The whole of `command` as one quoted argument (for `sudo … sh -c <command>`), keeping its display redacted. */
export function asArgument(command: Command): Command {
  return new Command(quote(command.text), quote(command.display), command.secrets);
}

/** Several commands or argument groups joined with a separator (default a space), secrets kept hidden. */
export function joinCommands(parts: readonly Command[], separator = ' '): Command {
  return new Command(
    parts.map((p) => p.text).join(separator),
    parts.map((p) => p.display).join(separator),
    parts.flatMap((p) => [...p.secrets]),
  );
}
