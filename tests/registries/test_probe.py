"""
Tests for L{cri_shim.registries.probe}: the manifest probe against registries that
follow the registry API's contract (L{cri_shim.testing.FakeRegistries} over
StubTreq), plus connection failures and timeouts on an injected clock.
"""

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived

from cri_shim.model import reference
from cri_shim.registries.httputil import describe_failure
from cri_shim.registries.probe import ProbeError, Prober
from cri_shim.testing import FakeRegistries, FakeRegistry, registry_config

DIGEST = "sha256:" + "ab" * 32


class ProbeTestMixin:
    def setUp(self):
        self.clock = Clock()
        self.registries = FakeRegistries()
        self.http = StubTreq(self.registries)
        self.prober = Prober(self.http, self.clock)

    def probe(self, registry, image, timeout=2.0):
        target = reference.parse(image)
        d = self.prober.has_manifest(registry, target, timeout)
        self.http.flush()
        return d


class OpenRegistryTests(ProbeTestMixin, SynchronousTestCase):
    def setUp(self):
        ProbeTestMixin.setUp(self)
        self.fake = self.registries.add("sealos.hub:5000", FakeRegistry())
        self.fake.add(reference.parse("sealos.hub:5000/library/nginx:latest"))
        self.registry = registry_config("http://sealos.hub:5000")

    def test_present(self):
        """
        A manifest the registry holds is reported present, asked by HEAD on
        the repository's manifest URL.
        """
        d = self.probe(self.registry, "sealos.hub:5000/library/nginx:latest")
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.fake.seen, [("HEAD", "/v2/library/nginx/manifests/latest", "")])

    def test_absent(self):
        """
        A 404 means the registry does not hold the image.
        """
        d = self.probe(self.registry, "sealos.hub:5000/library/nginx:1.0")
        self.assertIs(self.successResultOf(d), False)

    def test_digest(self):
        """
        A digest-pinned image is asked for by its digest, never its tag.
        """
        self.fake.add(reference.parse("sealos.hub:5000/app@" + DIGEST))
        d = self.probe(self.registry, "sealos.hub:5000/app:1@" + DIGEST)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.fake.seen[-1][1], "/v2/app/manifests/" + DIGEST)
        other = "sha256:" + "cd" * 32
        d = self.probe(self.registry, "sealos.hub:5000/app@" + other)
        self.assertIs(self.successResultOf(d), False)

    def test_wrong_digest_header(self):
        """
        A registry answering with another digest than asked is not trusted.
        """
        self.fake.manifests[("app", DIGEST)] = "sha256:" + "ee" * 32
        d = self.probe(self.registry, "sealos.hub:5000/app@" + DIGEST)
        self.assertIn("digest", self.failureResultOf(d, ProbeError).value.reason)

    def test_server_errors(self):
        """
        403, 429 and 5xx answers are errors, not absence.
        """
        for status, words in [(403, "denied"), (429, "rate limited"), (500, "500"),
                              (503, "503")]:
            self.fake.status = status
            d = self.probe(self.registry, "sealos.hub:5000/library/nginx:latest")
            self.assertIn(words, self.failureResultOf(d, ProbeError).value.reason)


class BasicAuthTests(ProbeTestMixin, SynchronousTestCase):
    def setUp(self):
        ProbeTestMixin.setUp(self)
        self.fake = self.registries.add(
            "reg.example", FakeRegistry("alice", "pa:ss:word"))
        self.fake.add(reference.parse("reg.example/library/nginx:latest"))

    def test_answers_challenge(self):
        """
        A Basic challenge is answered with the registry's own login, the
        password taken whole even with colons in it.
        """
        registry = registry_config("https://reg.example", "alice", "pa:ss:word")
        d = self.probe(registry, "reg.example/library/nginx:latest")
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual([auth for _, _, auth in self.fake.seen], ["", self.fake.basic()])

    def test_login_sent_up_front_after(self):
        """
        Once a registry asked for Basic, later probes send the login with the
        first request (one round trip, not two).
        """
        registry = registry_config("https://reg.example", "alice", "pa:ss:word")
        self.successResultOf(self.probe(registry, "reg.example/library/nginx:latest"))
        del self.fake.seen[:]
        self.successResultOf(self.probe(registry, "reg.example/library/nginx:latest"))
        self.assertEqual([auth for _, _, auth in self.fake.seen], [self.fake.basic()])

    def test_wrong_password(self):
        """
        Rejected credentials are an error naming the cause.
        """
        registry = registry_config("https://reg.example", "alice", "nope")
        d = self.probe(registry, "reg.example/library/nginx:latest")
        self.assertEqual(self.failureResultOf(d, ProbeError).value.reason,
                         "credentials rejected (401)")

    def test_no_credentials(self):
        """
        A registry that wants a login we do not have is an error, not a
        registry without the image.
        """
        registry = registry_config("https://reg.example")
        d = self.probe(registry, "reg.example/library/nginx:latest")
        self.assertIn("no credentials", self.failureResultOf(d, ProbeError).value.reason)


