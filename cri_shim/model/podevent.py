# -*- test-case-name: tests.model.test_podevent -*-
"""
What the shim tells a pod about its image pulls: the L{PodEvent} value
(reason, type, a message a person understands) for a pull moved to a
registry, failed over, or refused.  Pure: L{cri_shim.serve.image_service}
makes them, L{cri_shim.sync.events} posts them.

Messages name images, registries and reasons only: never a credential.
"""

import attr

IMAGE_REWRITTEN = "ImageRewritten"
REGISTRY_FAILOVER = "RegistryFailover"
IMAGE_REFUSED = "ImageRefused"
NORMAL = "Normal"
WARNING = "Warning"
#: The longest message posted (the API server takes 1 KiB in an Event's
#: C{note}; kubelet cuts its messages there too).
MAX_MESSAGE = 1024
#: The longest reason given for one registry.
_MAX_REASON = 160


@attr.s(frozen=True, slots=True)
class PodEvent:
    """
    One event for one pod.

    :ivar pod: the L{cri_shim.model.selector.Pod}.
    :ivar reason: L{IMAGE_REWRITTEN}, L{REGISTRY_FAILOVER} or
        L{IMAGE_REFUSED}.
    :ivar type: L{NORMAL} or L{WARNING}.
    """

    pod = attr.ib()
    reason = attr.ib()
    type = attr.ib()
    message = attr.ib()


def pulled(pod, name, decision, failures=()):
    """
    The event for a pull that succeeded.

    :param pod: the L{cri_shim.model.selector.Pod}, or C{None}.
    :param name: the image as kubelet asked for it.
    :param decision: the L{cri_shim.model.rewrite.Decision} pulled by.
    :param failures: C{(registry name, runtime's error)} of the pulls that
        failed before, in this call.
    :return: a L{PodEvent}, or C{None} when there is nothing to tell (no
        pod; the image was neither moved nor failed over).
    """
    if pod is None or not (decision.moved or failures):
        return None
    if decision.moved:
        message = "pulled {} from {} as {}".format(name, decision.registry.name,
                                                   decision.target)
    else:
        message = "pulled {} from its own registry".format(name)
    problems = _problems(decision.passed_over, failures)
    if not problems:
        return PodEvent(pod, IMAGE_REWRITTEN, NORMAL, _cut(message))
    return PodEvent(pod, REGISTRY_FAILOVER, WARNING, _cut("{} ({})".format(message, problems)))


def failed_over(pod, name, failures):
    """
    The event for a pull that failed on every registry that held the image.

    :return: a L{PodEvent}, or C{None} without a pod.
    """
    if pod is None:
        return None
    return PodEvent(pod, REGISTRY_FAILOVER, WARNING, _cut(
        "could not pull {} ({}); no other configured registry has it".format(
            name, _problems((), failures))))


def refused(pod, name, tried):
    """
    The event for a pull refused under C{allowUpstream: false}.

    :param tried: the names of the registries asked.
    :return: a L{PodEvent}, or C{None} without a pod.
    """
    if pod is None:
        return None
    return PodEvent(pod, IMAGE_REFUSED, WARNING, _cut(
        "refused {}: no configured registry serving this pod has it (asked: {}) and "
        "allowUpstream is false".format(name, ", ".join(tried) or "none")))


def _problems(passed_over, failures):
    """
    :return: C{"A unreachable: connection refused; B pull failed: ..."}.
    """
    parts = ["{} {}".format(registry, _short(reason)) for registry, reason in passed_over]
    parts += ["{} pull failed: {}".format(registry, _short(_last_clause(details)))
              for registry, details in failures]
    return "; ".join(parts)


def _last_clause(details):
    """
    Runtimes wrap errors Go-style (C{failed to pull ...: failed to resolve
    ...: dial tcp ...: connect: connection refused}): the innermost clause
    says what went wrong.
    """
    return details.rstrip().rsplit(": ", 1)[-1] or details


def _short(text):
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."


def _cut(message):
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "..."
