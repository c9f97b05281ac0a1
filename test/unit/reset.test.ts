import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { Confirmation } from '../../runner/confirm.js';
import { InputError } from '../../runner/errors.js';
import { loadInventory } from '../../runner/inventory/index.js';
import resetPlaybook from '../../playbooks/reset.js';
import { kubernetesNetfilter, withoutKubernetesNetfilter } from '../../tasks/reset.js';
import { plays } from '../helpers/plays.js';

const SAVE = readFileSync(new URL('../fixtures/netfilter/kube-proxy-flannel-ufw.save', import.meta.url), 'utf8');

describe('reset: Kubernetes netfilter state in iptables-save output', () => {
  it('finds kube-proxy\'s and Flannel\'s chains and every rule in or jumping to them, per table', () => {
    expect(kubernetesNetfilter(SAVE)).to.deep.equal([
      {
        table: 'filter',
        chains: ['FLANNEL-FWD', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FIREWALL', 'KUBE-FORWARD', 'KUBE-KUBELET-CANARY', 'KUBE-NODEPORTS', 'KUBE-PROXY-CANARY', 'KUBE-PROXY-FIREWALL', 'KUBE-SERVICES'],
        rules: 16,
      },
      {
        table: 'nat',
        chains: ['FLANNEL-POSTRTG', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-SEP-IT2ZTR26TO4XFPTO', 'KUBE-SERVICES', 'KUBE-SVC-NPX46M4PTMTKRN6Y'],
        rules: 15,
      },
      { table: 'mangle', chains: ['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY', 'KUBE-PROXY-CANARY'], rules: 0 },
    ]);
  });

  it('restores the affected tables with the host\'s own chains, policies and rules only; the raw table is not touched', () => {
    expect(withoutKubernetesNetfilter(SAVE)).to.equal(
      [
        '*filter',
        ':INPUT DROP [0:0]',
        ':FORWARD DROP [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':ufw-before-input - [0:0]',
        ':ufw-user-input - [0:0]',
        '-A INPUT -j ufw-before-input',
        '-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment "operator: backup ssh" -j ACCEPT',
        '-A ufw-before-input -i lo -j ACCEPT',
        '-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A ufw-before-input -j ufw-user-input',
        '-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT',
        'COMMIT',
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        ':INPUT ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':POSTROUTING ACCEPT [0:0]',
        '-A POSTROUTING -s 192.168.50.0/24 -o eth1 -m comment --comment "operator: lab NAT" -j MASQUERADE',
        'COMMIT',
        '*mangle',
        ':PREROUTING ACCEPT [0:0]',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':POSTROUTING ACCEPT [0:0]',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it('finds nothing, and restores nothing, once they are gone', () => {
    const clean = withoutKubernetesNetfilter(SAVE);
    expect(kubernetesNetfilter(clean)).to.deep.equal([]);
    expect(withoutKubernetesNetfilter(clean)).to.equal('');
  });

  it('keeps a chain whose name only contains KUBE (the prefix is what marks them)', () => {
    const save = '*filter\n:INPUT ACCEPT [0:0]\n:MY-KUBE-RULES - [0:0]\n-A INPUT -j MY-KUBE-RULES\nCOMMIT\n';
    expect(kubernetesNetfilter(save)).to.deep.equal([]);
  });
});

describe('Confirmation (what destructive playbooks ask)', () => {
  const request = { action: 'kubeadm reset on k8s-01 of cluster "home"', answer: 'home' };

  it('takes -e confirm=<answer> without asking, and refuses another value naming both', async () => {
    let asked = 0;
    const ask = async () => {
      asked += 1;
      return 'home';
    };
    await new Confirmation({ checkMode: false, extraVars: { confirm: 'home' } }, ask).require(request);
    const wrong = await new Confirmation({ checkMode: false, extraVars: { confirm: 'homelab' } }, ask).require(request).catch((e: unknown) => e);
    expect(wrong).to.be.instanceOf(InputError);
    expect((wrong as Error).message).to.equal('-e confirm=homelab does not match "home", so nothing was changed: kubeadm reset on k8s-01 of cluster "home"');
    expect(asked).to.equal(0);
  });

  it('asks once on a terminal however often the playbook body runs, and refuses a wrong answer', async () => {
    const prompts: string[] = [];
    const confirmation = new Confirmation({ checkMode: false, extraVars: {} }, async (prompt) => {
      prompts.push(prompt);
      return 'home\n';
    });
    await confirmation.require(request);
    await confirmation.require(request);
    expect(prompts).to.deep.equal(['kubeadm reset on k8s-01 of cluster "home"\nType "home" to go on: ']);
    const wrong = await new Confirmation({ checkMode: false, extraVars: {} }, async () => 'yes').require(request).catch((e: unknown) => e);
    expect((wrong as Error).message).to.equal('not confirmed ("yes" is not "home"), so nothing was changed');
  });

  it('without a terminal or -e confirm it refuses and says how to confirm; --check needs no confirmation', async () => {
    const refused = await new Confirmation({ checkMode: false, extraVars: {} }).require(request).catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(InputError);
    expect((refused as Error).message).to.equal('kubeadm reset on k8s-01 of cluster "home": this needs a confirmation and there is no terminal to ask on; pass -e confirm=home (nothing was changed)');
    await new Confirmation({ checkMode: true, extraVars: {} }).require(request);
  });
});

describe('playbooks/reset.ts plan', () => {
  it('pi-cluster inventory: confirmation first, then kubeconfig copies, workers, and the control plane', async () => {
    const inventory = await loadInventory('inventory/home.yaml');
    const recorded = await plays(resetPlaybook, inventory, { confirm: 'kubernetes' });
    expect(recorded.map((p) => [p.title, p.pattern, p.tasks])).to.deep.equal([
      ['kubeconfig copies', 'control_plane', ['kubeconfig-copies:removed']],
      ['reset workers', 'workers', ['kubeadm:reset', 'cni-state:removed', 'kubernetes-netfilter:removed', 'cni-interfaces:removed']],
      ['reset control plane pi-01', 'pi-01', ['kubeadm:reset', 'cni-state:removed', 'kubernetes-netfilter:removed', 'cni-interfaces:removed']],
    ]);
  });

  it('stacked HA: control planes one play each, the first one last', async () => {
    const inventory = await loadInventory('inventory/ha.yaml');
    const recorded = await plays(resetPlaybook, inventory, { confirm: 'kubernetes' });
    expect(recorded.map((p) => p.title)).to.deep.equal(['kubeconfig copies', 'reset control plane master3', 'reset control plane master2', 'reset control plane master1']);
  });

  it('refuses without confirmation before any play, and refuses the hard way\'s inventory', async () => {
    const inventory = await loadInventory('inventory/home.yaml');
    const refused = await plays(resetPlaybook, inventory).catch((e: unknown) => e);
    expect((refused as Error).message).to.match(/^kubeadm reset on pi-02, pi-03, pi-01 of cluster "kubernetes": .*; pass -e confirm=kubernetes \(nothing was changed\)$/);
    const hardWay = await loadInventory('inventory/hard-way.yaml');
    const wrongTopology = await plays(resetPlaybook, hardWay, { confirm: 'kubernetes' }).catch((e: unknown) => e);
    expect((wrongTopology as Error).message).to.match(/^reset\.ts resets kubeadm clusters, whose inventories have a control_plane group; .*hard-way\.yaml has none/);
  });
});
