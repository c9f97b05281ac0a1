import { expect } from 'chai';
import { ensureHaproxy, ensureHaproxyConfig, haproxyConfigCheck, renderHaproxyConfig, validateHaproxyParams, HAPROXY_CONFIG } from '../../tasks/haproxy.js';
import { recordingContext } from '../helpers/apply-context.js';

const masters = [
  { name: 'master1', address: '172.27.11.10', port: 6443 },
  { name: 'master2', address: '172.27.11.20', port: 6443 },
  { name: 'master3', address: '172.27.11.30', port: 6443 },
];

describe('haproxy: the API servers behind a load balancer', () => {
  it('renders seed 002\'s balancer exactly: TCP frontend on the balancer\'s :6443, round robin, TCP checks, fall 3 rise 2', () => {
    expect(renderHaproxyConfig({ bind: '172.27.11.200:6443', check: 'tcp', servers: masters })).to.equal(`# Managed by Capstan: the Kubernetes API load balancer (seed 002). Changes here are overwritten.
global
    user haproxy
    group haproxy

defaults
    mode http
    log global
    retries 2
    timeout connect 3000ms
    timeout server 5000ms
    timeout client 5000ms

frontend kubernetes
    bind 172.27.11.200:6443
    option tcplog
    mode tcp
    default_backend kubernetes-master-nodes

backend kubernetes-master-nodes
    mode tcp
    balance roundrobin
    option tcp-check
    server master1 172.27.11.10:6443 check fall 3 rise 2
    server master2 172.27.11.20:6443 check fall 3 rise 2
    server master3 172.27.11.30:6443 check fall 3 rise 2
`);
  });

  it('renders seed 004\'s per-control-plane proxy exactly: *:8888 → :6443 with GET /healthz over TLS', () => {
    const servers = [
      { name: 'node1', address: '192.168.0.61', port: 6443 },
      { name: 'node2', address: '192.168.0.62', port: 6443 },
      { name: 'node3', address: '192.168.0.63', port: 6443 },
    ];
    expect(renderHaproxyConfig({ bind: '*:8888', check: 'healthz', servers })).to.equal(`# Managed by Capstan: the Kubernetes API servers behind the keepalived VIP (seed 004). Changes here are overwritten.
global
    log /dev/log local0
    log /dev/log local1 notice
    daemon

defaults
    mode                    http
    log                     global
    option                  httplog
    option                  dontlognull
    option http-server-close
    option                  redispatch
    retries                 1
    timeout http-request    10s
    timeout queue           20s
    timeout connect         5s
    timeout client          20s
    timeout server          20s
    timeout http-keep-alive 10s
    timeout check           10s

frontend apiserver
    bind *:8888
    mode tcp
    option tcplog
    default_backend apiserver

backend apiserver
    option httpchk GET /healthz
    http-check expect status 200
    mode tcp
    balance roundrobin
    server node1 192.168.0.61:6443 check check-ssl verify none fall 3 rise 2
    server node2 192.168.0.62:6443 check check-ssl verify none fall 3 rise 2
    server node3 192.168.0.63:6443 check check-ssl verify none fall 3 rise 2
`);
  });

  it('takes other fall/rise values and names, and brackets IPv6 backends', () => {
    const text = renderHaproxyConfig({ bind: '[fd00::1]:6443', check: 'tcp', fall: 5, rise: 1, frontend: 'api', backend: 'cps', servers: [{ name: 'cp1', address: 'fd00::11', port: 6443 }] });
    expect(text).to.include('frontend api\n    bind [fd00::1]:6443\n');
    expect(text).to.include('    default_backend cps\n');
    expect(text).to.include('backend cps\n');
    expect(text).to.include('    server cp1 [fd00::11]:6443 check fall 5 rise 1\n');
  });

  it('refuses parameters haproxy would refuse, naming them', () => {
    const ok = { bind: '*:6443', check: 'tcp' as const, servers: masters };
    expect(() => validateHaproxyParams({ ...ok, bind: '6443' })).to.throw(/bind must be address:port/);
    expect(() => validateHaproxyParams({ ...ok, servers: [] })).to.throw(/at least one API server/);
    expect(() => validateHaproxyParams({ ...ok, servers: [masters[0]!, masters[0]!] })).to.throw(/master1 is listed twice/);
    expect(() => validateHaproxyParams({ ...ok, servers: [{ name: 'bad name', address: '10.0.0.1', port: 6443 }] })).to.throw(/server name "bad name"/);
    expect(() => validateHaproxyParams({ ...ok, servers: [{ name: 'a', address: '10.0.0.1', port: 70000 }] })).to.throw(/port must be 1..65535/);
    expect(() => validateHaproxyParams({ ...ok, fall: 0 })).to.throw(/fall must be a whole number/);
    expect(() => validateHaproxyParams({ ...ok, check: 'http' as 'tcp' })).to.throw(/check must be tcp or healthz/);
  });

  it('owns the whole file (id file:/etc/haproxy/haproxy.cfg), and restarts haproxy when it runs an older configuration', () => {
    const config = ensureHaproxyConfig({ bind: '*:8888', check: 'healthz', servers: masters });
    expect(config.static!.id).to.equal(`file:${HAPROXY_CONFIG}`);
    expect(config.static!.title).to.equal('haproxy: *:8888 → 172.27.11.10:6443, 172.27.11.20:6443, 172.27.11.30:6443 (/healthz checks)');
    const [, service] = ensureHaproxy({ bind: '*:8888', check: 'healthz', servers: masters });
    expect(service!.static!.id).to.equal('service:haproxy');
    expect(service!.static!.desired).to.deep.equal({ name: 'haproxy.service', enabled: true, running: true, restartOn: [HAPROXY_CONFIG] });
    expect(() => ensureHaproxyConfig({ bind: 'nope', check: 'tcp', servers: masters })).to.throw(/invalid parameters for haproxy-config task: bind must be/);
  });

  it('applies with one write whose temp file haproxy -c checks before the rename (no candidate file beside it)', async () => {
    const params = { bind: '172.27.11.200:6443', check: 'tcp' as const, servers: masters };
    const { ctx, log, writes } = recordingContext();
    await ensureHaproxyConfig(params).static!.apply(ctx, []);
    expect(log).to.deep.equal([
      'run mkdir -p -m 0755 /etc/haproxy',
      'write /etc/haproxy/haproxy.cfg mode=0644 validate: haproxy -c -f /etc/haproxy/.capstan.0123456789abcdef',
    ]);
    expect(writes[0]!.content).to.equal(renderHaproxyConfig(params));
    expect(haproxyConfigCheck("/etc/haproxy/.capstan.it's").text).to.equal("haproxy -c -f '/etc/haproxy/.capstan.it'\\''s'");
  });
});
