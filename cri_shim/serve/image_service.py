# -*- test-case-name: tests.serve.test_image_service,tests.serve.test_image_service_edges -*-
"""
[worker threads] The ImageService calls the shim rewrites: C{PullImage},
C{ImageStatus} and C{RemoveImage}, for one CRI API version.

Each call reads the current snapshot once, decides with L{cri_shim.model.rewrite},
and calls the runtime on the same thread.  Only a cold PullImage lookup
reaches the reactor (L{cri_shim.registries.resolver}, through C{blockingCallFromThread});
ImageStatus and RemoveImage never touch the network or the reactor.

With a names store (config C{names: requested}), a pull remembers the name
it was asked for, ImageStatus shows the image under it
(L{cri_shim.serve.views}), and RemoveImage forgets the image's names.
"""

import grpc
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from cri_shim.model import podevent, rewrite
from cri_shim.model.names import parse_requested
from cri_shim.serve import methods
from cri_shim.serve.bridge import untracked
from cri_shim.serve.local import LocalImages
from cri_shim.serve.pods import pod_of
from cri_shim.metrics import Metrics
from cri_shim.serve.upstream import Abort, guarded, thd_call, thd_metadata, thd_timeout
from cri_shim.serve.views import present_status, shows_requested

_NOT_PRESENT = "(not present)"
_WITHHELD = "(not told: registries restricted to some workloads serve it)"
#: How often a pull in progress looks whether its registry was found down.
_DOWN_CHECK_INTERVAL = 0.5


