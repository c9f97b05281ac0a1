"""kubeadm's client of the stacked etcd members (part of the kubeadm stand-in, a lab test double).

As kubeadm's etcdutil does (cmd/kubeadm/app/util/etcd/etcd.go): it talks to the members with the
apiserver-etcd-client certificate (the etcd CA's client certificate that kubeadm also gives the API
server), at the client URLs of the etcd static Pods, and uses the cluster API: `member add` before a
new control plane's etcd starts (initial cluster from the answer, the new member named after the
node), `member remove` of this node's member on `kubeadm reset`. The requests go to the REAL etcd
(Debian's etcd-server) through its v3 JSON gateway (/v3/cluster/member/*), which carries etcdctl's
calls. Not modelled: learner mode (kubeadm's EtcdLearnerMode adds the member as a learner and
promotes it; the stand-in adds a voting member, as kubeadm did before that gate).
"""
from __future__ import annotations

import time

import standin_common as common

PKI = '/etc/kubernetes/pki'


class EtcdError(Exception):
    pass


def _client(endpoint: str) -> common.Client:
    with open(f'{PKI}/etcd/ca.crt', 'rb') as ca, open(f'{PKI}/apiserver-etcd-client.crt', 'rb') as cert, \
            open(f'{PKI}/apiserver-etcd-client.key', 'rb') as key:
        return common.Client(endpoint, ca.read(), cert.read(), key.read(), timeout=10)


def _call(endpoints: list[str], path: str, body: dict) -> dict:
    """POSTs to the first endpoint that answers; EtcdError naming every failure otherwise."""
    errors = []
    for endpoint in endpoints:
        try:
            return _client(endpoint).request('POST', path, body) or {}
        except common.ApiError as error:  # etcd answered: its error is the answer
            raise EtcdError(f'etcdserver: {error}') from error
        except (OSError, ValueError) as error:
            errors.append(f'{endpoint}: {error}')
    raise EtcdError('context deadline exceeded: ' + '; '.join(errors))


def _with_backoff(operation):
    """kubeadm's etcdBackoff around a cluster call (cmd/kubeadm/app/util/etcd/etcd.go: 18 steps from
    100 ms, factor 1.5, jitter 0.1): etcd refuses a reconfiguration for a while after members
    (re)start ("etcdserver: unhealthy cluster"), and kubeadm waits that out. Retried only when etcd
    answered with an error; an etcd that does not answer fails at once here (kubeadm would retry
    that too, for up to ~200 s: a shortcut of this test double, so a test of a dead member is fast)."""
    import random
    delay = 0.1
    for step in range(18):
        try:
            return operation()
        except EtcdError as error:
            if str(error).startswith('context deadline exceeded') or step == 17:
                raise
            time.sleep(delay * (1 + random.uniform(0, 0.1)))
            delay *= 1.5
    raise AssertionError('unreachable')


def members(endpoints: list[str]) -> list[dict]:
    return _call(endpoints, '/v3/cluster/member/list', {}).get('members') or []


def add_member(endpoints: list[str], name: str, peer_url: str) -> str:
    """`member add` of this node (unless a failed join already added it), and the --initial-cluster
    for its manifest, as kubeadm's AddMember builds it from the answer: the new member under `name`,
    the others under their names (their hex ID when they have none yet)."""
    current = members(endpoints)
    if not any(peer_url in (m.get('peerURLs') or []) for m in current):
        current = _with_backoff(lambda: _call(endpoints, '/v3/cluster/member/add', {'peerURLs': [peer_url]})).get('members') or []
    parts = []
    for member in current:
        urls = member.get('peerURLs') or ['']
        if urls[0] == peer_url:
            parts.append(f'{name}={peer_url}')
        else:
            parts.append(f'{member.get("name") or format(int(member["ID"]), "x")}={urls[0]}')
    return ','.join(parts)


def remove_member(endpoints: list[str], peer_url: str) -> int | None:
    """`member remove` of the member at `peer_url`; None (nothing removed) when it is the only one,
    as kubeadm skips removing the last member (RemoveStackedEtcdMemberFromCluster)."""
    current = members(endpoints)
    ours = [m for m in current if peer_url in (m.get('peerURLs') or [])]
    if not ours:
        raise EtcdError(f'etcd member with peer URL {peer_url} not found')  # kubeadm's ErrNoMemberIDForPeerURL
    if len(current) == 1:
        return None
    member_id = int(ours[0]['ID'])
    def remove() -> None:
        try:
            _call(endpoints, '/v3/cluster/member/remove', {'ID': str(member_id)})
        except EtcdError as error:
            if 'member not found' not in str(error):  # kubeadm: ErrMemberNotFound means it is gone already
                raise
    _with_backoff(remove)
    return member_id


def wait_healthy(endpoint: str, timeout: float) -> bool:
    """Until the member at `endpoint` answers /health true (it has joined and the cluster has a leader)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if (_client(endpoint).request('GET', '/health') or {}).get('health') == 'true':
                return True
        except (OSError, ValueError, common.ApiError):
            pass
        time.sleep(1)
    return False
