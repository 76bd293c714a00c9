# -*- test-case-name: tests.serve.test_image_service -*-
"""
[worker threads] The ImageService calls the shim rewrites: C{PullImage},
C{ImageStatus} and C{RemoveImage}, for one CRI API version.

Each call reads the current snapshot once, decides with L{cri_shim.model.rewrite},
and calls the runtime on the same thread.  Only a cold PullImage lookup
reaches the reactor (L{cri_shim.registries.resolver}, through C{blockingCallFromThread});
ImageStatus and RemoveImage never touch the network or the reactor.
"""

import grpc
from google.protobuf.message import DecodeError
from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from cri_shim.model import reference, rewrite
from cri_shim.serve import methods
from cri_shim.metrics import Metrics
from cri_shim.serve.upstream import Abort, thd_metadata, thd_timeout

_NOT_PRESENT = "(not present)"
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
    :param track_pull: a callable C{(registry name)}, safe to call from any
        thread, when a pull from that registry starts; it returns the
        callable to call when the pull ends (the health checker watches a
        registry while it is pulled from).
    """

    log = Logger()

    def __init__(self, package, upstream, holder, lookup,
                 report_unreachable=lambda name, reason: None, metrics=None,
                 track_pull=lambda name: lambda: None):
        self._metrics = metrics or Metrics()
        self._api = methods.API[package]
        self._package = package
        self._holder = holder
        self._lookup = lookup
        self._report_unreachable = report_unreachable
        self._track_pull = track_pull
        self._status = upstream.unary(methods.path(package, "ImageService", "ImageStatus"))
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
                self._metrics.instrument(path, self._guarded(getattr(self, name))))
        return handlers

    def _guarded(self, method):
        def handler(request, context):
            try:
                return method(request, context)
            except Abort as abort:
                abort.apply(context)
            except CancelledError:
                # The caller cancelled the call or its deadline passed: the
                # lookup was cancelled with it (cri_shim.serve.bridge).  Not a fault.
                context.abort(grpc.StatusCode.CANCELLED, "cancelled by the caller")
            except Exception:
                self.log.failure("{method} failed inside the shim", method=method.__name__)
                context.abort(grpc.StatusCode.INTERNAL,
                              "image-cri-shim internal error; see the shim's log")
        return handler

    # -- the rewritten calls -------------------------------------------------

    def ImageStatus(self, raw, context):
        """
        Report the image under the first name the runtime has it by.
        """
        request = self._parse(self._api.ImageStatusRequest, raw)
        name = request.image.image
        ref = _parse_name(name)
        if ref is None:
            return self._call(self._status, raw, context)
        snapshot = self._holder.current
        found, response, cache_hit = self._find_local(snapshot, ref, request, raw, context)
        self._log_decision(snapshot, "ImageStatus", name, found or _NOT_PRESENT, None,
                           cache_hit, "local")
        return response

    def RemoveImage(self, raw, context):
        """
        Remove the image under the name ImageStatus would report it by.
        """
        request = self._parse(self._api.RemoveImageRequest, raw)
        name = request.image.image
        ref = _parse_name(name)
        if ref is None:
            return self._call(self._remove, raw, context)
        snapshot = self._holder.current
        status_request = self._api.ImageStatusRequest()
        status_request.image.CopyFrom(request.image)
        found, _, cache_hit = self._find_local(
            snapshot, ref, status_request, status_request.SerializeToString(), context)
        self._log_decision(snapshot, "RemoveImage", name, found or _NOT_PRESENT, None,
                           cache_hit, "local")
        if found is None or found == str(ref):
            return self._call(self._remove, raw, context)
        request.image.image = found
        return self._call(self._remove, request.SerializeToString(), context)

    def PullImage(self, raw, context):
        """
        Pull from the highest-priority registry that holds the image, with
        that registry's credentials; on failure, from the next one.
        """
        request = self._parse(self._api.PullImageRequest, raw)
        name = request.image.image
        ref = _parse_name(name)
        if ref is None:
            return self._call_cancellable(self._pull, raw, context)
        snapshot = self._holder.current
        decision, cache_hit = self._decide(context, snapshot, ref)
        self._refuse_upstream(snapshot, decision, name)
        kubelet_sent_auth = request.HasField("auth")
        failed = set()
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
                if not decision.moved or abort.code == grpc.StatusCode.CANCELLED:
                    raise
                registry = decision.registry.name
                snapshot.cache.discard(rewrite.cache_key(ref))
                failed.add(registry)
                if _unreachable(abort.details):
                    self._report_unreachable(registry, "pull failed: " + abort.details[:200])
                self.log.warn(
                    "PullImage {original} from {registry} failed ({code}: {details}); "
                    "trying the next registry", original=name, registry=registry,
                    code=abort.code.name, details=abort.details)
                retry = self._lookup(context, snapshot, ref, frozenset(failed))
                if not retry.moved:
                    raise
                decision, cache_hit = retry, False
                continue
            self._log_decision(snapshot, "PullImage", name, _result(decision, name),
                               decision.registry, cache_hit, decision.source)
            return response

    # -- helpers ---------------------------------------------------------------

    def _decide(self, context, snapshot, ref):
        """
        :return: C{(decision, cache_hit)}.
        """
        decision = rewrite.decide_without_lookup(snapshot.config, ref)
        if decision is not None:
            return decision, False
        cached = snapshot.cache.get(rewrite.cache_key(ref))
        # A rewrite to a registry found down since is looked up again: the
        # lookup asks the others first.
        if cached is not None and (cached.registry is None or
                                   cached.registry.name not in snapshot.down):
            return cached, True
        return self._lookup(context, snapshot, ref, frozenset()), False

    def _refuse_upstream(self, snapshot, decision, name):
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
        raise Abort(grpc.StatusCode.NOT_FOUND,
                    "image {} is not in any configured registry (asked: {}); pulling from "
                    "its own registry is off (allowUpstream: false)".format(name, tried))

    def _find_local(self, snapshot, ref, request, raw, context):
        """
        Ask the runtime for C{ref} under each of its local names in turn.

        :return: C{(found name or None, raw ImageStatusResponse, cache_hit)}.
        """
        cached = snapshot.cache.get(rewrite.cache_key(ref))
        original = str(ref)
        response = None
        for name in rewrite.local_names(snapshot.config, ref, cached):
            if name == original:
                body = raw
            else:
                request.image.image = name
                body = request.SerializeToString()
            response = self._call(self._status, body, context)
            if self._api.ImageStatusResponse.FromString(response).HasField("image"):
                return name, response, cached is not None
        return None, response, cached is not None

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
        timeout = thd_timeout(context, self._holder.current.config.timeout)
        try:
            return call(body, timeout=timeout, metadata=thd_metadata(context))
        except grpc.RpcError as error:
            raise Abort.from_rpc_error(error)

    def _call_cancellable(self, call, body, context, registry=None):
        """
        Like L{_call}, but the runtime's call is cancelled when the caller
        cancels (a pull can take minutes), or when C{registry}, the registry
        the pull goes to, is found down meanwhile (a stalled registry gives
        the runtime no error to return, so the pull would hang until its
        deadline).

        :raise Abort: UNAVAILABLE naming C{registry} in the second case.
        """
        timeout = thd_timeout(context, self._holder.current.config.timeout)
        future = call.future(body, timeout=timeout, metadata=thd_metadata(context))
        context.add_callback(future.cancel)
        ended = self._track_pull(registry) if registry is not None else None
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
        finally:
            if ended is not None:
                ended()

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


def _parse_name(name):
    """
    :return: the L{reference.Reference} to rewrite, with the default tag
        made explicit as the runtime would, or C{None} for names relayed as
        they are (image IDs, and what does not parse: the runtime gives its
        own answer).
    """
    if not name or reference.is_image_id(name):
        return None
    try:
        return reference.parse(name).with_default_tag()
    except reference.InvalidReference:
        return None


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
