import { readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import SSHConfig from 'ssh-config';
import { InputError } from '../errors.js';

/** The parts of `~/.ssh/config` that Capstan honours for one host; absent fields were not set. */
export interface ResolvedSshConfig {
  hostName?: string;
  user?: string;
  port?: number;
  /** IdentityFile values in file order, tilde- and token-expanded. */
  identityFiles: string[];
  /** ProxyJump as written (`[user@]host[:port]`, comma-separated for a chain); `none` is left out. */
  proxyJump?: string;
  /** UserKnownHostsFile paths, expanded; an empty list means `none`. */
  userKnownHostsFiles?: string[];
  /** StrictHostKeyChecking lowercased (`yes`, `no`, `accept-new`, `ask`, `off`). */
  strictHostKeyChecking?: string;
}

/**
 * Resolves `~/.ssh/config` (or `options.configPath`, or literal `options.text`) for one host alias,
 * with OpenSSH semantics: Host sections and wildcards match the alias, the first value obtained for a
 * setting wins, IdentityFile accumulates. `~` and the `%%`, `%d`, `%h`, `%n`, `%p`, `%r`, `%u` tokens are
 * expanded in IdentityFile and UserKnownHostsFile (`%h` and `%%` also in HostName). A missing config
 * file gives an empty result. `Include` is not followed.
 *
 * @example resolveSshConfig('web1') // { hostName: '10.0.0.5', user: 'admin', identityFiles: ['/home/me/.ssh/web'] }
 */
export function resolveSshConfig(alias: string, options: { configPath?: string; text?: string } = {}): ResolvedSshConfig {
  const configPath = options.configPath ?? join(homedir(), '.ssh', 'config');
  let text = options.text;
  if (text === undefined) {
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { identityFiles: [] };
      throw new InputError(`cannot read ssh config ${configPath}: ${(error as Error).message}`, { cause: error });
    }
  }
  let parsed: SSHConfig;
  try {
    parsed = SSHConfig.parse(text);
  } catch (error) {
    throw new InputError(`cannot parse ssh config ${configPath}: ${(error as Error).message}`, { cause: error });
  }
  // ignoreCase: OpenSSH keywords are case-insensitive. matchExec off: the library runs `Match exec` through
  // /bin/sh with bash-only syntax, so it would misjudge on Debian; resolving a config must not run commands.
  const computed = parsed.compute(alias, { ignoreCase: true, matchExec: false });
  const first = (key: string): string | undefined => {
    const value = computed[key];
    return Array.isArray(value) ? value[0] : value;
  };
  const list = (key: string): string[] | undefined => {
    const value = computed[key];
    return value === undefined ? undefined : Array.isArray(value) ? value : [value];
  };

  const result: ResolvedSshConfig = { identityFiles: [] };
  const hostName = first('hostname');
  if (hostName !== undefined) result.hostName = expandTokens(hostName, { h: alias }, configPath);
  const user = first('user');
  if (user !== undefined) result.user = user;
  const port = first('port');
  if (port !== undefined) {
    const number = Number(port);
    if (!Number.isInteger(number) || number < 1 || number > 65535) {
      throw new InputError(`ssh config ${configPath}: Port ${port} for ${alias} is not a port number`);
    }
    result.port = number;
  }

  // Path tokens refer to the final connection settings, so they are expanded after HostName/User/Port resolve.
  const local = localUser();
  const tokens: Record<string, string> = {
    d: homedir(),
    h: result.hostName ?? alias,
    n: alias,
    p: String(result.port ?? 22),
    r: result.user ?? local,
    u: local,
  };
  const expandPath = (value: string): string => expandTilde(expandTokens(value, tokens, configPath));
  result.identityFiles = (list('identityfile') ?? []).map(expandPath);

  const proxyJump = first('proxyjump');
  if (proxyJump !== undefined && proxyJump.toLowerCase() !== 'none') result.proxyJump = proxyJump;
  const knownHosts = list('userknownhostsfile');
  if (knownHosts !== undefined) {
    result.userKnownHostsFiles = knownHosts.length === 1 && knownHosts[0]?.toLowerCase() === 'none' ? [] : knownHosts.map(expandPath);
  }
  const strict = first('stricthostkeychecking');
  if (strict !== undefined) result.strictHostKeyChecking = strict.toLowerCase();
  return result;
}

function localUser(): string {
  try {
    return userInfo().username;
  } catch {
    // userInfo() throws for a uid without a passwd entry (some containers); fall back like ssh-config does.
    return process.env.USER ?? '';
  }
}

function expandTokens(value: string, tokens: Record<string, string>, configPath: string): string {
  return value.replace(/%(.)/g, (whole, token: string) => {
    if (token === '%') return '%';
    const replacement = tokens[token];
    if (replacement === undefined) {
      throw new InputError(`ssh config ${configPath}: unsupported token ${whole} in "${value}"`);
    }
    return replacement;
  });
}

function expandTilde(path: string): string {
  if (path === '~') return homedir();
  return path.startsWith('~/') ? join(homedir(), path.slice(2)) : path;
}
