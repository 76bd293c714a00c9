# -*- test-case-name: tests.model.test_reference,tests.model.test_reference_edges -*-
"""
Container image references: parsing, normalising and moving them to another
registry.

The shim sees image names in the form users write them (``nginx``,
``registry.k8s.io/pause:3.9``, ``quay.io/a/b@sha256:...``) and has to decide
which registry they live on before it can point them at a private mirror.
Getting that wrong silently pulls the wrong image, so :func:`parse` accepts
and normalises exactly what the container runtimes accept: the rules are
those of ``ParseNormalizedNamed`` in github.com/distribution/reference (which
containerd and the kubelet use), with digests validated as
github.com/opencontainers/go-digest validates them.

The registry addresses of the shim's configuration, whose hosts end up
inside rewritten image names, are parsed by L{cri_shim.model.address} (its
public names are this module's too).

The grammar both follow (what a domain, path, tag or digest may be) is in
L{cri_shim.model.grammar}.  Nothing here does I/O; everything is a pure
function of its arguments.
"""

import attr

from cri_shim.model.address import (  # the public names are this module's too
    InvalidRegistryAddress, RegistryAddress, normalize_domain, parse_registry_address)
from cri_shim.model.grammar import (  # the public names are this module's too
    DEFAULT_DOMAIN, DEFAULT_TAG, DOCKER_HUB_ENDPOINT, MAX_PATH_LENGTH)
from cri_shim.model.grammar import (
    DOMAIN as _DOMAIN, IDENTIFIER as _IDENTIFIER,
    IMAGE_ID as _IMAGE_ID, OFFICIAL_PREFIX as _OFFICIAL_PREFIX,
    canonical_domain as _canonical_domain, digest_problem as _digest_problem,
    looks_like_domain as _looks_like_domain, path_problem as _path_problem, show as _show,
    tag_problem as _tag_problem)


class InvalidReference(ValueError):
    """
    A string is not a valid image reference, or a reference cannot be moved
    where it was asked to go.  The message quotes the reference and names
    the precise problem.
    """


def _invalid(text, problem):
    return InvalidReference(f"invalid reference {_show(text)}: {problem}")


@attr.s(frozen=True, slots=True)
class Reference:
    """
    A normalised, fully qualified image reference.

    Get these from :func:`parse` or :meth:`Reference.moved`, which guarantee
    ``parse(str(r)) == r``; the constructor itself validates nothing.

    :ivar domain: The registry, e.g. ``"docker.io"``, ``"127.0.0.1:5000"``,
        ``"[::1]:5000"`` or ``"localhost"``.
    :ivar path: The repository within the registry, e.g. ``"library/nginx"``.
    :ivar tag: The tag, or ``None``.
    :ivar digest: The manifest digest (``"sha256:<hex>"``), or ``None``.
    """

    domain = attr.ib()
    path = attr.ib()
    tag = attr.ib(default=None)
    digest = attr.ib(default=None)

    @property
    def name(self):
        """
        The repository name, ``"domain/path"``, without tag or digest.
        """
        return self.domain + "/" + self.path

    def __str__(self):
        text = self.name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text

    def with_default_tag(self):
        """
        Name the tag a runtime pulls when none is given.

        :return: This reference with tag ``"latest"`` if it has neither tag
            nor digest; otherwise this reference unchanged (a digest is never
            dropped, and a digest-only reference stays digest-only).
        """
        if self.tag is None and self.digest is None:
            return attr.evolve(self, tag=DEFAULT_TAG)
        return self

    @property
    def manifest_reference(self):
        """
        What to ask the registry's manifest endpoint for: the digest when
        there is one (it pins the content, a tag does not), else the tag,
        else ``"latest"``.
        """
        return self.digest or self.tag or DEFAULT_TAG

    def moved(self, domain, prefix=""):
        """
        Name the same image on another registry.

        The result keeps the path (under ``prefix``, if given), the tag and
        the digest, and replaces the domain.  It is normalised as
        :func:`parse` normalises its string form, so
        ``parse(str(r.moved(d, p))) == r.moved(d, p)``: a move to
        ``"index.docker.io"`` lands on ``"docker.io"``, and a single-component
        path moved to Docker Hub gets the ``library/`` namespace.

        Moving is idempotent: a reference already on ``domain`` (compared
        case-insensitively, as host names are) is returned unchanged, whether
        or not its path starts with ``prefix``, because it already names the
        target registry.  So ``r.moved(d, p).moved(d, p) == r.moved(d, p)``,
        and rewriting a name that was rewritten before never stacks prefixes.

        :param domain: The target registry as it appears in image names, e.g.
            ``"sealos.hub:5000"``.  It must be one :func:`parse` recognises as
            a domain: containing ``.`` or ``:``, or ``localhost``.
        :param prefix: A repository path to put in front of this reference's
            path, e.g. ``"proxy"`` or ``"mirrors/hub"``; ``""`` for none.
        :return: The moved :class:`Reference`.
        :raises InvalidReference: If ``domain`` or ``prefix`` is invalid, or
            the moved path is longer than :data:`MAX_PATH_LENGTH`.
        """
        if not (_DOMAIN.fullmatch(domain) and _looks_like_domain(domain)):
            raise _invalid(
                str(self), f"cannot move to {_show(domain)}: not a domain"
            )
        if prefix:
            problem = _path_problem(prefix)
            if problem is not None:
                raise _invalid(
                    str(self),
                    f"cannot move under prefix {_show(prefix)}: {problem}",
                )
        domain = _canonical_domain(domain)
        if domain.lower() == self.domain.lower():
            return self
        path = prefix + "/" + self.path if prefix else self.path
        return parse(str(attr.evolve(self, domain=domain, path=path)))


