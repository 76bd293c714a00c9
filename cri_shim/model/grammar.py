# -*- test-case-name: tests.model.test_reference,tests.model.test_reference_edges -*-
"""
The grammar of image references, as github.com/distribution/reference
writes it (and containerd and the kubelet follow): what a registry domain, a
repository path, a tag and a digest may be, Docker Hub's names, and how
error messages quote what they refuse.  Pure checks, no I/O.
"""

import re

DEFAULT_DOMAIN = "docker.io"
"""The domain of images named without one (``nginx`` is on Docker Hub)."""

DEFAULT_TAG = "latest"
"""The tag pulled when a reference names neither tag nor digest."""

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
"""The host that serves the registry API for :data:`DEFAULT_DOMAIN`."""

MAX_PATH_LENGTH = 255
"""
The longest repository path accepted.  Since distribution/reference v0.6.0
only the path counts, not the domain in front of it.
"""

_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
_LOCALHOST = "localhost"
DOCKER_HUB_ALIASES = frozenset(
    [DEFAULT_DOMAIN, _LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_ENDPOINT]
)
_MAX_TAG_LENGTH = 128
_MAX_SHOWN = 300

# Character classes are spelled out in ASCII: Python's \w and \d also match
# non-ASCII characters, Go's do not.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])"
    r"(?::([0-9]+))?"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
)
IDENTIFIER = re.compile(r"[a-f0-9]{64}")
IMAGE_ID = re.compile(r"(?:sha256:)?[a-f0-9]{64}")
_LOWER_HEX = re.compile(r"[a-f0-9]+")

# The algorithms go-digest registers, with the length of their (lowercase
# hex) encoding.  Any other algorithm is unsupported.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def show(text):
    """
    Quote ``text`` for an error message, cutting huge inputs short.
    """
    if len(text) > _MAX_SHOWN:
        return repr(text[:_MAX_SHOWN]) + "..."
    return repr(text)


def looks_like_domain(component):
    """
    Decide, as distribution does, whether the first component of a name is a
    registry domain rather than the first path component of a Docker Hub
    repository: it is if it contains ``.`` or ``:``, is ``localhost``, or
    has uppercase letters (which paths cannot have).
    """
    return (
        component == _LOCALHOST
        or "." in component
        or ":" in component
        or component.lower() != component
    )


def canonical_domain(domain):
    if domain == _LEGACY_DEFAULT_DOMAIN:
        return DEFAULT_DOMAIN
    return domain


def path_problem(path):
    """
    Say what is wrong with a repository path, or return ``None`` if nothing
    is.
    """
    if not path:
        return "missing repository name"
    if path.lower() != path:
        return "repository name must be lowercase"
    for component in path.split("/"):
        if not component:
            return f"empty path component in {show(path)}"
        if not _PATH_COMPONENT.fullmatch(component):
            return f"invalid path component {show(component)}"
    return None


def tag_problem(tag):
    if not tag:
        return "empty tag"
    if len(tag) > _MAX_TAG_LENGTH:
        return f"tag longer than {_MAX_TAG_LENGTH} characters"
    if not _TAG.fullmatch(tag):
        return f"invalid tag {show(tag)}"
    return None


def digest_problem(digest):
    if not _DIGEST.fullmatch(digest):
        return f"invalid digest {show(digest)}"
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        return (
            f"invalid digest {show(digest)}: "
            f"unsupported algorithm {show(algorithm)}"
        )
    if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
        return (
            f"invalid digest {show(digest)}: "
            f"{algorithm} needs {length} lowercase hex characters"
        )
    return None