class ImageService:
    """
    :param package: the CRI package, C{"runtime.v1"} or C{"runtime.v1alpha2"}.
    :param upstream: the L{cri_shim.serve.upstream.Upstream}.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder}.
    :param lookup: a blocking callable C{(context, snapshot, ref, exclude)}
        asking the registries and returning a L{rewrite.Decision} (the thread
        bridge to the resolver's lookup, cancelled with the call); called only
        when L{rewrite.decide_without_lookup} has no answer, so that each
        call's rewrite is decided once, here.
    :param report_unreachable: a callable C{(registry name, reason)}, safe to
        call from any thread, for pulls that could not reach a registry.
    :param store: the L{cri_shim.serve.name_store.NameStore}, or C{None} to
        show registry names whatever the config says.
    :param report_event: a callable taking a L{podevent.PodEvent}, safe to
        call from any thread and returning at once (it hands the event to
        the reactor; a pull never waits for it to be posted).
    :param track_pull: a L{cri_shim.serve.bridge.pull_tracker}: health checks a pulled registry.
    """

    log = Logger()

    def __init__(self, package, upstream, holder, lookup,
                 report_unreachable=lambda name, reason: None, metrics=None, store=None,
                 report_event=lambda event: None, track_pull=untracked):
        self._metrics = metrics or Metrics()
        self._store = store
        self._api = methods.API[package]
        self._package = package
        self._holder = holder
        self._lookup = lookup
        self._report_unreachable = report_unreachable
        self._report_event, self._track_pull = report_event, track_pull
        self._status = upstream.unary(methods.path(package, "ImageService", "ImageStatus"))
        self._local = LocalImages(self._api, self._status, holder, store)
        self._pull = upstream.unary(methods.path(package, "ImageService", "PullImage"))
        self._remove = upstream.unary(methods.path(package, "ImageService", "RemoveImage"))

    def handlers(self):
        """
        :return: a dict of method path to C{grpc.RpcMethodHandler}.
        """
        handlers = {}
        for name in methods.REWRITTEN:
            path = methods.path(self._package, "ImageService", name)
            handlers[path] = grpc.unary_unary_rpc_method_handler(
                self._metrics.instrument(path, guarded(getattr(self, name), self.log)))
        return handlers

    # -- the rewritten calls -------------------------------------------------

    def ImageStatus(self, raw, context):
        """
        Report the image under the first name the runtime has it by, shown
        under the names it was requested by.
        """
        request = self._parse(self._api.ImageStatusRequest, raw)
        name = request.image.image
        ref = parse_requested(name)
        snapshot = self._holder.current
        found = None
        if ref is None:
            response = self._call(self._status, raw, context)
        else:
            found, response, cache_hit = self._local.thd_find(context, snapshot, ref, None,
                                                              request, raw)
            if response is None:
                # Nothing may be told without the pod: kubelet pulls it
                # for the pod, which resolves it by the pod's own rules.
                self._log_decision(snapshot, "ImageStatus", name, _WITHHELD, None, False,
                                   "restricted")
                return b""
            self._log_decision(snapshot, "ImageStatus", name, found or _NOT_PRESENT, None,
                               cache_hit, "local")
        view = self._view(snapshot)
        if view is None:
            return response
        if found is not None and found != str(ref):
            view = view.with_name(str(ref), found)
        return present_status(self._api, view, response) if view.targets else response

    def RemoveImage(self, raw, context):
        """
        Remove the image under the name ImageStatus would report it by, and
        forget the names it was requested by.
        """
        request = self._parse(self._api.RemoveImageRequest, raw)
        name = request.image.image
        ref = parse_requested(name)
        snapshot = self._holder.current
        status_request = self._api.ImageStatusRequest()
        status_request.image.CopyFrom(request.image)
        status_raw = status_request.SerializeToString()
        status = None
        forgotten = [str(ref)] if ref is not None else []
        if ref is not None:
            found, status, cache_hit = self._local.thd_find(context, snapshot, ref, None,
                                                            status_request, status_raw)
            self._log_decision(snapshot, "RemoveImage", name,
                               found or (_NOT_PRESENT if status is not None else _WITHHELD),
                               None, cache_hit, "local")
            if found is not None and found != str(ref):
                request.image.image = found
                raw = request.SerializeToString()
        if status is None and self._store is not None and self._store.view:
            # An image ID, or a name the pod decides: the runtime removes
            # what it holds under that name itself, and the names of that
            # image are forgotten.
            status = self._call(self._status, status_raw, context)
            forgotten = []
        response = self._call(self._remove, raw, context)
        if self._store is not None:
            image = self._api.ImageStatusResponse.FromString(status or b"").image
            self._store.thd_forget(list(image.repo_tags) + list(image.repo_digests) + forgotten)
        return response

    def thd_local_name(self, context, snapshot, ref, pod=None):
        """
        :return: the name the runtime holds C{ref} under for C{pod}, looked
            up as ImageStatus looks it up, or C{None}.
        """
        return self._local.thd_name(context, snapshot, ref, pod)

    def PullImage(self, raw, context):
        """
        Pull from the highest-priority registry that holds the image, with
        that registry's credentials; on failure, from the next one.
        """
        request = self._parse(self._api.PullImageRequest, raw)
        name = request.image.image
        ref = parse_requested(name)
        if ref is None:
            return self._relay_pull(raw, context, name)
        snapshot = self._holder.current
        pod = pod_of(request)
        scope = rewrite.scope(snapshot.config, ref, pod)
        decision, cache_hit = self._decide(context, snapshot, ref, pod, scope)
        self._refuse_upstream(snapshot, decision, name, pod)
        kubelet_sent_auth = request.HasField("auth")
        failed = set()
        failures = []
        while True:
            body = self._pull_body(request, raw, decision, kubelet_sent_auth)
            try:
                response = self._call_cancellable(
                    self._pull, body, context,
                    decision.registry.name if decision.moved else None)
            except _RuntimeUnavailable:
                # The runtime did not answer: no registry is to blame, and
                # no other registry would do better.
                raise
            except Abort as abort:
                if not decision.moved:
                    self._log_relayed_failure(name, abort)
                    raise
                if abort.code == grpc.StatusCode.CANCELLED:
                    raise
                registry = decision.registry.name
                snapshot.cache.discard(rewrite.cache_key(ref, scope))
                failed.add(registry)
                failures.append((registry, abort.details))
                if _unreachable(abort.details):
                    self._report_unreachable(registry, "pull failed: " + abort.details[:200])
                self.log.warn(
                    "PullImage {original} from {registry} failed ({code}: {details}); "
                    "trying the next registry", original=name, registry=registry,
                    code=abort.code.name, details=abort.details)
                retry = self._lookup(context, snapshot, ref, frozenset(failed), pod)
                if not retry.moved:
                    self._post(podevent.failed_over(pod, name, failures))
                    raise
                decision, cache_hit = retry, False
                continue
            self._log_decision(snapshot, "PullImage", name, _result(decision, name),
                               decision.registry, cache_hit, decision.source)
            if self._view(snapshot) is not None:
                self._store.thd_record(ref, decision.target if decision.moved else ref, scope)
            self._post(podevent.pulled(pod, name, decision, failures))
            return response

    def _relay_pull(self, raw, context, name):
        """
        Pull a name the shim does not rewrite, as it came.
        """
        try:
            return self._call_cancellable(self._pull, raw, context)
        except Abort as abort:
            self._log_relayed_failure(name, abort)
            raise

    def _log_relayed_failure(self, name, abort):
        """
        A pull relayed unchanged failed: say so at info (the runtime's
        answer goes to the caller, but the node's operator reads this log).
        """
        self.log.info("PullImage {original} (relayed unchanged) failed: {code}: {details}",
                      original=name, code=abort.code.name, details=abort.details[:300])

    def _view(self, snapshot):
        """
        :return: the names store's view when requested names are shown,
            else C{None}.
        """
        if self._store is None or not shows_requested(snapshot):
            return None
        return self._store.view

    # -- helpers ---------------------------------------------------------------

    def _decide(self, context, snapshot, ref, pod, scope):
        """
        :param pod: the L{Pod} the pull is for, or C{None}.
        :param scope: C{pod}'s L{rewrite.scope} for C{ref}.
        :return: C{(decision, cache_hit)}.
        """
        decision = rewrite.decide_without_lookup(snapshot.config, ref, pod)
        if decision is not None:
            return decision, False
        cached = snapshot.cache.get(rewrite.cache_key(ref, scope))
        # A rewrite to a registry found down since is looked up again: the
        # lookup asks the others first.
        if cached is not None and (cached.registry is None or
                                   cached.registry.name not in snapshot.down):
            return cached, True
        return self._lookup(context, snapshot, ref, frozenset(), pod), False

    def _post(self, event):
        """
        Hand a pod event, if any, to the reactor; never waits.
        """
        if event is not None:
            self._report_event(event)

    def _refuse_upstream(self, snapshot, decision, name, pod):
        """
        With C{allowUpstream: false}, an image no configured registry holds
        is refused instead of being pulled from where it names.
        """
        if snapshot.config.allow_upstream or decision.moved or decision.registry is not None:
            return
        tried = ", ".join(decision.tried) or "none of them may hold it (mirrorOf)"
        self.log.warn("PullImage {original} refused: no configured registry has it "
                      "(asked: {tried}) and allowUpstream is false", original=name,
                      tried=tried)
        self._post(podevent.refused(pod, name, decision.tried))
        raise Abort(grpc.StatusCode.NOT_FOUND,
                    "image {} is not in any configured registry (asked: {}); pulling from "
                    "its own registry is off (allowUpstream: false)".format(name, tried))

    def _pull_body(self, request, raw, decision, kubelet_sent_auth):
        """
        :return: the PullImageRequest bytes for C{decision}: unchanged when
            neither name nor credentials change, so unknown fields and all
            else survive byte for byte.
        """
        choice = rewrite.pull_credentials(decision, kubelet_sent_auth)
        if not decision.moved and choice is rewrite.KEEP:
            return raw
        if decision.moved:
            request.image.image = str(decision.target)
        if choice is rewrite.REPLACE:
            request.ClearField("auth")
            registry = decision.registry
            credentials = registry.credentials
            if credentials is not None:
                request.auth.username = credentials.username
                request.auth.password = credentials.password.reveal()
                request.auth.server_address = registry.address.url
        return request.SerializeToString()

    def _parse(self, message_type, raw):
        try:
            return message_type.FromString(raw)
        except DecodeError as e:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        "cannot parse {}: {}".format(message_type.DESCRIPTOR.name, e))

    def _call(self, call, body, context):
        return thd_call(call, body, context, self._holder.current.config.timeout)

    def _call_cancellable(self, call, body, context, registry=None):
        """
        Like L{_call}, but the runtime's call is cancelled when the caller
        cancels (a pull can take minutes), or when C{registry}, the registry
        the pull goes to (tracked meanwhile), is found down: a stalled
        registry gives the runtime no error, the pull would hang.

        :raise Abort: UNAVAILABLE naming C{registry} in the second case.
        """
        timeout = thd_timeout(context, self._holder.current.config.timeout)
        future = call.future(body, timeout=timeout, metadata=thd_metadata(context))
        context.add_callback(future.cancel)
        with self._track_pull(registry):
            try:
                while True:
                    try:
                        return future.result(timeout=_DOWN_CHECK_INTERVAL)
                    except grpc.FutureTimeoutError:
                        if registry is not None and registry in self._holder.current.down:
                            future.cancel()
                            raise Abort(grpc.StatusCode.UNAVAILABLE,
                                        "registry {} was found down during the pull".format(
                                            registry))
            except grpc.FutureCancelledError:
                raise Abort(grpc.StatusCode.CANCELLED, "cancelled by the caller")
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    raise _RuntimeUnavailable.from_rpc_error(error)
                raise Abort.from_rpc_error(error)

    def _log_decision(self, snapshot, action, original, result, registry, cache_hit, source):
        """
        Count the decision, and log it: pulls at info, the local lookups of
        ImageStatus and RemoveImage (kubelet's most frequent calls, which
        never rewrite anything) at debug only, checked before the logger is
        called so that a quiet shim does not pay for formatting them.
        """
        self._metrics.rewrites.inc(action, "cache" if cache_hit else source,
                                   registry.name if registry is not None else "-")
        if action != "PullImage" and not snapshot.config.debug:
            return
        emit = self.log.info if action == "PullImage" else self.log.debug
        emit(
            "{action} {original} -> {result} (registry={registry}, cache_hit={cache_hit}, "
            "source={source})", action=action, original=original, result=result,
            registry=registry.name if registry is not None else "-",
            cache_hit=cache_hit, source=source)


class _RuntimeUnavailable(Abort):
    """
    The runtime's call failed with UNAVAILABLE: the shim's channel has no
    connection to the runtime (not running, restarting, frozen), or lost it
    during the call.  Runtimes report a registry they cannot reach
    otherwise (containerd: UNKNOWN, "failed to pull and unpack image").
    """


def _result(decision, name):
    return str(decision.target) if decision.moved else name


# What a runtime's pull error says when the registry could not be reached
# (containerd and CRI-O word them after Go's net package).
_UNREACHABLE = ("connection refused", "no route to host", "i/o timeout", "connection reset",
                "tls handshake timeout", "network is unreachable", "no such host",
                "server misbehaving")


def _unreachable(details):
    """
    :return: whether a pull error means the registry could not be reached.
    """
    details = details.lower()
    return any(words in details for words in _UNREACHABLE)
