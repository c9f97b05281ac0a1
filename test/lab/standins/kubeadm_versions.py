"""kubeadm's upgrade version rules, pure (no I/O, no third-party imports), for the kubeadm stand-in's
`upgrade plan` and `upgrade apply` (a lab test double; see standin_common.py).

From cmd/kubeadm/app/phases/upgrade/policy.go (EnforceVersionPolicies) and
cmd/kubeadm/app/cmd/phases/upgrade/apply/preflight.go (enforceVersionPolicies), kubeadm 1.34/1.35:
- mandatory: below the minimum control plane version (kubeadm's minor - 1, patch 0); more than one
  minor up from the cluster; more than one minor down; a target minor above kubeadm's own minor;
- skippable with --force: a target patch above kubeadm's own version; a target minor below kubeadm's
  minor ("Kubeadm version … can only be used to upgrade to Kubernetes version …", so a minor
  downgrade needs --force); an unstable target; kubelets more than 3 minors behind the target.
A patch downgrade within kubeadm's own minor passes, as it does with the real kubeadm.
"""
from __future__ import annotations

import re

MAXIMUM_MINOR_UPGRADE_SKEW = 1
MAXIMUM_MINOR_DOWNGRADE_SKEW = 1
MAXIMUM_KUBELET_SKEW = 3

_SEMANTIC = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$')


class VersionError(ValueError):
    pass


def parse(version: str) -> tuple[int, int, int, str]:
    """k8s.io/apimachinery/pkg/util/version.ParseSemantic: (major, minor, patch, pre-release)."""
    match = _SEMANTIC.match(str(version).strip())
    if not match:
        raise VersionError(f'could not parse "{version}" as version')
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4) or ''


def normalize(version: str) -> str:
    """"1.35.0" → "v1.35.0" (kubeadm's NormalizeKubernetesVersion for a semantic version)."""
    parse(version)
    version = str(version).strip()
    return version if version.startswith('v') else 'v' + version


def less_than(a: str, b: str) -> bool:
    """Version.LessThan, release versions only (a pre-release sorts before its release)."""
    pa, pb = parse(a), parse(b)
    if pa[:3] != pb[:3]:
        return pa[:3] < pb[:3]
    return bool(pa[3]) and not pb[3]


def minimum_control_plane_version(kubeadm: str) -> str:
    """constants.MinimumControlPlaneVersion: one minor below kubeadm's, patch 0."""
    major, minor, _, _ = parse(kubeadm)
    return f'v{major}.{minor - 1}.0'


def policy_errors(cluster: str, kubeadm: str, target: str, kubelets: list[str]) -> tuple[list[str], list[str]]:
    """EnforceVersionPolicies: (mandatory, skippable) error texts for upgrading a cluster at `cluster`
    with a kubeadm of `kubeadm` to `target`, with these kubelet versions."""
    mandatory: list[str] = []
    skippable: list[str] = []
    new = parse(target)
    current = parse(cluster)
    own = parse(kubeadm)
    if less_than(target, minimum_control_plane_version(kubeadm)):
        mandatory.append(f'Specified version to upgrade to "{target}" is equal to or lower than the minimum supported version '
                         f'"{cluster}". Please specify a higher version to upgrade to')
    if new[1] > current[1] + MAXIMUM_MINOR_UPGRADE_SKEW:
        error = f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only {MAXIMUM_MINOR_UPGRADE_SKEW} minor version at a time'
        (skippable if new[3] else mandatory).append(error)
    if new[1] < current[1] - MAXIMUM_MINOR_DOWNGRADE_SKEW:
        error = f'Specified version to downgrade to "{target}" is too low; kubeadm can downgrade only {MAXIMUM_MINOR_DOWNGRADE_SKEW} minor version at a time'
        (skippable if new[3] else mandatory).append(error)
    if less_than(kubeadm, target):
        if new[1] > own[1]:
            error = (f'Specified version to upgrade to "{target}" is at least one minor release higher than the kubeadm minor release '
                     f'({new[1]} > {own[1]}). Such an upgrade is not supported')
            (skippable if new[3] else mandatory).append(error)
        else:
            skippable.append(f'Specified version to upgrade to "{target}" is higher than the kubeadm version "{kubeadm}". '
                             'Upgrade kubeadm first using the tool you used to install kubeadm')
    if own[0] > new[0] or own[1] > new[1]:
        skippable.append(f'Kubeadm version {kubeadm} can only be used to upgrade to Kubernetes version {own[0]}.{own[1]}')
    if new[3]:
        skippable.append(f'Specified version to upgrade to "{target}" is an unstable version and such upgrades weren\'t allowed '
                         'via setting the --allow-*-upgrades flags')
    too_old = sorted({k for k in kubelets if new[1] > parse(k)[1] + MAXIMUM_KUBELET_SKEW})
    if too_old:
        skippable.append(f'There are kubelets in this cluster that are too old that have these versions [{" ".join(too_old)}]')
    return mandatory, skippable


def format_errors(errors: list[str]) -> str:
    """formatErrorMsg: one "\\t- <error>\\n" per error."""
    return ''.join(f'\t- {error}\n' for error in errors)


def policy_refusal(mandatory: list[str], skippable: list[str], force: bool) -> str | None:
    """The error `upgrade apply` stops with, or None when it may go on."""
    if mandatory:
        return (f'the version argument is invalid due to these fatal errors:\n\n{format_errors(mandatory)}\n'
                'Please fix the misalignments highlighted above and try upgrading again')
    if skippable and not force:
        return f'the version argument is invalid due to these errors:\n\n{format_errors(skippable)}\nCan be bypassed if you pass the --force flag'
    return None
