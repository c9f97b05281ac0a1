import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createSocket } from 'node:dgram';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import {
  DNS_QUERY_SCRIPT,
  POD_STATE_JSONPATH,
  SERVICES_JSONPATH,
  SMOKE_TEST_MANIFEST,
  clusterDomain,
  dnsFinding,
  dnsProbe,
  httpFinding,
  httpProbe,
  parsePodStates,
  parseServices,
  serviceAddress,
  smokeTestFindings,
} from '../../tasks/cluster.js';

const run = promisify(execFile);

describe('smoke test (pure parts)', () => {
  it('is a DaemonSet of nginx that tolerates the control-plane taint (seed 002: a pod on every node)', () => {
    const manifest = parseAllDocuments(SMOKE_TEST_MANIFEST)[0]!.toJS();
    expect(manifest.kind).to.equal('DaemonSet');
    expect(manifest.apiVersion).to.equal('apps/v1');
    expect(manifest.spec.selector.matchLabels).to.deep.equal({ app: 'capstan-smoke-nginx' });
    expect(manifest.spec.template.metadata.labels).to.deep.equal({ app: 'capstan-smoke-nginx' });
    expect(manifest.spec.template.spec.tolerations).to.deep.equal([{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(manifest.spec.template.spec.containers).to.deep.equal([{ name: 'nginx', image: 'nginx:stable', ports: [{ containerPort: 80 }] }]);
  });

  it('reads name, node, phase and per-container readiness, with an empty node for a pending pod', () => {
    expect(POD_STATE_JSONPATH).to.equal('{range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{" "}{.status.phase}{" "}{.status.containerStatuses[*].ready}{"\\n"}{end}');
    expect(parsePodStates('a cp1 Running true\nb  Pending \nc w1 Running true false\nd w1 Running \n')).to.deep.equal([
      { name: 'a', node: 'cp1', phase: 'Running', ready: true },
      { name: 'b', node: '', phase: 'Pending', ready: false },
      { name: 'c', node: 'w1', phase: 'Running', ready: false },
      { name: 'd', node: 'w1', phase: 'Running', ready: false },
    ]);
  });

  it('passes when every node has a Running, Ready smoke pod and kube-system is Ready', () => {
    const smoke = parsePodStates('s-1 cp1 Running true\ns-2 w1 Running true\n');
    const system = parsePodStates('coredns-x cp1 Running true\nkube-proxy-y w1 Running true\n');
    expect(smokeTestFindings(['cp1', 'w1'], smoke, system)).to.deep.equal([]);
  });

  it('names the node of each problem: no pod, a pod not Ready, a kube-system pod not Running', () => {
    const smoke = parsePodStates('s-1 cp1 Running true\ns-2 w1 Pending false\n');
    const system = parsePodStates('coredns-x  Pending \nkube-proxy-y w2 Running true\netcd-cp1 cp1 Running false\n');
    expect(smokeTestFindings(['cp1', 'w1', 'w2'], smoke, system)).to.deep.equal([
      'node w1: pod s-2 Pending, not Ready',
      'node w2: no capstan-smoke-nginx pod',
      'node (unscheduled): kube-system pod coredns-x Pending, not Ready',
      'node cp1: kube-system pod etcd-cp1 Running, not Ready',
    ]);
  });

  it('puts a ClusterIP Service named like the DaemonSet in front of its pods, port 80 to the pods\' 80', () => {
    const docs = parseAllDocuments(SMOKE_TEST_MANIFEST).map((d) => d.toJS());
    expect(docs.map((d) => d.kind)).to.deep.equal(['DaemonSet', 'Service']);
    expect(docs[1]).to.deep.equal({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'capstan-smoke-nginx', namespace: 'default', labels: { app: 'capstan-smoke-nginx' } },
      spec: { type: 'ClusterIP', selector: docs[0].spec.template.metadata.labels, ports: [{ name: 'http', port: 80, targetPort: 80 }] },
    });
    expect(parseYaml(SMOKE_TEST_MANIFEST.split('---\n')[1]!).spec.selector).to.deep.equal({ app: 'capstan-smoke-nginx' });
  });

  it('reads Services by namespace/name with their ClusterIP and ports; a headless or port-less one has no address', () => {
    expect(SERVICES_JSONPATH).to.equal('{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.spec.clusterIP}{" "}{.spec.ports[*].port}{"\\n"}{end}');
    const services = parseServices('default kubernetes 10.96.0.1 443\nkube-system kube-dns 10.96.0.10 53 53 9153\ndefault headless None 80\ndefault bare 10.96.1.3 \n');
    expect([...services]).to.deep.equal([
      ['default/kubernetes', { clusterIP: '10.96.0.1', ports: [443] }],
      ['kube-system/kube-dns', { clusterIP: '10.96.0.10', ports: [53, 53, 9153] }],
      ['default/headless', { clusterIP: 'None', ports: [80] }],
      ['default/bare', { clusterIP: '10.96.1.3', ports: [] }],
    ]);
    expect(serviceAddress(services.get('kube-system/kube-dns'))).to.deep.equal({ ip: '10.96.0.10', port: 53 });
    expect([serviceAddress(services.get('default/headless')), serviceAddress(services.get('default/bare')), serviceAddress(undefined)]).to.deep.equal([undefined, undefined, undefined]);
  });

  it('asks the Service with curl (5 s at most) and accepts only nginx\'s page', () => {
    expect(httpProbe('10.96.1.0', 80).text).to.equal('curl -sS --max-time 5 http://10.96.1.0:80/');
    const url = 'http://10.96.1.0:80/';
    expect(httpFinding('k8s-01', url, { code: 0, stdout: '<html><head><title>Welcome to nginx!</title>', stderr: '' })).to.equal(undefined);
    expect(httpFinding('k8s-01', url, { code: 7, stdout: '', stderr: 'curl: (7) Failed to connect to 10.96.1.0 port 80 after 0 ms: Could not connect to server\n' })).to.equal(
      'node k8s-01: service default/capstan-smoke-nginx at http://10.96.1.0:80/ does not answer: curl: (7) Failed to connect to 10.96.1.0 port 80 after 0 ms: Could not connect to server',
    );
    expect(httpFinding('k8s-01', url, { code: 0, stdout: 'It works!', stderr: '' })).to.equal(`node k8s-01: service default/capstan-smoke-nginx at ${url} does not answer: the answer is not nginx's page`);
    expect(httpFinding('k8s-01', url, { code: 28, stdout: '', stderr: '' })).to.match(/does not answer: curl exit 28$/);
  });

  it('asks cluster DNS with python3 and wants exactly the kubernetes Service\'s ClusterIP', () => {
    expect(dnsProbe('10.96.0.10', 'kubernetes.default.svc.cluster.local').text).to.equal(`python3 -c '${DNS_QUERY_SCRIPT.replace(/'/g, `'\\''`)}' 10.96.0.10 kubernetes.default.svc.cluster.local`);
    const want = (stdout: string, code: number | null = 0, stderr = '') => dnsFinding('k8s-01', '10.96.0.10', 'kubernetes.default.svc.cluster.local', '10.96.0.1', { code, stdout, stderr });
    const prefix = 'node k8s-01: cluster DNS 10.96.0.10 does not resolve kubernetes.default.svc.cluster.local to 10.96.0.1';
    expect(want('rcode 0\nA 10.96.0.1\n')).to.equal(undefined);
    expect(want('rcode 3\n')).to.equal(`${prefix}: NXDOMAIN, no address`);
    expect(want('rcode 0\nA 10.96.0.9\n')).to.equal(`${prefix}: NOERROR, answered 10.96.0.9`);
    expect(want('rcode 0\nA 10.96.0.1\nA 10.96.0.2\n')).to.equal(`${prefix}: NOERROR, answered 10.96.0.1, 10.96.0.2`);
    expect(want('error timed out\n')).to.equal(`${prefix}: timed out`);
    expect(want('', 127, 'sh: 1: python3: not found\n')).to.equal(`${prefix}: sh: 1: python3: not found (the DNS check needs python3 on the node)`);
  });

  it('takes the cluster domain from the kubelet\'s config, cluster.local without one', () => {
    expect(clusterDomain('apiVersion: kubelet.config.k8s.io/v1beta1\nclusterDNS:\n- 10.96.0.10\nclusterDomain: corp.example\nkind: KubeletConfiguration\n')).to.equal('corp.example');
    expect(clusterDomain('clusterDomain: "cluster.local."\n')).to.equal('cluster.local');
    expect([clusterDomain(null), clusterDomain('kind: KubeletConfiguration\n')]).to.deep.equal(['cluster.local', 'cluster.local']);
  });

  it('the DNS query script sends one A question and prints the rcode and the A answers of a compressed reply (CNAME skipped)', async function () {
    // The script asks port 53; a second loopback address keeps clear of a local resolver on 127.0.0.53.
    if (process.getuid?.() !== 0) this.skip();
    const server = createSocket('udp4');
    const questions: Buffer[] = [];
    server.on('message', (query, peer) => {
      questions.push(query);
      const end = query.indexOf(0, 12) + 5;
      const name = (labels: string[]) => Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
      const rr = (owner: Buffer, type: number, data: Buffer) => {
        const fixed = Buffer.alloc(10);
        fixed.writeUInt16BE(type, 0);
        fixed.writeUInt16BE(1, 2);
        fixed.writeUInt32BE(5, 4);
        fixed.writeUInt16BE(data.length, 8);
        return Buffer.concat([owner, fixed, data]);
      };
      const header = Buffer.from(query.subarray(0, 12));
      header.writeUInt16BE(0x8585, 2); // QR AA RD RA, rcode 5 (the low four bits)
      header.writeUInt16BE(2, 6);
      const pointer = Buffer.from([0xc0, 12]);
      const reply = Buffer.concat([header, query.subarray(12, end), rr(pointer, 5, name(['api', 'example'])), rr(name(['api', 'example']), 1, Buffer.from([10, 96, 0, 1]))]);
      server.send(reply, peer.port, peer.address);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).bind(53, '127.0.0.77', () => resolve()));
    try {
      const { stdout } = await run('python3', ['-c', DNS_QUERY_SCRIPT, '127.0.0.77', 'kubernetes.default.svc.cluster.local.']);
      expect(stdout).to.equal('rcode 5\nA 10.96.0.1\n');
      expect(questions).to.have.length(1);
      const question = questions[0]!;
      expect([question.readUInt16BE(2), question.readUInt16BE(4), question.readUInt16BE(6)]).to.deep.equal([0x0100, 1, 0]);
      expect(question.subarray(12).toString('latin1')).to.equal('\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01');
    } finally {
      server.close();
    }
  });
});
