import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { InputError } from './errors.js';
import { Host, type BecomeSettings } from './host.js';
import type { InventoryHost } from './inventory/index.js';
import { Secret, isSecret } from './secret.js';
import { LocalTransport } from './transport/local.js';
import { SshTransport } from './transport/ssh.js';
import { whyCannotKeep } from './transport/known-hosts.js';
import { resolveSshConfig } from './transport/ssh-config.js';
import type { SshTarget } from './transport/types.js';

/** Connection settings from the command line. */
export interface ConnectionSettings {
  /** -u: the remote user when the inventory sets none (Ansible: ansible_user wins over -u). */
  user?: string;
  acceptNewHostKeys: boolean;
  /** -b: become root on every host. */
  become?: boolean;
  /** -K: the sudo password typed at the prompt. */
  becomePassword?: Secret;
  /** Per-command timeout. */
  commandTimeoutMs?: number;
  /** Path of the ssh client config (default ~/.ssh/config). */
  sshConfigPath?: string;
}

const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/** Makes the Host for an inventory host: local or SSH transport, sudo settings, all from its vars. */
export function hostFactory(settings: ConnectionSettings): (host: InventoryHost) => Host {
  return (inventoryHost) => {
    const vars = inventoryHost.vars;
    const become = becomeSettings(inventoryHost, settings);
    const timeout = settings.commandTimeoutMs ?? 600_000;
    if (vars.ansible_connection === 'local') {
      return new Host(inventoryHost.name, vars, new LocalTransport(inventoryHost.name), become, userInfo().username, timeout);
    }
    if (vars.ansible_connection !== undefined && vars.ansible_connection !== 'ssh' && vars.ansible_connection !== 'paramiko') {
      throw new InputError(`host ${inventoryHost.name}: ansible_connection ${JSON.stringify(vars.ansible_connection)} is not supported (ssh or local)`, { host: inventoryHost.name });
    }
    const target = sshTarget(inventoryHost, settings);
    return new Host(inventoryHost.name, vars, new SshTransport(target), become, target.user, timeout);
  };
}

function becomeSettings(host: InventoryHost, settings: ConnectionSettings): BecomeSettings {
  const vars = host.vars;
  const password = settings.becomePassword ?? secretVar(vars.ansible_become_password ?? vars.ansible_become_pass ?? vars.ansible_sudo_pass);
  const method = vars.ansible_become_method;
  if (method !== undefined && method !== 'sudo') {
    throw new InputError(`host ${host.name}: ansible_become_method ${JSON.stringify(method)} is not supported (sudo)`, { host: host.name });
  }
  return {
    enabled: settings.become === true || truthy(vars.ansible_become),
    user: typeof vars.ansible_become_user === 'string' ? vars.ansible_become_user : 'root',
    ...(password ? { password } : {}),
  };
}

function secretVar(value: unknown): Secret | undefined {
  if (value === undefined || value === null) return undefined;
  return isSecret(value) ? value : new Secret(String(value));
}

function truthy(value: unknown): boolean {
  return value === true || (typeof value === 'string' && /^(true|yes|on|1)$/i.test(value)) || value === 1;
}

/**
 * Checks what can be checked on this machine before any host is contacted, so bad input exits 1
 * and touches nothing: the transport and become settings, explicitly given key files, known_hosts
 * files that exist but cannot be read, and accept-new with a known_hosts file that cannot keep a key
 * (/dev/null: any key would be accepted on every run). Returns warnings to print once for the run:
 * the hosts whose StrictHostKeyChecking=no Capstan does not honour.
 */