class BearerAuthTests(ProbeTestMixin, SynchronousTestCase):
    def setUp(self):
        ProbeTestMixin.setUp(self)
        self.fake = self.registries.add("hub.example", FakeRegistry(
            "bob", "bob-pw", scheme="bearer", realm="https://auth.example/token"))
        self.registries.add_token_service("auth.example", self.fake)
        self.fake.add(reference.parse("hub.example/library/nginx:latest"))
        self.registry = registry_config("https://hub.example", "bob", "bob-pw")

    def test_token_flow(self):
        """
        A Bearer challenge sends the login to the realm it names, then asks
        again with the token.
        """
        d = self.probe(self.registry, "hub.example/library/nginx:latest")
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.fake.seen, [
            ("HEAD", "/v2/library/nginx/manifests/latest", ""),
            ("GET", "token", self.fake.basic()),
            ("HEAD", "/v2/library/nginx/manifests/latest", "Bearer " + self.fake.token),
        ])

    def test_token_cached(self):
        """
        The token is reused for the same repository until it expires.
        """
        self.successResultOf(self.probe(self.registry, "hub.example/library/nginx:latest"))
        del self.fake.seen[:]
        self.successResultOf(self.probe(self.registry, "hub.example/library/nginx:latest"))
        self.assertEqual(len(self.fake.seen), 1)
        self.clock.advance(300)
        del self.fake.seen[:]
        self.successResultOf(self.probe(self.registry, "hub.example/library/nginx:latest"))
        self.assertEqual(len(self.fake.seen), 3)

    def test_refused_login(self):
        """
        The token service refusing the login is an error saying so.
        """
        registry = registry_config("https://hub.example", "bob", "wrong")
        d = self.probe(registry, "hub.example/library/nginx:latest")
        self.assertIn("refused", self.failureResultOf(d, ProbeError).value.reason)

    def test_plain_http_realm(self):
        """
        An https registry may not send our login to a plain-http realm.
        """
        self.fake.realm = "http://auth.example/token"
        d = self.probe(self.registry, "hub.example/library/nginx:latest")
        self.assertIn("not usable", self.failureResultOf(d, ProbeError).value.reason)
        self.assertNotIn("token", [path for _, path, _ in self.fake.seen])


class CredentialIsolationTests(ProbeTestMixin, SynchronousTestCase):
    def test_each_registry_gets_its_own(self):
        """
        Each registry only ever sees its own credentials.
        """
        one = self.registries.add("one.example", FakeRegistry("u1", "p1"))
        two = self.registries.add("two.example", FakeRegistry("u2", "p2"))
        for fake, host in [(one, "one.example"), (two, "two.example")]:
            fake.add(reference.parse(host + "/library/nginx:latest"))
        for host, user, password in [("one.example", "u1", "p1"), ("two.example", "u2", "p2")]:
            registry = registry_config("https://" + host, user, password)
            self.successResultOf(self.probe(registry, host + "/library/nginx:latest"))
        self.assertEqual({auth for _, _, auth in one.seen}, {"", one.basic()})
        self.assertEqual({auth for _, _, auth in two.seen}, {"", two.basic()})


class _Silent:
    """
    An HTTP client whose requests never get an answer.
    """

    def request(self, method, url, **kwargs):
        return Deferred()


class _Refused:
    """
    An HTTP client whose connections are refused.
    """

    def request(self, method, url, **kwargs):
        return fail(ConnectionRefusedError("Connection refused"))


class ConnectionTests(SynchronousTestCase):
    def test_timeout(self):
        """
        A registry that never answers fails the probe after the timeout,
        not before.
        """
        clock = Clock()
        prober = Prober(_Silent(), clock)
        d = prober.has_manifest(registry_config("https://slow.example"),
                                reference.parse("slow.example/a:1"), 2.0)
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProbeError).value.reason,
                         "no answer within 2s")

    def test_refused(self):
        """
        A refused connection is an error naming the cause.
        """
        prober = Prober(_Refused(), Clock())
        d = prober.has_manifest(registry_config("https://down.example"),
                                reference.parse("down.example/a:1"), 2.0)
        self.assertIn("ConnectionRefusedError", self.failureResultOf(d, ProbeError).value.reason)


class DescribeFailureTests(SynchronousTestCase):
    def test_wrapped_timeout(self):
        """
        A request cancelled by its timeout reaches the caller wrapped by
        twisted.web (ResponseNeverReceived): it still reads as a timeout.
        """
        wrapped = ResponseNeverReceived([Failure(CancelledError())])
        self.assertEqual(describe_failure(wrapped, 2), "no answer within 2s")
        self.assertEqual(describe_failure(ConnectionRefusedError("refused"), 2),
                         "ConnectionRefusedError: refused")