def _split_domain(text):
    """
    Split a reference into its domain and the rest, as distribution's
    normaliser does: the first component is the domain only if it looks like
    one, and a reference of a single component is on Docker Hub.

    A first component that looks like a domain but is not a valid one (as in
    ``a_b.c/x``) is still returned as the domain, for :func:`parse` to reject.
    distribution instead accepts such a reference with an empty domain, which
    :class:`Reference` cannot represent and no registry could serve.
    """
    first, slash, rest = text.partition("/")
    if slash and _looks_like_domain(first):
        return _canonical_domain(first), rest
    return DEFAULT_DOMAIN, text


def parse(text):
    """
    Parse and normalise an image reference as the container runtimes do.

    ``nginx`` becomes ``docker.io/library/nginx``, ``index.docker.io/x/y``
    becomes ``docker.io/x/y``, and a reference with both a tag and a digest
    keeps both.  No tag is added (see :meth:`Reference.with_default_tag`).

    A bare 64-character lowercase hex string is rejected as ambiguous with an
    image ID.  ``sha256:<hex>``, on the other hand, is a valid reference (to
    the tag ``<hex>`` of ``docker.io/library/sha256``), so callers that may
    be given image IDs must check :func:`is_image_id` first.

    :param text: The reference, e.g. ``"nginx:1.25"``.
    :return: The normalised :class:`Reference`.
    :raises InvalidReference: If ``text`` is not a valid reference.
    """
    if not text:
        raise _invalid(text, "empty reference")
    if _IDENTIFIER.fullmatch(text):
        raise _invalid(
            text,
            "cannot specify 64-byte hexadecimal strings "
            "(they are ambiguous with image IDs)",
        )
    if "://" in text:
        raise _invalid(text, "an image reference has no URL scheme")

    domain, rest = _split_domain(text)
    rest, at, digest = rest.partition("@")
    path, colon, tag = rest.partition(":")
    if not _DOMAIN.fullmatch(domain):
        raise _invalid(text, f"invalid domain {_show(domain)}")
    problem = _path_problem(path)
    if problem is None and colon:
        problem = _tag_problem(tag)
    if problem is None and at:
        problem = _digest_problem(digest)
    if problem is not None:
        raise _invalid(text, problem)

    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if len(path) > MAX_PATH_LENGTH:
        raise _invalid(
            text,
            f"repository name longer than {MAX_PATH_LENGTH} characters "
            f"({len(path)})",
        )
    return Reference(
        domain=domain,
        path=path,
        tag=tag if colon else None,
        digest=digest if at else None,
    )


def is_image_id(text):
    """
    Tell whether ``text`` is an image ID rather than an image name.

    The kubelet passes image IDs to ``ImageStatus`` and ``RemoveImage``;
    they identify local content and must never be rewritten.

    :param text: What the kubelet sent as the image.
    :return: ``True`` for ``"sha256:<64 lowercase hex>"`` and for a bare
        64-character lowercase hex string, ``False`` otherwise.
    """
    return _IMAGE_ID.fullmatch(text) is not None


