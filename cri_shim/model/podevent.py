# -*- test-case-name: tests.model.test_podevent -*-
"""
What the shim tells a pod about its image pulls: the L{PodEvent} value
(reason, type, a message a person understands) for a pull moved to a
registry, failed over, or refused; whether a pod's names can carry an
Event at all, and the Event's name.  Pure: L{cri_shim.serve.image_service}
makes them, L{cri_shim.sync.events} posts them.

Messages name images, registries and reasons only: never a credential.  A
runtime's error is kept whole in the event, so that configured passwords
are scrubbed from the full text before anything is shortened
(L{PodEvent.render}): a cut never leaves a password's prefix.  An error
longer than L{MAX_TEXT} is not kept at all (no cut, nothing to leak).
"""

import re

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
#: The longest reason or runtime's error an event keeps (events wait in a
#: queue); a longer one is replaced whole, never cut.
MAX_TEXT = 16 * 1024
#: The longest object name the API server takes (a DNS-1123 subdomain).
MAX_NAME = 253
#: Kubernetes' name rules: a namespace is a DNS-1123 label, a pod (and an
#: Event) a DNS-1123 subdomain.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def _unchanged(text):
    return text


def _kept(problems):
    """
    :return: the C{(registry, text)} pairs, each text longer than
        L{MAX_TEXT} replaced whole.
    """
    return tuple((registry, text if len(text) <= MAX_TEXT else
                  "(an error of {} characters, not shown)".format(len(text)))
                 for registry, text in problems)


@attr.s(frozen=True, slots=True)
class PodEvent:
    """
    One event for one pod.  Its message is C{text}, then the problems (if
    any) in brackets, then C{tail}; see L{render}.

    :ivar pod: the L{cri_shim.model.selector.Pod}.
    :ivar reason: L{IMAGE_REWRITTEN}, L{REGISTRY_FAILOVER} or
        L{IMAGE_REFUSED}.
    :ivar type: L{NORMAL} or L{WARNING}.
    :ivar text: what happened.
    :ivar passed_over: C{(registry name, why)} of the registries the lookup
        passed over.
    :ivar failures: C{(registry name, runtime's error)} of the pulls that
        failed, the error whole (up to L{MAX_TEXT}).
    :ivar tail: what follows the problems.
    """

    pod = attr.ib()
    reason = attr.ib()
    type = attr.ib()
    text = attr.ib()
    passed_over = attr.ib(default=(), converter=_kept)
    failures = attr.ib(default=(), converter=_kept)
    tail = attr.ib(default="")

    def render(self, scrub=_unchanged):
        """
        :param scrub: takes a text and returns it without the configured
            passwords; applied to every text from outside in full, before
            any of it is shortened or cut.
        :return: the message, at most L{MAX_MESSAGE} characters, each
            registry's reason at most L{_MAX_REASON}.
        """
        problems = _problems(self.passed_over, self.failures, scrub)
        problems = " ({})".format(problems) if problems else ""
        return _cut(scrub(self.text) + problems + scrub(self.tail))

    @property
    def message(self):
        """
        The message, as L{render} makes it without a scrub.
        """
        return self.render()


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
    if not (decision.passed_over or failures):
        return PodEvent(pod, IMAGE_REWRITTEN, NORMAL, message)
    return PodEvent(pod, REGISTRY_FAILOVER, WARNING, message, decision.passed_over, failures)


def failed_over(pod, name, failures):
    """
    The event for a pull that failed on every registry that held the image.

    :return: a L{PodEvent}, or C{None} without a pod.
    """
    if pod is None:
        return None
    return PodEvent(pod, REGISTRY_FAILOVER, WARNING, "could not pull {}".format(name),
                    (), failures, "; no other configured registry has it")


def refused(pod, name, tried):
    """
    The event for a pull refused under C{allowUpstream: false}.

    :param tried: the names of the registries asked.
    :return: a L{PodEvent}, or C{None} without a pod.
    """
    if pod is None:
        return None
    return PodEvent(pod, IMAGE_REFUSED, WARNING, (
        "refused {}: no configured registry serving this pod has it (asked: {}) and "
        "allowUpstream is false".format(name, ", ".join(tried) or "none")))


def name_problem(pod):
    """
    Whether the pod's names can carry an Event: its namespace a DNS-1123
    label (at most 63 characters), its name a DNS-1123 subdomain (at most
    L{MAX_NAME}), as the API server requires.  Anything else (a C{/}, a
    C{?}) would change the URL the Event is posted to.

    :return: which name is wrong (C{"namespace"} or C{"name"}), or C{None}.
    """
    if not isinstance(pod.namespace, str) or not _DNS_LABEL.match(pod.namespace):
        return "namespace"
    if not isinstance(pod.name, str) or not _DNS_SUBDOMAIN.match(pod.name):
        return "name"
    return None


def event_name(pod_name, seconds, serial):
    """
    An Event's name, as kubelet makes them (the pod's name, a dot, the time
    in hex), with a serial so that events of one instant differ; the pod's
    name is shortened so that the whole stays a DNS-1123 subdomain of at most
    L{MAX_NAME} characters.

    :param pod_name: a name L{name_problem} accepts.
    :param seconds: when, in seconds since the epoch.
    :param serial: the recorder's count of events made.
    """
    suffix = ".{:x}{:04x}".format(int(seconds * 1e9), serial % 0x10000)
    return pod_name[:MAX_NAME - len(suffix)].rstrip("-.") + suffix


def _problems(passed_over, failures, scrub):
    """
    :return: C{"A unreachable: connection refused; B pull failed: ..."}.
    """
    parts = ["{} {}".format(registry, _short(scrub(reason))) for registry, reason in passed_over]
    parts += ["{} pull failed: {}".format(registry, _short(_last_clause(scrub(details))))
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
