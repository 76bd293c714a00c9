# -*- test-case-name: tests.test_resolver -*-
"""
Cold rewrite lookups, on the reactor: ask every candidate registry at once
whether it holds the image, choose the highest-priority one that does, cache
the decision, and let identical concurrent lookups share one set of probes.

The walk over answers is in priority order: a decision is made as soon as
every registry ranked above the first holder has answered, so a slow
low-priority registry never delays a rewrite to a faster high-priority one;
probes still running then are cancelled.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from cri_shim import rewrite
from cri_shim.probe import ProbeError


class Resolver:
    """
    :param prober: a L{cri_shim.probe.Prober}.
    """

    log = Logger()

    def __init__(self, prober):
        self._prober = prober
        self._inflight = {}

    def resolve(self, snapshot, ref, exclude=frozenset()):
        """
        Decide where C{ref} is pulled from.

        :param snapshot: the L{cri_shim.snapshot.Snapshot} the request reads.
        :param ref: a parsed L{cri_shim.reference.Reference}.
        :param exclude: registry names not to ask (a pull from them failed).
        :return: a Deferred firing with a L{rewrite.Decision}; it never fails
            for registry trouble (that is a decision not to move the image).
        """
        decision = rewrite.decide_without_lookup(snapshot.config, ref)
        if decision is not None:
            return succeed(decision)
        key = (snapshot.generation, rewrite.cache_key(ref), frozenset(exclude))
        waiters = self._inflight.get(key)
        if waiters is None:
            waiters = self._inflight[key] = []
            self._lookup(snapshot, ref, exclude).addCallback(self._deliver, key)
        waiter = Deferred(lambda d: waiters.remove(d) if d in waiters else None)
        waiters.append(waiter)
        return waiter

    def _deliver(self, decision, key):
        for waiter in self._inflight.pop(key):
            waiter.callback(decision)

    def _lookup(self, snapshot, ref, exclude):
        config = snapshot.config
        found = rewrite.candidates(config, ref, exclude)
        tried = tuple(candidate.registry.name for candidate in found)
        answers = [None] * len(found)
        errors = {}
        done = Deferred()
        probes = []

        def settle():
            if done.called:
                return
            for index, candidate in enumerate(found):
                answer = answers[index]
                if answer is None:
                    return
                if answer is True:
                    finish(rewrite.Decision(ref, candidate.target, candidate.registry,
                                            rewrite.PROBE, tried))
                    return
            finish(rewrite.Decision(ref, None, None, rewrite.NOBODY, tried))

        def finish(decision):
            cache_key = rewrite.cache_key(ref)
            if decision.moved:
                snapshot.cache.put(cache_key, decision, config.cache.ttl)
            elif not errors and not exclude:
                snapshot.cache.put(cache_key, decision, config.cache.negative_ttl)
            for name, reason in errors.items():
                self.log.warn("registry {registry} could not be asked for {image}: {reason}",
                              registry=name, image=str(ref), reason=reason)
            if config.debug:
                self.log.debug("lookup {image}: {answers}", image=str(ref), answers=", ".join(
                    "{}={}".format(candidate.registry.name, _answer(answers[index]))
                    for index, candidate in enumerate(found)))
            done.callback(decision)
            # Lower-priority answers no longer matter.
            for probe in probes:
                if not probe.called:
                    probe.cancel()

        def answered(result, index):
            answers[index] = result
            settle()

        def failed(failure, index):
            if done.called:
                return None
            answers[index] = False
            reason = (failure.value.reason if failure.check(ProbeError)
                      else "{}: {}".format(type(failure.value).__name__, failure.value))
            errors[found[index].registry.name] = reason
            settle()
            return None

        for index, candidate in enumerate(found):
            if done.called:
                break
            probe = self._prober.has_manifest(candidate.registry, candidate.target,
                                              config.probe_timeout)
            probes.append(probe)
            probe.addCallbacks(answered, failed, callbackArgs=(index,),
                               errbackArgs=(index,))
        settle()
        return done


def _answer(answer):
    return {True: "has it", False: "no", None: "not waited for"}[answer]
