# -*- test-case-name: tests.registries.test_resolver -*-
"""
Cold rewrite lookups, on the reactor: ask every candidate registry at once
whether it holds the image, choose the highest-priority one that does, cache
the decision, and let identical concurrent lookups share one set of probes.

The walk over answers is in priority order: a decision is made as soon as
every registry ranked above the first holder has answered, so a slow
low-priority registry never delays a rewrite to a faster high-priority one;
probes still running then are cancelled.
"""

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from cri_shim.model import rewrite
from cri_shim.registries.probe import ProbeError


class Resolver:
    """
    :param prober: a L{cri_shim.registries.probe.Prober}.
    :param on_unreachable: called with a registry's name and the reason when
        a probe could not reach it (the health checker marks it down).
    :param on_reachable: called with a registry's name and a reason when a
        probe got its answer (the health checker learns it is up).
    """

    log = Logger()

    def __init__(self, prober, on_unreachable=lambda name, reason: None,
                 on_reachable=lambda name, reason: None):
        self.prober = prober
        self.on_unreachable = on_unreachable
        self.on_reachable = on_reachable
        self._inflight = {}

    def resolve(self, snapshot, ref, pod=None):
        """
        Decide where C{ref} is pulled from: without asking anyone when
        L{rewrite.decide_without_lookup} can, else by L{lookup}.

        :return: a Deferred firing with a L{rewrite.Decision}, as L{lookup}'s.
        """
        decision = rewrite.decide_without_lookup(snapshot.config, ref, pod)
        if decision is not None:
            return succeed(decision)
        return self.lookup(snapshot, ref, pod=pod)

    def lookup(self, snapshot, ref, exclude=frozenset(), pod=None):
        """
        Ask the registries where C{ref} is pulled from.  The caller decided
        already that they must be asked (L{rewrite.decide_without_lookup}
        had no answer): a call's rewrite is decided once.

        :param snapshot: the L{cri_shim.snapshot.Snapshot} the request reads.
        :param ref: a parsed L{cri_shim.model.reference.Reference}.
        :param exclude: registry names not to ask (a pull from them failed).
        :param pod: the L{cri_shim.model.selector.Pod} the pull is for, or
            C{None}: which restricted registries are candidates.
        :return: a Deferred firing with a L{rewrite.Decision}; it never fails
            for registry trouble (that is a decision not to move the image).
            Cancelling it stops waiting; when nobody waits for a lookup any
            more, its probes are cancelled too (kubelet gave up).
        """
        scope = rewrite.scope(snapshot.config, ref, pod)
        key = (snapshot.generation, rewrite.cache_key(ref, scope), frozenset(exclude))
        entry = self._inflight.get(key)
        new = entry is None
        if new:
            entry = self._inflight[key] = (_Lookup(self, snapshot, ref, exclude, pod, scope), [])
        lookup, waiters = entry

        def cancel(waiter):
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters and self._inflight.get(key) is entry:
                    del self._inflight[key]
                    lookup.cancel()

        waiter = Deferred(cancel)
        waiters.append(waiter)
        if new:
            # The waiter is in place first: a lookup may decide at once.
            lookup.start().addCallback(self._deliver, key, entry)
        return waiter

    def _deliver(self, decision, key, entry):
        if self._inflight.get(key) is entry:
            del self._inflight[key]
        for waiter in entry[1]:
            waiter.callback(decision)


