import { inspect } from 'node:util';

/**
 * A value that must never be printed: join tokens, certificate keys, become passwords, private keys.
 * It renders as `***` through every path a value can leak by accident (String(), template literals,
 * JSON.stringify, util.inspect / console.log). Only `reveal()` gives the value, and only the code that
 * sends it to a host should call it.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '***';
  }
  toJSON(): string {
    return '***';
  }
  [inspect.custom](): string {
    return '***';
  }
  [Symbol.toPrimitive](): string {
    return '***';
  }
}

export function isSecret(value: unknown): value is Secret {
  return value instanceof Secret;
}

/** Removes every revealed secret from a text before it is shown (command output can echo a secret back). */
export function redact(text: string, secrets: Iterable<Secret>): string {
  let out = text;
  for (const secret of secrets) {
    const value = secret.reveal();
    if (value.length >= 4) out = out.split(value).join('***');
  }
  return out;
}
