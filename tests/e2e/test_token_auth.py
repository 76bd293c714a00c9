"""
End-to-end tests of the Bearer token flow against a real token-auth
registry: the shim as a real C{twistd -n image-cri-shim} process in front of
a real containerd, the offline registry behind htpasswd (Basic), and a
C{registries:} entry that is a real C{docker-registry} with C{auth: token}
trusting a token issuer written for the tests (L{dev.token_auth}): signed
JWTs that the registry verifies, as Harbor or Docker Hub issue them.

The issuer records every token request (user, C{service}, C{scope}, client),
so the tests check what the shim asked for, not only that a pull worked.
"""

import functools
import shutil
import tempfile

import grpc
from twisted.trial import unittest

from dev.sandbox import SandboxError
from dev.token_auth import SERVICE, TokenIssuer, TokenRegistry, fetch_token
from tests import secrets_guard
from tests.e2e_support import ALICE, CALL_TIMEOUT, ShimNode, basic_token, skip_reason

#: The token registry's own login: it pushes the test images.
PUSHER = ("pusher", "pusher-pw-1")
#: The login the shim is given for the token registry: it may pull C{team/*}
#: and nothing else.
READER = ("carol", "c4rol-token-pw")
#: A password the issuer refuses for L{READER}'s user.
WRONG_PASSWORD = "not-c4rol-pw"
#: What containerd's token requests carry as C{User-Agent}.
CONTAINERD_AGENT = "containerd/"

for _login in (PUSHER, READER, (READER[0], WRONG_PASSWORD)):
    secrets_guard.register_login(*_login, origin="test_token_auth")


