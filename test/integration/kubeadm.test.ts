import { expect } from 'chai';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, stringify } from 'yaml';
import { LAB_USER, LAB_USER_PASSWORD } from '../../runner/lab/index.js';
import type { LabState } from '../../runner/lab/index.js';
import { withLab, sshToLab } from '../helpers/lab.js';
import { capstan, eventsOf, recapOf } from '../helpers/cli.js';
import { installKubernetesStandIns } from '../lab/install.js';
import { caCertHash } from '../../tasks/kubeadm.js';
import { expectNothingChanged } from '../helpers/recap.js';
import { capstanOnTerminal } from '../helpers/pty.js';

const PLAYBOOK = 'test/fixtures/playbooks/kubeadm-lab.ts';
const TOKEN = /\b[a-z0-9]{6}\.[a-z0-9]{16}\b/;
const CERT_KEY = /certificate-key\s+[a-f0-9]{64}/;

describe('kubeadm lifecycle on lab hosts (Kubernetes stand-ins)', function () {
  this.timeout(900_000);
  let lab: LabState;
  let args: string[];

  before(async () => {
    lab = await withLab([
      { name: 'cp1', groups: ['control_plane'] },
      { name: 'w1', groups: ['workers'] },
      { name: 'w2', groups: ['workers'] },
      { name: 'w3', groups: ['workers'] },
    ]);
    await installKubernetesStandIns(lab);
    // The controller reads the CNI manifest: the lab's, as a file on this machine.
    const url = pathToFileURL('test/fixtures/cni/flannel-lab.yaml').href;
    args = ['run', PLAYBOOK, '-i', lab.inventoryPath, '-e', `cni_manifest_url=${url}`, '--limit', 'all:!w3'];
  });

  it('--check on fresh hosts: would init, would join (pending the init), changes nothing, mints nothing', async () => {
    const before = await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, 'find /etc -xdev -type f -exec sha256sum {} + | sort | sha256sum')));
    const result = await capstan([...args, '--check', '--json']);
    expect(result.code, result.stderr).to.equal(0);
    const events = eventsOf(result.stdout);
    const init = events.find((e) => e.type === 'task' && e.task === 'kubeadm:init') as { status: string; drift: { subject: string; desired: string }[] };
    expect(init.status).to.equal('changed');
    expect(init.drift).to.deep.equal([{ subject: 'control plane', current: 'not initialised', desired: 'initialised with kubeadm init' }]);
    const join = events.find((e) => e.type === 'task' && e.task === 'kubeadm:join' && e.host === 'w1') as { status: string; drift: { pending: string }[] };
    expect(join.status).to.equal('changed');
    expect(join.drift[0]!.pending).to.equal('kubeadm init (pod network 10.10.0.0/16) on cp1');
    expect(events.filter((e) => e.type === 'task' && e.status === 'failed')).to.deep.equal([]);
    const after = await Promise.all(lab.hosts.map((h) => sshToLab(lab, h, 'find /etc -xdev -type f -exec sha256sum {} + | sort | sha256sum')));
    expect(after.map((r) => r.stdout)).to.deep.equal(before.map((r) => r.stdout));
  });

  it('applies: init, kubeconfig, CNI, workers join with fresh tokens, all nodes Ready, smoke test runs', async () => {
    const result = await capstan([...args, '--json', '-v']);
    expect(result.code, result.stdout.slice(-3000) + result.stderr).to.equal(0);
    const nodes = await sshToLab(lab, 'cp1', 'kubectl get nodes --no-headers');
    expect(nodes.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2).join(' ')).sort()).to.deep.equal(['cp1 Ready', 'w1 Ready', 'w2 Ready']);
    const pods = await sshToLab(lab, 'cp1', 'kubectl get pods -l app=capstan-smoke-nginx --no-headers');
    expect(pods.stdout.trim().split('\n')).to.have.length(3);
    const kubeconfig = await sshToLab(lab, 'cp1', 'stat -c "%a %U" /root/.kube/config && cmp /root/.kube/config /etc/kubernetes/admin.conf && echo same');
    expect(kubeconfig.stdout).to.equal('600 root\nsame\n');
    // Join tokens were deleted after use: at most kubeadm init's own default token is left (two joins happened).
    const tokens = await sshToLab(lab, 'cp1', 'kubeadm token list | tail -n +2 | wc -l');
    expect(Number(tokens.stdout.trim())).to.be.at.most(1);
    // No token or certificate key anywhere in what Capstan printed, even with -v.
    expect(result.stdout + result.stderr).not.to.match(TOKEN);
    expect(result.stdout + result.stderr).not.to.match(CERT_KEY);
  });

  it('a second run reports changed=0', async () => {
    const result = await capstan([...args, '--json']);
    expect(result.code).to.equal(0);
    expectNothingChanged(result.stdout, ['cp1', 'w1', 'w2']); // w3 is left out by --limit
  });

  it('a worker added a day later joins: the 24 h init token expired, a fresh one is minted (seed 001)', async () => {
    // What the seed's user hits: a join command made with a 24 h token, used a day later.
    const initToken = (await sshToLab(lab, 'cp1', 'kubeadm token create --ttl 24h')).stdout.trim();
    await sshToLab(lab, 'cp1', 'mkdir -p /etc/standin && echo 90000 > /etc/standin/clock-offset');
    const hash = caCertHash((await sshToLab(lab, 'cp1', 'cat /etc/kubernetes/pki/ca.crt')).stdout);
    expect(initToken).to.match(TOKEN);
    const stale = await sshToLab(lab, 'w3', `mkdir -p /etc/standin && echo 90000 > /etc/standin/clock-offset; STANDIN_DISCOVERY_TIMEOUT=5s kubeadm join ${lab.hosts[0]!.address}:6443 --ignore-preflight-errors=all --token ${initToken} --discovery-token-ca-cert-hash ${hash}`);
    expect(stale.code, stale.stdout + stale.stderr).to.equal(1);
    expect(stale.stdout + stale.stderr).to.match(/couldn't validate the identity of the API Server/);
    await sshToLab(lab, 'w3', 'kubeadm reset -f >/dev/null 2>&1; true');
    // w3 joins as a sudo user (-K), as on a Pi with its default user: sudo logs each command line it runs.
    const inventory = parse(readFileSync(lab.inventoryPath, 'utf8')) as { all: { hosts: Record<string, Record<string, unknown>> } };
    Object.assign(inventory.all.hosts.w3!, { ansible_user: LAB_USER, ansible_become: true });
    const sudoInventory = join(mkdtempSync(join(tmpdir(), 'capstan-join-')), 'inventory.yaml');
    writeFileSync(sudoInventory, stringify(inventory));
    const since = (await sshToLab(lab, 'w3', 'date +%s')).stdout.trim();
    // Every process's argv on both hosts, sampled every 50 ms for as long as the join runs.
    const watch = ['w3', 'cp1'].map((host) => sshToLab(lab, host, "for i in $(seq 6000); do ps -eo args= 2>/dev/null; [ -e /tmp/stop-ps ] && break; sleep 0.05; done; rm -f /tmp/stop-ps"));
    const result = await capstan(['run', PLAYBOOK, '-i', sudoInventory, '-e', args[5]!, '-K', '--json'], { input: `${LAB_USER_PASSWORD}\n` });
    await Promise.all(['w3', 'cp1'].map((host) => sshToLab(lab, host, 'touch /tmp/stop-ps')));
    const processes = (await Promise.all(watch)).map((r) => r.stdout).join('');
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-3000)).to.equal(0);
    const nodes = await sshToLab(lab, 'cp1', 'kubectl get nodes --no-headers');
    expect(nodes.stdout).to.match(/^w3\s+Ready/m);
    expect(recapOf(result.stdout).w3!.failed).to.equal(0);
    expect(result.stdout).not.to.match(TOKEN);
    // The join really ran while the processes were watched, and through sudo: its command line was seen and logged.
    expect(processes).to.match(/kubeadm join --config \/etc\/kubernetes\/capstan-join\.yaml/);
    const journal = (await sshToLab(lab, 'w3', `journalctl --no-pager -o cat --since @${since}; cat /var/log/auth.log 2>/dev/null; true`)).stdout;
    expect(journal).to.match(/sudo\[\d+\]:|COMMAND=/);
    for (const [where, text] of [['process list', processes], ["w3's journal and auth.log", journal]] as const) {
      expect(text.match(TOKEN), `a bootstrap token in ${where}`).to.equal(null);
      expect(text.match(CERT_KEY), `a certificate key in ${where}`).to.equal(null);
      expect(text, where).not.to.match(/--token|--discovery-token /);
    }
    expect((await sshToLab(lab, 'w3', 'ls /etc/kubernetes')).stdout.split('\n')).not.to.include('capstan-join.yaml');
  });

  it('an init that stopped before its last phases is reported, not taken as done, and the run says how to go on', async () => {
    // What a Ctrl-C or a lost connection during `kubeadm init` leaves: admin.conf and an answering API
    // server, but no cluster-info ConfigMap (phase bootstrap-token), so every join would fail later.
    await sshToLab(lab, 'cp1', 'kubectl -n kube-public delete configmap cluster-info');
    const check = await capstan([...args.slice(0, -2), '--check', '--json']);
    const init = eventsOf(check.stdout).find((e) => e.type === 'task' && e.task === 'kubeadm:init') as { status: string; drift: unknown[] };
    expect(init.status).to.equal('changed');
    expect(init.drift).to.deep.equal([{ subject: 'kubeadm init', current: 'stopped before it finished (missing ConfigMap kube-public/cluster-info)', desired: 'finished' }]);
    const run = await capstan([...args.slice(0, -2)]);
    expect(run.code).to.equal(2);
    expect(run.stdout + run.stderr).to.include('kubeadm init stopped before it finished (missing ConfigMap kube-public/cluster-info): the API server answers, so Capstan will not re-initialise it.');
  });

  describe('reset (playbooks/reset.ts) on this cluster, then a new cluster on the same hosts', () => {
    const HOSTS = ['cp1', 'w1', 'w2', 'w3'];
    const ACTION = 'kubeadm reset on w1, w2, w3, cp1 of cluster "kubernetes": certificates, etcd data, kubelet state and the pod network\'s rules are deleted';
    const KEEP_RULE = '-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment capstan-keep -j ACCEPT';
    const reset = () => ['run', 'playbooks/reset.ts', '-i', lab.inventoryPath];
    let oldCa = '';
    /** What kubeadm, the CNI and kube-proxy left on a host: files under /etc/kubernetes, CNI state, Kubernetes chains, CNI links. */
    const leftovers = async (host: string) =>
      (await sshToLab(lab, host, "find /etc/kubernetes /var/lib/kubelet /etc/cni/net.d /var/lib/cni -type f 2>/dev/null | sort; iptables-save | grep -E '^:(KUBE-|FLANNEL-|CNI-)' | cut -d' ' -f1 | sort; ip -o link show | grep -oE '^[0-9]+: (cni0|flannel\\.1)' ; true")).stdout;

    it('refuses without a terminal or -e confirm, and with another name, before contacting any host', async () => {
      const unconfirmed = await capstan(reset());
      expect([unconfirmed.code, unconfirmed.stdout, unconfirmed.stderr]).to.deep.equal([1, '', `capstan: ${ACTION}: this needs a confirmation and there is no terminal to ask on; pass -e confirm=kubernetes (nothing was changed)\n`]);
      const wrong = await capstan([...reset(), '-e', 'confirm=production']);
      expect([wrong.code, wrong.stdout, wrong.stderr]).to.deep.equal([1, '', `capstan: -e confirm=production does not match "kubernetes", so nothing was changed: ${ACTION}\n`]);
      expect((await sshToLab(lab, 'cp1', 'test -f /etc/kubernetes/admin.conf && echo there')).stdout).to.equal('there\n');
      oldCa = (await sshToLab(lab, 'cp1', 'cat /etc/kubernetes/pki/ca.crt')).stdout;
    });

    it('--check asks nothing, lists what each host would lose, and changes nothing', async () => {
      const fingerprint = 'find /etc /var/lib/kubelet /var/lib/cni -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum; iptables-save | grep -v "^#" | sha256sum';
      const before = await Promise.all(HOSTS.map((h) => sshToLab(lab, h, fingerprint)));
      const check = await capstan([...reset(), '--check', '--json']);
      expect(check.code, check.stderr).to.equal(0);
      const tasks = eventsOf(check.stdout).filter((e) => e.type === 'task') as { host: string; task: string; status: string; drift: { subject: string; current: string }[] }[];
      const cp1Reset = tasks.find((t) => t.host === 'cp1' && t.task === 'kubeadm:reset')!;
      expect(cp1Reset.status).to.equal('changed');
      expect(cp1Reset.drift[0]!.subject).to.equal('kubeadm state');
      for (const path of ['/etc/kubernetes/admin.conf', '/etc/kubernetes/manifests', '/etc/kubernetes/pki', '/var/lib/kubelet/config.yaml', '/etc/kubernetes/kubeadm-config.yaml']) expect(cp1Reset.drift[0]!.current.split(', ')).to.include(path);
      expect(tasks.find((t) => t.host === 'cp1' && t.task === 'kubeconfig-copies:removed')!.drift).to.deep.equal([{ subject: 'admin.conf copies', current: '/root/.kube/config', desired: 'none' }]);
      for (const host of HOSTS) {
        const statuses = Object.fromEntries(tasks.filter((t) => t.host === host).map((t) => [t.task, t.status]));
        expect(statuses, host).to.deep.include({ 'kubeadm:reset': 'changed', 'cni-state:removed': 'changed', 'kubernetes-netfilter:removed': 'changed' });
      }
      const after = await Promise.all(HOSTS.map((h) => sshToLab(lab, h, fingerprint)));
      expect(after.map((r) => r.stdout)).to.deep.equal(before.map((r) => r.stdout));
    });

    it('on a terminal: asks for the cluster name, resets workers then the control plane, and keeps the host firewall\'s own rules', async () => {
      await sshToLab(lab, 'w1', `iptables ${KEEP_RULE}`);
      expect(await leftovers('w1')).to.match(/:KUBE-SERVICES/);
      const run = await capstanOnTerminal(reset(), { prompt: 'to go on: ', reply: 'kubernetes' });
      expect(run.code, run.output).to.equal(0);
      expect(run.output.startsWith(`${ACTION}\nType "kubernetes" to go on: kubernetes\n`), run.output).to.equal(true);
      expect(run.output.match(/^PLAY \[[^\]]+\]/gm)).to.deep.equal(['PLAY [kubeconfig copies]', 'PLAY [reset workers]', 'PLAY [reset control plane cp1]']);
      for (const host of HOSTS) expect(await leftovers(host), host).to.equal('');
      expect((await sshToLab(lab, 'w1', 'iptables -S INPUT')).stdout).to.include(`${KEEP_RULE}\n`);
      expect((await sshToLab(lab, 'cp1', 'ls -A /root/.kube; systemctl is-active kubelet; true')).stdout).to.equal('inactive\n');
    });

    it('a second reset changes nothing, and the topology\'s playbook builds a new cluster on the hosts', async () => {
      const again = await capstan([...reset(), '-e', 'confirm=kubernetes', '--json']);
      expect(again.code, again.stderr).to.equal(0);
      expectNothingChanged(again.stdout, HOSTS);
      const rebuilt = await capstan(args);
      expect(rebuilt.code, rebuilt.stdout.slice(-3000) + rebuilt.stderr).to.equal(0);
      expect((await sshToLab(lab, 'cp1', "kubectl get nodes --no-headers | awk '{print $1, $2}'")).stdout).to.equal('cp1 Ready\nw1 Ready\nw2 Ready\n');
      const newHash = caCertHash((await sshToLab(lab, 'cp1', 'cat /etc/kubernetes/pki/ca.crt')).stdout);
      expect(newHash, 'a new cluster has a new CA').not.to.equal(caCertHash(oldCa));
    });
  });
});
