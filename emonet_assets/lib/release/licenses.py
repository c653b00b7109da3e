"""Which dataset licenses the outputs of a generation model may be released under.

An explicit table, not a guess: a model license missing from it blocks a release until someone who has read
that license adds it. Keys are lower-case SPDX or Hugging Face license ids.
"""

from __future__ import annotations

# Dataset licenses a release may declare.
RELEASE_LICENSES = ("cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0")

_ANY = frozenset(RELEASE_LICENSES)
_NON_COMMERCIAL = frozenset({"cc-by-nc-4.0", "cc-by-nc-sa-4.0"})

# Model license -> the release licenses its generated images may be published under.
MODEL_LICENSE_PERMITS: dict[str, frozenset[str]] = {
    "mit": _ANY,
    "apache-2.0": _ANY,
    "bsd-3-clause": _ANY,
    "cc0-1.0": _ANY,
    "cc-by-4.0": _ANY,
    "openrail++": _ANY,
    "creativeml-openrail-m": _ANY,
    "sai-nc-community": _NON_COMMERCIAL,
    "flux-1-dev-non-commercial-license": _NON_COMMERCIAL,
    "cc-by-nc-4.0": _NON_COMMERCIAL,
    "cc-by-nc-sa-4.0": frozenset({"cc-by-nc-sa-4.0"}),
}


def normalize(license_id: str) -> str:
    return license_id.strip().lower()


def permits(model_license: str, release_license: str) -> bool:
    """False for a model license the table does not know: unknown terms never pass silently."""
    return normalize(release_license) in MODEL_LICENSE_PERMITS.get(normalize(model_license), frozenset())