class TokenRegistryTests(unittest.SynchronousTestCase):
    """
    The token world itself, without the shim: the registry checks what the
    issuer signs, so the C{service} and C{scope} a client asks for matter.
    """

    def setUp(self):
        if shutil.which("docker-registry") is None:
            raise unittest.SkipTest("no docker-registry: apt-get install docker-registry")
        directory = tempfile.mkdtemp(prefix="ics-token-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory)
        self.registry = TokenRegistry(directory, username=PUSHER[0], password=PUSHER[1])
        self.addCleanup(self.registry.stop)
        self.issuer = self.registry.issuer
        self.issuer.add_user(*READER, repositories=("team/*",), actions=("pull",))
        self.registry.start()
        for repository in ("team/app", "private/app"):
            self.registry.push_image(repository, "v1", content=repository.encode())

    def head(self, service, scope, repository="team/app", issuer=None):
        """
        :return: the status of a manifest HEAD on C{repository:v1} with a
            token L{READER} got for C{service} and C{scope} from C{issuer}
            (by default the registry's).
        """
        token = fetch_token((issuer or self.issuer).realm, service, scope, *READER)
        return self.registry.request("HEAD", "/v2/{}/manifests/v1".format(repository),
                                     auth=False, headers={"Authorization": "Bearer " + token})[0]

    def test_registry_verifies_tokens(self):
        """
        A token for the registry's C{service} and a pull C{scope} on the
        repository opens it; one for another service, another repository,
        or from an issuer the registry does not trust is refused.
        """
        other = TokenIssuer()
        other.add_user(*READER)
        other.start()
        self.addCleanup(other.stop)

        self.assertEqual(self.head(SERVICE, "repository:team/app:pull"), 200)
        self.assertEqual(self.head("another-registry", "repository:team/app:pull"), 401)
        self.assertEqual(self.head(SERVICE, "repository:team/other:pull"), 401)
        self.assertEqual(self.head(SERVICE, "repository:team/app:pull", issuer=other), 401)

    def test_grants_per_user_and_repository(self):
        """
        The issuer grants only what the user may do where it may: L{READER}
        may pull C{team/*}, so it gets no push and nothing on C{private/app}.
        """
        self.assertEqual(self.head(SERVICE, "repository:team/app:pull,push"), 200)
        self.assertEqual(self.head(SERVICE, "repository:private/app:pull",
                                   repository="private/app"), 401)

        self.assertEqual([(r.username, r.granted) for r in self.issuer.requests()[-2:]],
                         [(READER[0], ("repository:team/app:pull",)), (READER[0], ())])

    def test_login_refused(self):
        """
        A wrong password gets no token, and the refusal is recorded.
        """
        with self.assertRaises(SandboxError):
            fetch_token(self.issuer.realm, SERVICE, "repository:team/app:pull",
                        READER[0], WRONG_PASSWORD)
        last = self.issuer.requests()[-1]
        self.assertEqual((last.method, last.username, last.status, last.token),
                         ("GET", READER[0], 401, None))


class TokenAuthTests(unittest.SynchronousTestCase):
    """
    Pulls through the shim from a registry that only takes Bearer tokens.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise unittest.SkipTest(reason)
        self.node = ShimNode(registries=(ALICE, functools.partial(
            TokenRegistry, username=PUSHER[0], password=PUSHER[1])))
        self.addCleanup(self.node.cleanup)
        self.registry = self.node.second
        self.issuer = self.registry.issuer
        self.issuer.add_user(*READER, repositories=("team/*",), actions=("pull",))
        self.node.start_sandbox()

    def start(self, login=READER, extra="", priorities=()):
        """
        Start the shim with C{login} for the token registry and
        C{debug: true}, and make a CRI client.
        """
        self.node.write_config(logins=[ALICE, login], debug=True, extra=extra,
                               priorities=priorities)
        self.node.start_shim()
        self.client = self.node.client()

    def pull(self, name):
        request = self.client.api.PullImageRequest(image=self.client.image(name))
        return self.client.PullImage(request, timeout=CALL_TIMEOUT)

    def shim_requests(self):
        """
        :return: the token requests the shim made (not the pusher's, not
            containerd's).
        """
        return [request for request in self.issuer.requests()
                if request.username != PUSHER[0]
                and not request.agent.startswith(CONTAINERD_AGENT)]

    def containerd_requests(self):
        """
        :return: the token requests containerd made.
        """
        return [request for request in self.issuer.requests()
                if request.agent.startswith(CONTAINERD_AGENT)]

    def assertNoSecretInLog(self):
        """
        Stop the shim: its whole output holds no password, no base64 login
        and no token the issuer gave out.

        :return: its output.
        """
        self.node.stop_shim()
        log = self.node.shim_log()
        tokens = [request.token for request in self.issuer.requests() if request.token]
        for token in tokens:
            secrets_guard.register_secret(token, "a token from dev.token_auth")
        secrets = self.node.secrets() + tokens + [
            READER[1], WRONG_PASSWORD, basic_token(*READER),
            basic_token(READER[0], WRONG_PASSWORD)]
        self.assertIn("PullImage", log)
        # Say which, not what: the report must not show the secret either.
        leaked = [number for number, secret in enumerate(secrets) if secret in log]
        self.assertEqual(leaked, [], "secrets (by index) in the shim's log")
        return log

    def test_pull_through_token_flow(self):
        """
        An image only the token registry holds is pulled from it: the shim
        asked the issuer once, with its configured login, for the registry's
        C{service} and a pull C{scope} on the image's repository, and got
        that access.
        """
        image = self.registry.push_image("team/app", "v1", content=b"token app")
        self.start()

        self.assertEqual(self.pull("team/app:v1").image_ref, image.config_digest)

        self.assertIn("{}/team/app:v1".format(self.registry.host),
                      self.node.containerd_images())
        [request] = self.shim_requests()
        scope = "repository:team/app:pull"
        self.assertEqual(
            (request.method, request.username, request.service, request.scopes,
             request.status, request.granted),
            ("GET", READER[0], SERVICE, (scope,), 200, (scope,)))
        self.assertNoSecretInLog()

    def test_runtime_pull_uses_token_flow(self):
        """
        containerd's own pull, given the token registry's login in the
        PullImage auth by the shim, goes through the token flow with that
        login and succeeds.
        """
        image = self.registry.push_image("team/app", "v1", content=b"token app")
        self.start()

        self.assertEqual(self.pull("team/app:v1").image_ref, image.config_digest)

        requests = self.containerd_requests()
        self.assertTrue(requests, self.issuer.requests())
        for request in requests:
            self.assertEqual((request.username, request.service, request.status),
                             (READER[0], SERVICE, 200))
            self.assertIn("repository:team/app:pull", request.granted)

    def test_token_reused_within_lifetime(self):
        """
        A second lookup on the same repository (another tag, so not a cached
        decision) reuses the shim's token; another repository needs a token
        of its own.
        """
        first = self.registry.push_image("team/app", "v1", content=b"token app 1")
        second = self.registry.push_image("team/app", "v2", content=b"token app 2")
        other = self.registry.push_image("team/other", "v1", content=b"token other")
        self.start()

        self.assertEqual(self.pull("team/app:v1").image_ref, first.config_digest)
        self.assertEqual(self.pull("team/app:v2").image_ref, second.config_digest)
        self.assertEqual(self.pull("team/other:v1").image_ref, other.config_digest)

        self.assertEqual([request.scopes for request in self.shim_requests()],
                         [("repository:team/app:pull",), ("repository:team/other:pull",)])

    def test_wrong_password_refused_cleanly(self):
        """
        With a password the issuer refuses and C{allowUpstream: false}, the
        pull is refused with NOT_FOUND naming the registries asked, the log
        says why, the runtime is never asked, and no secret shows in the
        log.
        """
        self.registry.push_image("team/app", "v1", content=b"token app")
        self.start(login=(READER[0], WRONG_PASSWORD), extra="allowUpstream: false\n")

        with self.assertRaises(grpc.RpcError) as caught:
            self.pull("team/app:v1")

        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn(self.registry.host, caught.exception.details())
        self.assertEqual([(r.username, r.service, r.status) for r in self.shim_requests()],
                         [(READER[0], SERVICE, 401)])
        self.assertEqual(self.containerd_requests(), [])
        self.assertEqual(self.node.containerd_images(), [])
        log = self.assertNoSecretInLog()
        self.assertIn("token service refused the credentials (401)", log)

    def test_repository_not_granted(self):
        """
        A repository the login may not pull counts as a refusal, not as
        absent: the shim asked for that repository's scope, got no access,
        and pulled the image from the next registry holding it.
        """
        self.registry.push_image("private/app", "v1", content=b"token private")
        offline = self.node.offline.push_image("private/app", "v1", content=b"offline private")
        self.start(priorities=[2000])

        self.assertEqual(self.pull("private/app:v1").image_ref, offline.config_digest)

        self.assertEqual([(r.scopes, r.status, r.granted) for r in self.shim_requests()],
                         [(("repository:private/app:pull",), 200, ())])
        self.assertIn("credentials rejected (401)", self.assertNoSecretInLog())
