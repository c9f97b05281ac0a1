import { isIP } from 'node:net';
import { defineTask, sh, type Command, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { ensureService, restartService } from './systemd.js';

/*
 * HAProxy in front of the Kubernetes API servers, the two ways the seeds do it:
 *
 *   - seed 002, an external balancer: a TCP frontend on <balancer ip>:6443, round robin over the
 *     control planes' :6443, each health-checked with a TCP connect (`option tcp-check`,
 *     `check fall 3 rise 2`: out after 3 failed checks, back after 2 good ones);
 *   - seed 004, haproxy on every control plane behind a keepalived VIP: a TCP frontend on *:8888,
 *     round robin over the control planes' :6443, each health-checked with `GET /healthz` over TLS
 *     (the API server answers it anonymously). The seed's backend lists both `option httpchk GET
 *     /healthz` and `option ssl-hello-chk`; haproxy keeps only the last `option …chk`, so the seed
 *     really checked a TLS hello. We check /healthz over TLS (`check check-ssl verify none`, as the
 *     Kubernetes documentation's haproxy example does), which is what the seed meant. The seed's
 *     `option forwardfor` is left out: every proxy here is in TCP mode, where haproxy ignores it
 *     with a warning at every start.
 *
 * The whole file is Capstan's (rendered by {@link renderHaproxyConfig}, a pure function), checked
 * with `haproxy -c` as part of the atomic write, before it replaces the old one, and haproxy is
 * restarted when it runs an older configuration (ensureService's restartOn: the effect, not the edit).
 */

/** Where Debian's, Ubuntu's and RHEL's haproxy packages read their configuration. */
export const HAPROXY_CONFIG = '/etc/haproxy/haproxy.cfg';

/** One API server behind the frontend. */
export interface HaproxyServer {
  /** The server's name in haproxy's logs and stats: the node's name. */
  name: string;
  address: string;
  port: number;
}

export interface HaproxyParams {
  /** What the frontend binds: `172.27.11.200:6443` (seed 002) or `*:8888` (seed 004). */
  bind: string;
  servers: readonly HaproxyServer[];
  /** `tcp`: a TCP connect (seed 002); `healthz`: GET /healthz over TLS, status 200 (seed 004). */
  check: 'tcp' | 'healthz';
  /** Failed checks before a server is taken out (default 3). */
  fall?: number;
  /** Good checks before it is put back (default 2). */
  rise?: number;
  /** Names of the frontend and backend; default kubernetes / kubernetes-master-nodes (seed 002) or apiserver / apiserver (seed 004). */
  frontend?: string;
  backend?: string;
}

const NAME = /^[A-Za-z0-9._:-]+$/;

/** Throws unless the parameters make a valid configuration (names haproxy accepts, ports, addresses). */
export function validateHaproxyParams(p: HaproxyParams): void {
  if (typeof p.bind !== 'string' || !/^(\*|[0-9.]+|\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(p.bind)) {
    throw new Error(`bind must be address:port or *:port, got ${JSON.stringify(p.bind)}`);
  }
  if (p.check !== 'tcp' && p.check !== 'healthz') throw new Error(`check must be tcp or healthz, got ${JSON.stringify(p.check)}`);
  if (!Array.isArray(p.servers) || p.servers.length === 0) throw new Error('servers must list at least one API server');
  const names = new Set<string>();
  for (const server of p.servers) {
    if (!NAME.test(server.name)) throw new Error(`server name ${JSON.stringify(server.name)} must be letters, digits, . _ : -`);
    if (names.has(server.name)) throw new Error(`server ${server.name} is listed twice`);
    names.add(server.name);
    if (isIP(server.address) === 0 && !/^[A-Za-z0-9.-]+$/.test(server.address)) throw new Error(`server ${server.name}: address ${JSON.stringify(server.address)} is not an IP address or host name`);
    if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) throw new Error(`server ${server.name}: port must be 1..65535, got ${server.port}`);
  }
  for (const key of ['fall', 'rise'] as const) {
    const value = p[key];
    if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 100)) throw new Error(`${key} must be a whole number from 1 to 100, got ${value}`);
  }
  for (const key of ['frontend', 'backend'] as const) {
    const value = p[key];
    if (value !== undefined && !NAME.test(value)) throw new Error(`${key} must be letters, digits, . _ : -, got ${JSON.stringify(value)}`);
  }
}

/** The server address as haproxy wants it: IPv6 in brackets. */
function hostPort(server: HaproxyServer): string {
  return `${isIP(server.address) === 6 ? `[${server.address}]` : server.address}:${server.port}`;
}

/**
 * haproxy.cfg for the API servers (pure). `tcp` renders seed 002's file (its global, defaults and
 * timeouts); `healthz` renders seed 004's (its global with syslog, its defaults and timeouts) with
 * the /healthz check over TLS.
 */
