# -*- test-case-name: tests.model.test_rewrite,tests.model.test_rewrite_edges -*-
"""
The rewrite decision, pure: which registries may hold an image, what the
image is called there, and which credentials a pull may carry.

No Twisted, no protobuf: L{cri_shim.registries.resolver} asks the candidates named here,
and L{cri_shim.serve.image_service} applies the result to CRI messages.
"""

import attr

from cri_shim.model import reference, selector

#: Decision sources, as logged.
CONFIGURED = "configured"       # the image already names a configured registry
PROBE = "probe"                 # a registry answered that it holds the image
NOBODY = "nobody"               # no candidate holds it: not rewritten
NO_REGISTRIES = "no-registries"  # nothing configured could hold it


@attr.s(frozen=True, slots=True)
class Candidate:
    """
    A registry that may hold an image, and the image's name there.
    """

    registry = attr.ib()
    target = attr.ib()


@attr.s(frozen=True, slots=True)
class Decision:
    """
    The outcome of a rewrite lookup.

    :ivar original: the L{cri_shim.model.reference.Reference} kubelet asked for.
    :ivar target: the rewritten reference, or C{None} when not moved.
    :ivar registry: the configured registry whose credentials apply, or
        C{None}.
    :ivar source: one of the module's decision sources.
    :ivar tried: names of the registries asked, in order.
    :ivar passed_over: C{(name, reason)} of the registries ranked above
        C{registry} that could not serve the image (unreachable, found down).
    """

    original = attr.ib()
    target = attr.ib()
    registry = attr.ib()
    source = attr.ib()
    tried = attr.ib(default=())
    passed_over = attr.ib(default=())

    @property
    def moved(self):
        """
        Whether the image is pulled from another name than it was asked by.
        """
        return self.target is not None


def admits(registry, pod):
    """
    :param pod: the L{cri_shim.model.selector.Pod} a pull is for, or C{None}.
    :return: whether C{registry} serves pulls for C{pod} (its C{namespaces}
        and C{podSelector}; a pull for no pod only unrestricted registries).
    """
    return selector.admits(registry.namespaces, registry.pod_selector, pod)


def candidates(config, ref, exclude=(), down=frozenset(), pod=None):
    """
    :param config: a L{cri_shim.model.config.Config}.
    :param ref: a parsed L{cri_shim.model.reference.Reference}.
    :param exclude: registry names to leave out (they already failed).
    :param down: names of registries found down: they come last.
    :param pod: the L{cri_shim.model.selector.Pod} the pull is for, or
        C{None}: registries restricted to other workloads are left out.
    :return: the L{Candidate}s in failover order: registries not known to be
        down by priority, then the down ones by priority.
    """
    found = []
    for registry in config.registries:
        if registry.name in exclude or not registry.serves(ref) or not admits(registry, pod):
            continue
        try:
            target = ref.moved(registry.address.host, registry.address.prefix)
        except reference.InvalidReference:
            # The path under the registry's prefix would be longer than a
            # repository name may be: no such image can be there.
            continue
        found.append(Candidate(registry, target))
    return tuple(sorted(found, key=lambda candidate: candidate.registry.name in down))


def decide_without_lookup(config, ref, pod=None):
    """
    The decisions that need no registry to be asked.  An image that names a
    configured registry restricted to other workloads stays as it is, with
    kubelet's credentials, never that registry's.

    :return: a L{Decision}, or C{None} when the registries must be asked.
    """
    registry = config.registry_for(ref)
    if registry is not None:
        return Decision(ref, None, registry if admits(registry, pod) else None, CONFIGURED)
    if not candidates(config, ref, pod=pod):
        return Decision(ref, None, None, NO_REGISTRIES)
    return None


