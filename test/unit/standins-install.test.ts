import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ETCD_IMAGE_PACKAGES, STANDIN_APT_PACKAGES, installScript } from '../lab/install.js';

describe('Kubernetes stand-ins installer script', function () {
  it('installs the packages, files and units the way the real packages lay them out', function () {
    const script = installScript();
    expect(script.startsWith('set -eu\n')).to.equal(true);
    expect(STANDIN_APT_PACKAGES).to.deep.equal(['python3-yaml', 'python3-cryptography', 'iptables', 'ethtool', 'socat', 'ebtables', 'conntrack']);
    expect(ETCD_IMAGE_PACKAGES).to.deep.equal(['etcd-server', 'etcd-client']);
    expect(script).to.include(`timeout 600 apt-get install -y -qq --no-install-recommends ${STANDIN_APT_PACKAGES.join(' ')} etcd-server etcd-client >>/tmp/standin-apt.log 2>&1 || `);
    // Debian's own etcd.service (a default member on 127.0.0.1:2379) never starts: masked around the install, then disabled.
    const lines = script.split('\n');
    const mask = lines.indexOf('systemctl mask --runtime etcd.service >/dev/null 2>&1 || true');
    const install = lines.findIndex((line) => line.includes('apt-get install'));
    const unmask = lines.indexOf('systemctl unmask --runtime etcd.service >/dev/null 2>&1; systemctl disable etcd.service >/dev/null 2>&1 || true');
    expect(mask).to.be.greaterThan(-1);
    expect([mask < install, install < unmask]).to.deep.equal([true, true]);
    for (const target of ['/usr/bin/kubeadm', '/usr/bin/kubelet', '/usr/bin/kubectl', '/usr/lib/systemd/system/kubelet.service',
      '/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf']) {
      expect(script).to.include(`mv ${target}.standin-new ${target}\n`);
    }
    expect(script).to.include('systemctl enable kubelet.service');
  });

  it('retries a failed or hung apt-get update (cut off at 90 s) up to three times, then fails with its log', function () {
    const bin = mkdtempSync(join(tmpdir(), 'standin-bin-'));
    try {
      const update = installScript().split('\n').find((line) => line.includes('apt-get update'))!;
      expect(update.startsWith('for attempt in 1 2 3; do timeout 90 apt-get update -qq >>/tmp/standin-apt.log 2>&1 && break; ')).to.equal(true);
      // A `timeout` that records its arguments and fails until the given attempt; `sleep` that does not wait.
      writeFileSync(join(bin, 'timeout'), `#!/bin/sh\necho "$*" >> ${bin}/calls\nn=$(wc -l < ${bin}/calls)\necho "update $n failed" >&2\n[ "$n" -ge "$SUCCEED_AT" ]\n`, { mode: 0o755 });
      writeFileSync(join(bin, 'sleep'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      const attempt = (succeedAt: number) => {
        rmSync(join(bin, 'calls'), { force: true });
        const result = spawnSync('sh', ['-c', `${update.replaceAll('/tmp/standin-apt.log', join(bin, 'log'))}\necho done`], { env: { PATH: `${bin}:/usr/bin:/bin`, SUCCEED_AT: String(succeedAt) }, encoding: 'utf8' });
        return [result.status, result.stdout, readFileSync(join(bin, 'calls'), 'utf8').split('\n').filter(Boolean).length];
      };
      expect(attempt(3)).to.deep.equal([0, 'done\n', 3]);
      expect(attempt(4)).to.deep.equal([1, '', 3]);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('writes byte-exact copies of the stand-in files (decoded with sh and base64 into a scratch root)', function () {
    const root = mkdtempSync(join(tmpdir(), 'standin-root-'));
    try {
      // Re-root every absolute path and drop the apt and systemctl lines, then run the rest with dash.
      const body = installScript()
        .split('\n')
        .filter((line) => !/apt-get|systemctl/.test(line))
        .join('\n')
        .replace(/(^|[ >])\/(usr|etc|var|opt)\//gm, `$1${root}/$2/`);
      for (const dir of ['usr/bin', 'etc/default']) mkdirSync(join(root, dir), { recursive: true });
      execFileSync('sh', ['-s'], { input: body });
      const unit = readFileSync(join(root, 'usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf'), 'utf8');
      expect(unit).to.equal(readFileSync(new URL('../lab/standins/systemd/10-kubeadm.conf', import.meta.url), 'utf8'));
      expect(readFileSync(join(root, 'usr/bin/kubeadm'))).to.deep.equal(readFileSync(new URL('../lab/standins/kubeadm.py', import.meta.url)));
      expect(statSync(join(root, 'usr/bin/kubeadm')).mode & 0o777).to.equal(0o755);
      expect(readFileSync(join(root, 'etc/default/kubelet'), 'utf8')).to.equal('KUBELET_EXTRA_ARGS=\n');
      // kubernetes-cni's plugins, which the kubelet package depends on: the stand-in plugin under each name.
      expect(readFileSync(join(root, 'opt/cni/bin/portmap'))).to.deep.equal(readFileSync(new URL('../lab/standins/cni-plugin.sh', import.meta.url)));
      expect(statSync(join(root, 'opt/cni/bin/bridge')).mode & 0o777).to.equal(0o755);
      expect(readFileSync(join(root, 'usr/lib/capstan-standin/etcd-pod'))).to.deep.equal(readFileSync(new URL('../lab/standins/etcd_pod.py', import.meta.url)));
      expect(readFileSync(join(root, 'usr/lib/systemd/system/etcd-pod.service'), 'utf8')).to.include('ExecStart=/usr/lib/capstan-standin/etcd-pod --manifest /etc/kubernetes/manifests/etcd.yaml\n');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
