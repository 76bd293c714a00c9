# -*- test-case-name: tests.test_probe -*-
"""
Test doubles that run the real request code: a CRI runtime on a real gRPC
server that records what it is sent, and registries as a C{twisted.web}
resource for C{treq.testing.StubTreq}, following the registry API's contract
(manifest HEAD, Basic auth, the Bearer token flow), and recording what each
registry was sent.
"""

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from twisted.web.resource import Resource

from cri_shim import config, methods, reference


class FakeRegistry:
    """
    One registry's manifests and login.

    :param username: the account, or C{None} for an open registry.
    :param scheme: C{"basic"} or C{"bearer"} (token from C{realm}).
    :param realm: the token service URL for C{"bearer"}.
    :ivar seen: C{(method, path, authorization header)} of every request.
    """

    def __init__(self, username=None, password=None, scheme="basic", realm=None):
        self.username = username
        self.password = password
        self.scheme = scheme
        self.realm = realm
        self.manifests = {}
        self.seen = []
        self.status = None
        self.token = "token-for-{}".format(username)

    def add(self, ref):
        """
        Hold the image C{ref} (a L{reference.Reference} naming this registry
        or just its path): by its tag and by its digest.
        """
        digest = ref.digest or "sha256:" + "%064x" % (len(self.manifests) + 1)
        if ref.tag:
            self.manifests[(ref.path, ref.tag)] = digest
        self.manifests[(ref.path, digest)] = digest
        return digest

    def basic(self):
        """
        :return: the C{Authorization} value this registry's login sends.
        """
        raw = "{}:{}".format(self.username, self.password).encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def answer(self, request, path):
        authorization = (request.getHeader("authorization") or "")
        self.seen.append((request.method.decode("ascii"), path, authorization))
        if self.status is not None:
            request.setResponseCode(self.status)
            return b""
        if not path.startswith("/v2/"):
            request.setResponseCode(404)
            return b""
        if not self._authorized(authorization):
            request.setResponseCode(401)
            if self.scheme == "basic":
                request.setHeader("www-authenticate", 'Basic realm="fake"')
            else:
                request.setHeader("www-authenticate", 'Bearer realm="{}",service="fake"'.format(
                    self.realm))
            return b""
        repo, _, tail = path[len("/v2/"):].partition("/manifests/")
        digest = self.manifests.get((repo, tail))
        if digest is None:
            request.setResponseCode(404)
            return b""
        request.setHeader("docker-content-digest", digest)
        return b""

    def _authorized(self, authorization):
        if self.username is None:
            return True
        if self.scheme == "basic":
            return authorization == self.basic()
        return authorization == "Bearer " + self.token

    def issue_token(self, request):
        """
        Answer the token service: a token for a valid Basic login.
        """
        authorization = request.getHeader("authorization") or ""
        self.seen.append(("GET", "token", authorization))
        if authorization != self.basic():
            request.setResponseCode(401)
            return b"{}"
        request.setHeader("content-type", "application/json")
        return json.dumps({"token": self.token, "expires_in": 300}).encode("ascii")


class FakeRegistries(Resource):
    """
    Routes requests by C{Host} to L{FakeRegistry}s; a token service is any
    host registered with L{add_token_service}.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.registries = {}
        self.token_services = {}

    def add(self, host, registry):
        """
        Serve C{registry} at C{host} (C{"name[:port]"}).

        :return: C{registry}.
        """
        self.registries[host] = registry
        return registry

    def add_token_service(self, host, registry):
        """
        Serve C{registry}'s token service at C{host}.
        """
        self.token_services[host] = registry

    def render(self, request):
        host = request.getHeader("host")
        path = request.path.decode("ascii")
        if host in self.token_services:
            return self.token_services[host].issue_token(request)
        registry = self.registries.get(host)
        if registry is None:
            request.setResponseCode(502)
            return b""
        return registry.answer(request, path)


def registry_config(address, username=None, password=None, priority=500, offline=False,
                    mirror_of=()):
    """
    :return: a L{config.Registry} for tests.
    """
    credentials = None
    if username is not None:
        credentials = config.Credentials(username, config.Secret(password))
    return config.Registry(
        address=reference.parse_registry_address(address), credentials=credentials,
        priority=priority, offline=offline, mirror_of=tuple(mirror_of))


class FakeRuntime:
    """
    A CRI runtime on a real gRPC server, for tests of the relay: it records
    the raw bytes, deadline and metadata of every call and answers
    ImageStatus, PullImage and RemoveImage from C{images}; any other method
    echoes its request bytes back, except those in C{failures}.

    :ivar images: image name -> image id, as the runtime holds them.
    :ivar failures: method name or image name -> C{(grpc.StatusCode,
        details)} to fail with.
    :ivar calls: C{(path, raw request, time remaining, metadata)} tuples.
    :ivar delays: method name -> seconds the runtime takes to answer it.
    :ivar arrived: a C{threading.Event} set when a call arrives.
    """

    def __init__(self, socket_path, package="runtime.v1"):
        self.api = methods.API[package]
        self.images = {}
        self.failures = {}
        self.calls = []
        self.delays = {}
        self.arrived = threading.Event()
        self.stream_items = [b"one", b"two", b"three"]
        self._server = grpc.server(ThreadPoolExecutor(8), handlers=[self._Router(self)],
                                   options=[("grpc.max_receive_message_length", 64 << 20),
                                            ("grpc.max_send_message_length", 64 << 20)])
        self._server.add_insecure_port("unix:" + socket_path)
        self._server.start()

    def stop(self):
        """
        Stop the server at once.
        """
        self._server.stop(None).wait()

    class _Router:
        def __init__(self, runtime):
            self.runtime = runtime

        def service(self, details):
            path = details.method
            if path.endswith("/StreamImages"):
                return grpc.unary_stream_rpc_method_handler(
                    lambda raw, context: self.runtime._stream(path, raw, context))
            return grpc.unary_unary_rpc_method_handler(
                lambda raw, context: self.runtime._unary(path, raw, context))

    def _record(self, path, raw, context):
        self.calls.append((path, raw, context.time_remaining(),
                           dict(context.invocation_metadata())))
        self.arrived.set()

    def _fail_if(self, key, context):
        failure = self.failures.get(key)
        if failure is not None:
            code, details = failure
            context.set_trailing_metadata((("x-runtime", "failed"),))
            context.abort(code, details)

    def _unary(self, path, raw, context):
        self._record(path, raw, context)
        method = path.rsplit("/", 1)[1]
        if method in self.delays:
            time.sleep(self.delays[method])
        self._fail_if(method, context)
        api = self.api
        if method == "ImageStatus":
            name = api.ImageStatusRequest.FromString(raw).image.image
            response = api.ImageStatusResponse()
            if name in self.images:
                response.image.id = self.images[name]
                response.image.repo_tags.append(name)
            return response.SerializeToString()
        if method == "PullImage":
            name = api.PullImageRequest.FromString(raw).image.image
            self._fail_if(name, context)
            self.images[name] = "sha256:" + "%064x" % (len(self.images) + 1)
            return api.PullImageResponse(image_ref=self.images[name]).SerializeToString()
        if method == "RemoveImage":
            self.images.pop(api.RemoveImageRequest.FromString(raw).image.image, None)
            return b""
        return raw

    def _stream(self, path, raw, context):
        self._record(path, raw, context)
        for item in self.stream_items:
            yield item
