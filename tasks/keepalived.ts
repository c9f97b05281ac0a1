import { isIP } from 'node:net';
import { defineTask, Secret, sh, type CheckContext, type Command, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ensureService, restartService } from './systemd.js';

/*
 * keepalived for the API server VIP (seed 004): VRRP between the control planes, every one of them
 * `state BACKUP` with `nopreempt` (a node that comes back does not take the VIP back, so the VIP
 * moves only when its holder fails), and a check script tracked by the instance: when it fails the
 * instance goes to FAULT and gives the VIP up.
 *
 * What the check checks: the seed's script curls the local haproxy port, then the VIP's when this
 * node holds it. haproxy health-checks every API server itself (/healthz) and routes around dead
 * ones, so all that makes one node a worse VIP holder than another is ITS haproxy not answering.
 * The script therefore checks that haproxy accepts TCP connections on the port (locally, and on
 * the VIP when held). Checking the API through haproxy instead (an HTTP request) would fail on
 * every node before the first API server exists, leave no VIP at all, and kubeadm init could not
 * reach its controlPlaneEndpoint.
 */

export const KEEPALIVED_CONFIG = '/etc/keepalived/keepalived.conf';
export const CHECK_SCRIPT = '/etc/keepalived/check_apiserver.sh';

export interface KeepalivedParams {
  /** The virtual IP (seed 004: 192.168.0.66). */
  vip: string;
  /** The port haproxy listens on behind the VIP (seed 004: 8888), which the check script tests. */
  port: number;
  /** The interface for VRRP and the VIP (seed: eth1). Default: the one that carries `address`. */
  interface?: string;
  /** This node's address, to find its interface when `interface` is not given. */
  address?: string;
  /** VRRP's virtual_router_id, the same on every node and unique on the network (seed: 5). */
  routerId?: number;
  /** This node's priority (seed: 100 everywhere: the highest address wins a tie). */
  priority?: number;
  /** Seconds between advertisements (seed: 1). */
  advertInt?: number;
  /** `auth_type PASS` password, at most 8 characters (seed: ZqSj#f1G); none when omitted. */
  authPass?: string | Secret;
  /** Seconds between checks (seed: 3). */
  checkInterval?: number;
}

/** keepalived.conf's values once the interface is known (pure input of {@link renderKeepalivedConfig}). */
export type ResolvedKeepalived = Omit<KeepalivedParams, 'interface' | 'address'> & { interface: string };

const INTERFACE = /^[A-Za-z0-9_.:@-]{1,15}$/;
const PASSWORD = /^[!-~]{1,8}$/;

const reveal = (value: string | Secret | undefined) => (value instanceof Secret ? value.reveal() : value);