class _Lookup:
    """
    One lookup: registries not known to be down are asked at once and their
    answers walked in priority order; registries found down are asked only
    when none of those holds the image.
    """

    def __init__(self, resolver, snapshot, ref, exclude, pod, scope):
        self._resolver = resolver
        self._snapshot = snapshot
        self._ref = ref
        self._exclude = exclude
        self._scope = scope
        self._config = snapshot.config
        found = rewrite.candidates(self._config, ref, exclude, snapshot.down, pod)
        self._ranked = [candidate.registry.name for candidate in
                        rewrite.candidates(self._config, ref, exclude, pod=pod)]
        self._waves = [[c for c in found if c.registry.name not in snapshot.down],
                       [c for c in found if c.registry.name in snapshot.down]]
        self._tried = tuple(candidate.registry.name for candidate in found)
        self._errors = {}
        self._unreachable = set()
        self._log_lines = []
        self._probes = []
        self._done = Deferred()

    def start(self):
        self._next_wave()
        return self._done

    def cancel(self):
        """
        Nobody waits any more: stop the probes; the lookup never decides.
        """
        self._cancelled = True
        for probe in self._probes:
            if probe is not None and not probe.called:
                probe.cancel()

    _cancelled = False

    def _next_wave(self):
        while self._waves and not self._waves[0]:
            self._waves.pop(0)
        if not self._waves:
            self._finish(rewrite.Decision(self._ref, None, None, rewrite.NOBODY, self._tried))
            return
        wave = self._waves.pop(0)
        answers = [None] * len(wave)
        probes = self._probes = []

        def settle():
            if self._done.called or self._cancelled or (probes and probes[-1] is None):
                return
            for index, candidate in enumerate(wave):
                if answers[index] is None:
                    return
                if answers[index] is True:
                    record()
                    self._finish(rewrite.Decision(self._ref, candidate.target,
                                                  candidate.registry, rewrite.PROBE,
                                                  self._tried), probes, candidate)
                    return
            record()
            self._next_wave()

        def record():
            self._log_lines.extend("{}={}".format(c.registry.name, _answer(answers[i]))
                                   for i, c in enumerate(wave))

        def answered(result, index):
            answers[index] = result
            self._resolver.on_reachable(wave[index].registry.name, "a lookup got its answer")
            settle()

        def failed(failure, index):
            if self._done.called or self._cancelled:
                return None
            answers[index] = False
            name = wave[index].registry.name
            if failure.check(ProbeError):
                self._errors[name] = failure.value.reason
                if failure.value.unreachable:
                    self._unreachable.add(name)
                    self._resolver.on_unreachable(name, failure.value.reason)
            else:
                self._errors[name] = "{}: {}".format(type(failure.value).__name__, failure.value)
            settle()
            return None

        for index, candidate in enumerate(wave):
            if self._done.called or self._cancelled:
                break
            # A placeholder keeps synchronous answers from settling the wave
            # before every probe in it has started.
            probes.append(None)
            probe = self._resolver.prober.has_manifest(candidate.registry, candidate.target,
                                                       self._config.probe_timeout)
            probes[-1] = probe
            probe.addCallbacks(answered, failed, callbackArgs=(index,), errbackArgs=(index,))
        settle()

    def _finish(self, decision, probes=(), chosen=None):
        ref, config = self._ref, self._config
        key = rewrite.cache_key(ref, self._scope)
        if decision.moved:
            decision = attr.evolve(decision, passed_over=self._passed_over(decision))
            # Once a registry passed over is up again, this decision is
            # forgotten, and the image asked for there again.
            self._snapshot.cache.put(key, decision, config.cache.ttl,
                                     frozenset(name for name, _ in decision.passed_over))
        elif not self._errors and not self._exclude:
            self._snapshot.cache.put(key, decision, config.cache.negative_ttl)
        log = self._resolver.log
        for name, reason in self._errors.items():
            log.warn("registry {registry} could not be asked for {image}: {reason}",
                     registry=name, image=str(ref), reason=reason)
        if config.debug:
            log.debug("lookup {image}: {answers} -> {result}", image=str(ref),
                      answers=", ".join(self._log_lines) or "no registry asked",
                      result=decision.registry.name if decision.moved else "not moved")
        self._done.callback(decision)
        # Lower-priority answers no longer matter.
        for probe in probes:
            if probe is not None and not probe.called:
                probe.cancel()


    def _passed_over(self, decision):
        """
        :return: C{(name, why)} of the registries ranked above the chosen
            one that could not serve: unreachable, failing, or found down.
        """
        found = []
        for name in self._ranked[:self._ranked.index(decision.registry.name)]:
            if name in self._errors:
                found.append((name, "{}: {}".format(
                    "unreachable" if name in self._unreachable else "could not be asked",
                    self._errors[name])))
            elif name in self._snapshot.down:
                found.append((name, "found down"))
        return tuple(found)


def _answer(answer):
    return {True: "has it", False: "no", None: "not waited for"}[answer]