export function renderHaproxyConfig(p: HaproxyParams): string {
  validateHaproxyParams(p);
  const fall = p.fall ?? 3;
  const rise = p.rise ?? 2;
  if (p.check === 'tcp') {
    const frontend = p.frontend ?? 'kubernetes';
    const backend = p.backend ?? 'kubernetes-master-nodes';
    return [
      '# Managed by Capstan: the Kubernetes API load balancer (seed 002). Changes here are overwritten.',
      'global',
      '    user haproxy',
      '    group haproxy',
      '',
      'defaults',
      '    mode http',
      '    log global',
      '    retries 2',
      '    timeout connect 3000ms',
      '    timeout server 5000ms',
      '    timeout client 5000ms',
      '',
      `frontend ${frontend}`,
      `    bind ${p.bind}`,
      '    option tcplog',
      '    mode tcp',
      `    default_backend ${backend}`,
      '',
      `backend ${backend}`,
      '    mode tcp',
      '    balance roundrobin',
      '    option tcp-check',
      ...p.servers.map((s) => `    server ${s.name} ${hostPort(s)} check fall ${fall} rise ${rise}`),
      '',
    ].join('\n');
  }
  const frontend = p.frontend ?? 'apiserver';
  const backend = p.backend ?? 'apiserver';
  return [
    '# Managed by Capstan: the Kubernetes API servers behind the keepalived VIP (seed 004). Changes here are overwritten.',
    'global',
    '    log /dev/log local0',
    '    log /dev/log local1 notice',
    '    daemon',
    '',
    'defaults',
    '    mode                    http',
    '    log                     global',
    '    option                  httplog',
    '    option                  dontlognull',
    '    option http-server-close',
    '    option                  redispatch',
    '    retries                 1',
    '    timeout http-request    10s',
    '    timeout queue           20s',
    '    timeout connect         5s',
    '    timeout client          20s',
    '    timeout server          20s',
    '    timeout http-keep-alive 10s',
    '    timeout check           10s',
    '',
    `frontend ${frontend}`,
    `    bind ${p.bind}`,
    '    mode tcp',
    '    option tcplog',
    `    default_backend ${backend}`,
    '',
    `backend ${backend}`,
    '    option httpchk GET /healthz',
    '    http-check expect status 200',
    '    mode tcp',
    '    balance roundrobin',
    ...p.servers.map((s) => `    server ${s.name} ${hostPort(s)} check check-ssl verify none fall ${fall} rise ${rise}`),
    '',
  ].join('\n');
}

/**
 * The check of a new haproxy.cfg, for WriteOptions.validate: `haproxy -c` on the write's temp file,
 * without `-q`, so that a refusal carries haproxy's ALERT lines (the line and keyword it refused;
 * `-q` makes it print nothing at all). In a task's apply:
 * `ctx.writeFile(HAPROXY_CONFIG, text, { mode: '0644', validate: haproxyConfigCheck })`.
 *
 * @example haproxyConfigCheck('/etc/haproxy/.capstan.0123456789abcdef') // haproxy -c -f /etc/haproxy/.capstan.0123456789abcdef
 */
export function haproxyConfigCheck(path: string): Command {
  return sh`haproxy -c -f ${path}`;
}

/**
 * Ensures /etc/haproxy/haproxy.cfg is exactly {@link renderHaproxyConfig}'s file (mode 0644). The new
 * file is checked with `haproxy -c` ({@link haproxyConfigCheck}) in the write's temp file, before the
 * rename that would replace the old one: a configuration haproxy refuses never replaces a working
 * one, and the task fails with haproxy's exit code. Run it after the haproxy package is installed;
 * restart haproxy with {@link ensureHaproxy}'s service task (or a restartService handler). Id:
 * `file:/etc/haproxy/haproxy.cfg`.
 *
 * @example ensureHaproxyConfig({ bind: '172.27.11.200:6443', check: 'tcp', servers: [{ name: 'master1', address: '172.27.11.10', port: 6443 }] })
 */
export function ensureHaproxyConfig(params: PerHostParams<HaproxyParams>, options?: TaskOptions): Task<void> {
  return defineTask<HaproxyParams>(
    {
      kind: 'haproxy-config',
      id: () => `file:${HAPROXY_CONFIG}`,
      title: (p) => `haproxy: ${p.bind} → ${p.servers.map(hostPort).join(', ')} (${p.check === 'tcp' ? 'TCP checks' : '/healthz checks'})`,
      validate: validateHaproxyParams,
      probes: () => [{ kind: 'read', path: HAPROXY_CONFIG }],
      async check(ctx, p) {
        const current = await ctx.readText(HAPROXY_CONFIG);
        const desired = renderHaproxyConfig(p);
        return current === desired ? [] : [{ subject: 'content', file: HAPROXY_CONFIG, current, desired }];
      },
      async apply(ctx, p) {
        const desired = renderHaproxyConfig(p);
        await ctx.run(sh`mkdir -p -m 0755 /etc/haproxy`);
        await ctx.writeFile(HAPROXY_CONFIG, desired, { mode: '0644', validate: haproxyConfigCheck });
      },
    },
    params,
    options,
  );
}

/**
 * The configuration and the service: haproxy.cfg as {@link ensureHaproxyConfig} renders it, and
 * haproxy enabled and running, restarted (a handler, at the end of the play) when the file changed,
 * or when it runs an older file (seed 002's `systemctl restart haproxy`, seed 004's `systemctl enable haproxy`).
 *
 * @example
 * const servers = [{ name: 'master1', address: '172.27.11.10', port: 6443 }, { name: 'master2', address: '172.27.11.20', port: 6443 }];
 * await play('load balancer', 'balancer', [ensurePackages(['haproxy']), ...ensureHaproxy({ bind: '172.27.11.200:6443', check: 'tcp', servers })]);
 */
export function ensureHaproxy(params: PerHostParams<HaproxyParams>, options: TaskOptions = {}): Task<void>[] {
  return [
    // The handler restarts haproxy at the end of the play whenever the file changed; restartOn catches a
    // run that stopped before its handler (it compares whole seconds: a package that started haproxy in the
    // second the file was written is the handler's case).
    ensureHaproxyConfig(params, { ...options, notify: [...(options.notify ?? []), restartService('haproxy')] }),
    ensureService('haproxy', { enabled: true, running: true, restartOn: [HAPROXY_CONFIG] }, options),
  ];
}
