#!/usr/bin/python3
"""The etcd static Pod's container (lab test double for the registry.k8s.io/etcd image; see test/lab/README.md).

`etcd-pod --manifest /etc/kubernetes/manifests/etcd.yaml` runs the REAL etcd (Debian's etcd-server,
/usr/bin/etcd) with the manifest's command line, as the container runtime runs the image's `etcd`:
the kubelet stand-in starts it (etcd-pod.service) while the manifest exists and restarts it when the
manifest changes. kubeadm 1.34 writes flags for etcd 3.6; the lab's etcd is bookworm's 3.4, so the
few flags 3.4 names differently are translated (TRANSLATED) and nothing else is touched: an unknown
flag still makes etcd exit, as a bad manifest would crash-loop the real static Pod.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, '/usr/lib/capstan-standin')
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import standin_common as common  # noqa: E402

ETCD_BINARY = '/usr/bin/etcd'
# kubeadm 1.34's etcd 3.6 flag -> its etcd 3.4 name (etcd's v3.5→v3.6 upgrade notes list the renames).
TRANSLATED = {
    '--feature-gates=InitialCorruptCheck=true': '--experimental-initial-corrupt-check=true',
}


def etcd_argv(command: list[str]) -> list[str]:
    """The etcd command line for a manifest's container command (pure): argv[0] is the binary."""
    if not command or os.path.basename(command[0]) != 'etcd':
        raise ValueError(f'the etcd manifest\'s command must start with etcd, not {command[:1]}')
    return [ETCD_BINARY] + [TRANSLATED.get(arg, arg) for arg in command[1:]]


def main() -> None:
    manifest = sys.argv[sys.argv.index('--manifest') + 1]
    with open(manifest) as handle:
        pod = common.yaml.safe_load(handle)
    argv = etcd_argv(pod['spec']['containers'][0].get('command') or [])
    os.execv(argv[0], argv)


if __name__ == '__main__':
    main()