def scope(config, ref, pod):
    """
    What of C{pod} the rules look at for C{ref}: the restricted registries
    that serve both.  Two pulls of an image with the same scope have the
    same candidates, so they may share a decision and a recorded name; two
    with different scopes never do.  An image no restricted registry serves
    has the unrestricted scope, C{()}, for every pod.

    :return: a tuple of registry names.
    """
    return tuple(sorted(registry.name for registry in config.registries
                        if registry.restricted and registry.serves(ref) and
                        admits(registry, pod)))


def cache_key(ref, scope=()):
    """
    :param scope: from L{scope}.
    :return: the cache key of an image for a scope: its normalised name, so
        that C{nginx} and C{docker.io/library/nginx:latest} share an entry,
        and the scope's registries, if any.
    """
    name = str(ref.with_default_tag())
    return name if not scope else "{} for {}".format(name, ",".join(scope))


def contested(config, ref):
    """
    Whether the image a name resolves to may depend on the pod it is for: a
    registry restricted to some workloads (C{namespaces}, C{podSelector})
    may serve it, or the name is on such a registry.  Calls that carry no
    pod (ImageStatus, RemoveImage) cannot answer for such a name.  A name
    pinned by digest never is: the digest is the content, whoever pulled it.

    :return: a boolean.
    """
    if ref.digest is not None:
        return False
    named = config.registry_for(ref)
    if named is not None:
        return named.restricted
    return any(registry.restricted and registry.serves(ref) for registry in config.registries)


def trusted(config, stored, pod=None):
    """
    Whether a name recorded for a pull may answer a lookup for C{pod}: the
    registry it is on, if configured, must serve C{pod} (a config change may
    have restricted it since).

    :param stored: a L{cri_shim.model.reference.Reference}.
    :param pod: the L{cri_shim.model.selector.Pod}, or C{None} for a lookup
        that serves any pod.
    """
    registry = config.registry_for(stored)
    return registry is None or admits(registry, pod)


def local_names(config, ref, cached=None, stored=None, pod=None):
    """
    The names under which the runtime may already hold an image for C{pod},
    in the order ImageStatus, RemoveImage and CreateContainer look them up:
    the name it was stored under when pulled through the shim for this
    scope, then the cached rewrite for this scope (a warm lookup costs one
    runtime call); then, unless the name is L{contested}, the name as asked
    and the name on each candidate registry (so an image pulled earlier
    through the shim is found even when every registry is unreachable).  For
    a contested name only what was resolved for the pod's own scope
    answers (an image found under another candidate's name may have been
    resolved for another tenant's rules), and nothing at all for a lookup
    without a pod: it may be asked for any pod.

    :param cached: the cached L{Decision} for C{ref} in this scope, if any.
    :param stored: the name (a string) the names store has for C{ref} in
        this scope, if any.
    :param pod: the L{cri_shim.model.selector.Pod} the lookup is for, or
        C{None}.
    :return: an iterator of image names without duplicates, computed as
        they are asked for (a warm lookup needs only the first).
    """
    disputed = contested(config, ref)
    if disputed and pod is None:
        return
    seen = set()
    if stored is not None and trusted(config, reference.parse(stored), pod):
        seen.add(stored)
        yield stored
    if cached is not None and cached.target is not None and str(cached.target) not in seen:
        seen.add(str(cached.target))
        yield str(cached.target)
    if disputed:
        return
    if str(ref) not in seen:
        seen.add(str(ref))
        yield str(ref)
    if config.registry_for(ref) is None:
        for candidate in candidates(config, ref, pod=pod):
            name = str(candidate.target)
            if name not in seen:
                seen.add(name)
                yield name


# What a pull sends as credentials.
KEEP = "keep"        # what kubelet sent (possibly nothing)
REPLACE = "replace"  # the decision's registry's credentials, or none at all


def pull_credentials(decision, kubelet_sent_auth):
    """
    Choose a pull's credentials.  Kubelet's credentials belong to the
    registry the image names; they must never reach another one.

    :return: L{KEEP} or L{REPLACE}.
    """
    if decision.moved:
        return REPLACE
    if decision.registry is not None and not kubelet_sent_auth:
        return REPLACE
    return KEEP
