/** Parameter checks shared by task families. Each throws an Error whose message names the parameter. */

export function requireAbsolutePath(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || !value.startsWith('/')) throw new Error(`${name} must be an absolute path, got ${JSON.stringify(value)}`);
  if (value.includes('\0') || value.includes('\n')) throw new Error(`${name} must not contain NUL or newline`);
  if (value.length > 1 && value.endsWith('/')) throw new Error(`${name} must not end with /: ${value}`);
}

/** "644" or "0644" → "0644"; anything else throws. */
export function normaliseMode(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[0-7]{3,4}$/.test(value)) throw new Error(`${name} must be an octal string like "0644", got ${JSON.stringify(value)}`);
  return value.padStart(4, '0');
}

/** User and group names as useradd accepts them (or numeric ids). */
export function requireAccountName(name: string, value: string | undefined): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || !/^([a-z_][a-z0-9_.-]*\$?|\d+)$/i.test(value)) throw new Error(`${name} is not a valid user/group name: ${JSON.stringify(value)}`);
}

export function requireString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new Error(`${name} must be a non-empty string`);
}