export function checkConnectionInputs(hosts: readonly InventoryHost[], settings: ConnectionSettings): string[] {
  const make = hostFactory(settings);
  const notHonoured = new Map<string, string[]>();
  for (const host of hosts) {
    make(host); // throws InputError for an unsupported ansible_connection / ansible_become_method or a bad port
    if (host.vars.ansible_connection === 'local') continue;
    const target = sshTarget(host, settings);
    const explicit = host.vars.ansible_ssh_private_key_file ?? host.vars.ansible_private_key_file;
    if (explicit !== undefined) {
      const file = expandHome(String(explicit));
      if (!existsSync(file)) throw new InputError(`host ${host.name}: identity file ${file} does not exist (ansible_ssh_private_key_file)`, { host: host.name });
      readable(host.name, file, 'identity file');
    }
    for (const file of target.knownHostsFiles) if (existsSync(file)) readable(host.name, file, 'known_hosts file');
    for (let hop: SshTarget | undefined = target; hop; hop = hop.jump) {
      const policy = policies.get(hop) ?? { acceptNewFrom: 'accept-new' };
      if (hop.acceptNewHostKeys) {
        const file = hop.knownHostsFiles[0];
        const problem = whyCannotKeep(file);
        if (problem !== undefined) {
          throw new InputError(
            `host ${hop.name}: ${policy.acceptNewFrom} cannot record a new host key in ${file ?? 'known_hosts'}: ${problem}. ` +
              'It would accept any key on every run; point UserKnownHostsFile at a file Capstan can write, or add the key to known_hosts yourself',
            { host: host.name },
          );
        }
      }
      if (policy.strict === 'no' || policy.strict === 'off') {
        const where = `StrictHostKeyChecking=${policy.strict} (${policy.strictFrom})`;
        notHonoured.set(where, [...(notHonoured.get(where) ?? []), hop.name]);
      }
    }
  }
  return [...notHonoured].map(
    ([where, names]) =>
      `${where} is not honoured for ${names.join(', ')}: Capstan verifies their host keys against known_hosts all the same ` +
      '(an unknown key is refused unless --accept-new-host-keys, a changed key always)',
  );
}

/** How one host's key checking was configured: StrictHostKeyChecking from the inventory's ssh args over ~/.ssh/config. */
interface HostKeyPolicy {
  /** StrictHostKeyChecking, lowercased, when set. */
  strict?: string;
  /** Where `strict` came from, for messages. */
  strictFrom?: string;
  /** What turned accept-new on, for messages. */
  acceptNewFrom: string;
}

function hostKeyPolicy(vars: Record<string, unknown>, fromConfig: string | undefined, settings: ConnectionSettings): HostKeyPolicy {
  // Ansible passes the common args before the extra args, and ssh keeps the first value it is given.
  for (const key of ['ansible_ssh_common_args', 'ansible_ssh_extra_args']) {
    const strict = sshOption(vars[key], 'StrictHostKeyChecking')?.toLowerCase();
    if (strict !== undefined) return policyOf(strict, key, settings);
  }
  return fromConfig === undefined
    ? { acceptNewFrom: 'accept-new (--accept-new-host-keys)' }
    : policyOf(fromConfig, settings.sshConfigPath ?? '~/.ssh/config', settings);
}

function policyOf(strict: string, from: string, settings: ConnectionSettings): HostKeyPolicy {
  const acceptNewFrom = settings.acceptNewHostKeys ? 'accept-new (--accept-new-host-keys)' : `StrictHostKeyChecking=accept-new (${from})`;
  return { strict, strictFrom: from, acceptNewFrom };
}

/** The value of `-o Name=value` (or `-o Name value`, `-oName=value`) in an ssh argument string; the first one wins, as in ssh. */
function sshOption(args: unknown, name: string): string | undefined {
  if (typeof args !== 'string') return undefined;
  const match = new RegExp(`${name}(?:\\s*=\\s*|\\s+)("([^"]*)"|'([^']*)'|([^\\s"']+))`, 'i').exec(args);
  return match ? (match[2] ?? match[3] ?? match[4]) : undefined;
}

/** The policy each target was made with, for checkConnectionInputs' messages. */
const policies = new WeakMap<SshTarget, HostKeyPolicy>();