export function validateKeepalivedParams(p: KeepalivedParams): void {
  if (isIP(p.vip) !== 4) throw new Error(`vip must be an IPv4 address, got ${JSON.stringify(p.vip)}`);
  if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new Error(`port must be 1..65535, got ${p.port}`);
  if (p.interface !== undefined && !INTERFACE.test(p.interface)) throw new Error(`interface must be an interface name like eth0, got ${JSON.stringify(p.interface)}`);
  if (p.interface === undefined && (p.address === undefined || isIP(p.address) === 0)) throw new Error('give interface, or this node\'s address to find it by');
  const ranges = [['routerId', 1, 255], ['priority', 1, 254], ['advertInt', 1, 255], ['checkInterval', 1, 3600]] as const;
  for (const [key, min, max] of ranges) {
    const value = p[key];
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) throw new Error(`${key} must be a whole number from ${min} to ${max}, got ${value}`);
  }
  const pass = reveal(p.authPass);
  if (pass !== undefined && (!PASSWORD.test(pass) || /["']/.test(pass))) {
    throw new Error('authPass must be 1 to 8 printable characters without blanks or quotes (VRRP PASS authentication keeps 8)');
  }
}

/** keepalived.conf for the VIP (pure): seed 004's file, with the interface, priority and password given. */
export function renderKeepalivedConfig(p: ResolvedKeepalived): string {
  const pass = reveal(p.authPass);
  return [
    `# Managed by Capstan: the Kubernetes API server VIP ${p.vip} (seed 004). Changes here are overwritten.`,
    'global_defs {',
    '    enable_script_security',
    '    script_user nobody',
    '}',
    '',
    'vrrp_script check_apiserver {',
    `    script "${CHECK_SCRIPT}"`,
    `    interval ${p.checkInterval ?? 3}`,
    '}',
    '',
    'vrrp_instance VI_1 {',
    '    state BACKUP',
    `    interface ${p.interface}`,
    `    virtual_router_id ${p.routerId ?? 5}`,
    `    priority ${p.priority ?? 100}`,
    `    advert_int ${p.advertInt ?? 1}`,
    '    nopreempt',
    ...(pass === undefined ? [] : ['    authentication {', '        auth_type PASS', `        auth_pass ${pass}`, '    }']),
    '    virtual_ipaddress {',
    `        ${p.vip}`,
    '    }',
    '    track_script {',
    '        check_apiserver',
    '    }',
    '}',
    '',
  ].join('\n');
}

/** The check script (pure): haproxy accepts connections on the port here, and on the VIP when this node holds it. */
export function renderCheckScript(p: Pick<KeepalivedParams, 'vip' | 'port'>): string {
  return `#!/bin/sh
# Managed by Capstan: keepalived's check for the API server VIP (seed 004). keepalived runs it as
# nobody every few seconds; when it fails, this node gives the VIP up. It passes while haproxy
# accepts connections on port ${p.port}: haproxy checks every API server itself (/healthz) and routes
# around dead ones, and this passes before the first API server exists, so kubeadm init finds the VIP.
APISERVER_VIP=${p.vip}
APISERVER_DEST_PORT=${p.port}

errorExit() {
    echo "*** $*" 1>&2
    exit 1
}

timeout 2 bash -c "</dev/tcp/127.0.0.1/\${APISERVER_DEST_PORT}" 2>/dev/null || errorExit "Error connecting to 127.0.0.1:\${APISERVER_DEST_PORT}"
if ip -o addr show | grep -q " inet \${APISERVER_VIP}/"; then
    timeout 2 bash -c "</dev/tcp/\${APISERVER_VIP}/\${APISERVER_DEST_PORT}" 2>/dev/null || errorExit "Error connecting to \${APISERVER_VIP}:\${APISERVER_DEST_PORT}"
fi
`;
}

/** The interface that carries `address`, from `ip -o addr show` (pure); null when none does. */
export function interfaceOf(ipAddrOutput: string, address: string): string | null {
  for (const line of ipAddrOutput.split('\n')) {
    const match = /^\d+:\s+([^\s:@]+)(?:@\S+)?\s+inet6?\s+([0-9a-fA-F.:]+)\//.exec(line);
    if (match && match[2] === address) return match[1]!;
  }
  return null;
}

async function resolveInterface(ctx: CheckContext, p: KeepalivedParams): Promise<string> {
  if (p.interface !== undefined) return p.interface;
  const result = await ctx.probe(sh`ip -o addr show`);
  if (result.code !== 0) throw new Error(`ip -o addr show failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  const found = interfaceOf(result.stdout, p.address!);
  if (!found) throw new Error(`no interface carries ${p.address} on ${ctx.host.name}: set the interface for the VIP (vip_interface)`);
  return found;
}

/**
 * The check of a new keepalived.conf, for WriteOptions.validate: `keepalived --config-test` on the
 * write's temp file. keepalived's exit code says nothing (it ends killed by its own SIGTERM whether
 * or not the file is fine); what it found is what it prints, on stderr (the same lines
 * `--config-test=LOG_FILE` writes to a log file). The check therefore fails, with those lines on its
 * stderr, exactly when there are any. The braces keep dash's "Terminated" note about the killed
 * keepalived out of them. In a task's apply:
 * `ctx.writeFile(KEEPALIVED_CONFIG, text, { mode: '0640', validate: keepalivedConfigCheck })`.
 *
 * @example keepalivedConfigCheck('/etc/keepalived/.capstan.0123456789abcdef') // keepalived --config-test -f /etc/keepalived/.capstan.0123456789abcdef, its report on stderr
 */
export function keepalivedConfigCheck(path: string): Command {
  return sh`{ problems=$(keepalived --config-test -f ${path} 2>&1 >/dev/null); } 2>/dev/null; [ -z "$problems" ] || { printf '%s\\n' "$problems" >&2; exit 1; }`;
}

/**
 * Ensures /etc/keepalived/keepalived.conf is exactly {@link renderKeepalivedConfig}'s file (mode
 * 0640: it holds the VRRP password, shown as a Secret in diffs), for the interface given or the
 * one that carries this node's address. A new file is checked with `keepalived --config-test`
 * ({@link keepalivedConfigCheck}) in the write's temp file, before the rename that would replace the
 * old one: a configuration keepalived finds problems in never replaces a working one, and the task
 * fails with keepalived's report. Id: `file:/etc/keepalived/keepalived.conf`.
 *
 * @example ensureKeepalivedConfig({ vip: '192.168.0.66', port: 8888, address: '192.168.0.61', authPass: 'ZqSj#f1G' })
 */
export function ensureKeepalivedConfig(params: PerHostParams<KeepalivedParams>, options?: TaskOptions): Task<void> {
  const desired = async (ctx: CheckContext, p: KeepalivedParams) => renderKeepalivedConfig({ ...p, interface: await resolveInterface(ctx, p) });
  const shown = (text: string | null, p: KeepalivedParams) => (text === null ? null : p.authPass === undefined ? text : new Secret(text));
  return defineTask<KeepalivedParams>(
    {
      kind: 'keepalived-config',
      id: () => `file:${KEEPALIVED_CONFIG}`,
      title: (p) => `keepalived: VIP ${p.vip} (router ${p.routerId ?? 5}, priority ${p.priority ?? 100}, nopreempt)`,
      validate: validateKeepalivedParams,
      desired: (p) => ({ ...p, authPass: reveal(p.authPass) === undefined ? undefined : `secret:${reveal(p.authPass)}` }),
      probes: () => [{ kind: 'read', path: KEEPALIVED_CONFIG }, { kind: 'stat', path: KEEPALIVED_CONFIG }],
      async check(ctx, p) {
        const want = await desired(ctx, p);
        const current = await ctx.readText(KEEPALIVED_CONFIG);
        const drift: Drift[] = [];
        if (current !== want) drift.push({ subject: 'content', file: KEEPALIVED_CONFIG, current: shown(current, p), desired: shown(want, p) });
        const stat = current === null ? null : await ctx.stat(KEEPALIVED_CONFIG);
        if (stat && stat.mode !== '0640') drift.push({ subject: 'mode', current: stat.mode, desired: '0640' });
        return drift;
      },
      async apply(ctx, p) {
        const want = await desired(ctx, p);
        await ctx.run(sh`mkdir -p -m 0755 /etc/keepalived`);
        const content = p.authPass === undefined ? want : new Secret(want);
        await ctx.writeFile(KEEPALIVED_CONFIG, content, { mode: '0640', owner: 'root', group: 'root', validate: keepalivedConfigCheck });
      },
    },
    params,
    options,
  );
}

/**
 * Ensures the check script, exactly {@link renderCheckScript}'s, owned by root with mode 0755
 * (keepalived's script security refuses a script that others can write), in /etc/keepalived
 * (made when missing: the package may not have made it yet). Id: `file:/etc/keepalived/check_apiserver.sh`.
 *
 * @example ensureCheckScript({ vip: '192.168.0.66', port: 8888 })
 */
export function ensureCheckScript(params: PerHostParams<Pick<KeepalivedParams, 'vip' | 'port'>>, options?: TaskOptions): Task<void> {
  return defineTask<Pick<KeepalivedParams, 'vip' | 'port'>>(
    {
      kind: 'keepalived-check-script',
      id: () => `file:${CHECK_SCRIPT}`,
      title: (p) => `keepalived check script (haproxy on :${p.port}, VIP ${p.vip})`,
      validate: (p) => validateKeepalivedParams({ ...p, interface: 'lo' }),
      probes: () => [{ kind: 'read', path: CHECK_SCRIPT }, { kind: 'stat', path: CHECK_SCRIPT }],
      async check(ctx, p) {
        const want = renderCheckScript(p);
        const current = await ctx.readText(CHECK_SCRIPT);
        const drift: Drift[] = [];
        if (current !== want) drift.push({ subject: 'content', file: CHECK_SCRIPT, current, desired: want });
        const stat = current === null ? null : await ctx.stat(CHECK_SCRIPT);
        if (stat && (stat.mode !== '0755' || stat.owner !== 'root' || stat.group !== 'root')) {
          drift.push({ subject: 'mode and owner', current: `${stat.mode} ${stat.owner}:${stat.group}`, desired: '0755 root:root' });
        }
        return drift;
      },
      async apply(ctx, p) {
        await ctx.run(sh`mkdir -p -m 0755 /etc/keepalived`);
        await ctx.writeFile(CHECK_SCRIPT, renderCheckScript(p), { mode: '0755', owner: 'root', group: 'root' });
      },
    },
    params,
    options,
  );
}

/**
 * keepalived for the VIP, as seed 004 sets it up: the check script ({@link ensureCheckScript}),
 * keepalived.conf ({@link ensureKeepalivedConfig}), and keepalived enabled and running — restarted
 * (a handler, at the end of the play) when either file changed, or when it runs older files. Install the keepalived package and haproxy (the
 * port the script checks) first.
 *
 * @example await play('VIP', 'control_plane', [ensurePackages(['keepalived']), ...ensureKeepalived({ vip: '192.168.0.66', port: 8888, address: (h) => String(h.vars.ip) })])
 */
export function ensureKeepalived(params: PerHostParams<KeepalivedParams>, options: TaskOptions = {}): Task<void>[] {
  const restart = { ...options, notify: [...(options.notify ?? []), restartService('keepalived')] };
  return [
    ensureCheckScript({ vip: params.vip, port: params.port }, restart),
    ensureKeepalivedConfig(params, restart),
    ensureService('keepalived', { enabled: true, running: true, restartOn: [KEEPALIVED_CONFIG, CHECK_SCRIPT] }, options),
  ];
}