function readable(host: string, file: string, what: string): void {
  try {
    if (statSync(file).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    accessSync(file, constants.R_OK);
  } catch (error) {
    throw new InputError(`host ${host}: cannot read ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { host });
  }
}

/** SshTarget from inventory vars over ~/.ssh/config over defaults. */
export function sshTarget(host: InventoryHost, settings: ConnectionSettings): SshTarget {
  const vars = host.vars;
  const alias = String(vars.ansible_host ?? vars.ansible_ssh_host ?? host.name);
  const config = resolveSshConfig(alias, settings.sshConfigPath ? { configPath: settings.sshConfigPath } : {});
  const explicitKey = vars.ansible_ssh_private_key_file ?? vars.ansible_private_key_file;
  const defaults = DEFAULT_KEYS.map((k) => join(homedir(), '.ssh', k)).filter((p) => existsSync(p));
  const identityFiles = [...(explicitKey ? [expandHome(String(explicitKey))] : []), ...config.identityFiles, ...defaults];
  const port = Number(vars.ansible_port ?? vars.ansible_ssh_port ?? config.port ?? 22);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InputError(`host ${host.name}: ansible_port ${JSON.stringify(vars.ansible_port)} is not a port`, { host: host.name });
  const policy = hostKeyPolicy(vars, config.strictHostKeyChecking, settings);
  const target: SshTarget = {
    name: host.name,
    host: config.hostName ?? alias,
    port,
    user: String(vars.ansible_user ?? vars.ansible_ssh_user ?? config.user ?? settings.user ?? userInfo().username),
    identityFiles: [...new Set(identityFiles)],
    knownHostsFiles: knownHostsFiles(vars, config.userKnownHostsFiles),
    acceptNewHostKeys: settings.acceptNewHostKeys || policy.strict === 'accept-new',
    connectTimeoutMs: Number(vars.ansible_ssh_timeout ?? vars.ansible_timeout ?? 10) * 1000,
    connectRetries: Number(vars.ansible_ssh_retries ?? 2),
    keepaliveIntervalMs: 15_000,
    maxChannels: 8,
  };
  if (process.env.SSH_AUTH_SOCK) target.agent = process.env.SSH_AUTH_SOCK;
  if (config.proxyJump && config.proxyJump !== 'none') target.jump = jumpTarget(host.name, config.proxyJump, target, settings);
  policies.set(target, policy);
  return target;
}

/** ProxyJump "user@host:port" (the first hop of a comma list; further hops come from its own config). */
function jumpTarget(forHost: string, spec: string, via: SshTarget, settings: ConnectionSettings): SshTarget {
  const first = spec.split(',')[0]!.trim();
  const match = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(first);
  if (!match) throw new InputError(`host ${forHost}: ProxyJump ${JSON.stringify(spec)} is not user@host:port`, { host: forHost });
  const vars: Record<string, unknown> = { ansible_host: match[2]!.replace(/^\[|\]$/g, '') };
  if (match[1]) vars.ansible_user = match[1];
  if (match[3]) vars.ansible_port = Number(match[3]);
  const jump = sshTarget({ name: `${forHost} via ${first}`, vars, groups: [] }, settings);
  const target = { ...jump, knownHostsFiles: jump.knownHostsFiles.length ? jump.knownHostsFiles : via.knownHostsFiles };
  policies.set(target, policies.get(jump)!);
  return target;
}

/** capstan_known_hosts_file, -o UserKnownHostsFile=… in ansible_ssh_common_args/extra_args, ssh config, ~/.ssh/known_hosts. */
function knownHostsFiles(vars: Record<string, unknown>, fromConfig: string[] | undefined): string[] {
  const files: string[] = [];
  if (typeof vars.capstan_known_hosts_file === 'string') files.push(expandHome(vars.capstan_known_hosts_file));
  for (const key of ['ansible_ssh_common_args', 'ansible_ssh_extra_args']) {
    const args = vars[key];
    if (typeof args !== 'string') continue;
    for (const match of args.matchAll(/UserKnownHostsFile[= ]\s*("([^"]+)"|'([^']+)'|(\S+))/g)) {
      for (const file of (match[2] ?? match[3] ?? match[4] ?? '').split(/\s+/)) if (file) files.push(expandHome(file));
    }
  }
  files.push(...(fromConfig ?? []).map(expandHome));
  if (files.length === 0) files.push(join(homedir(), '.ssh', 'known_hosts'));
  return [...new Set(files)];
}

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}
