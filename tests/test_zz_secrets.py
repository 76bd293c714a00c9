"""
The suite-wide secret check (L{tests.secrets_guard}), run last: trial runs
test modules in alphabetical order.

L{FinalCheckTests.test_no_secret_leaked} fails if any secret registered
during the run showed in a log event, on the test process's stdout or
stderr, or in a shim subprocess's log.  The other tests show that what the
check relies on is in place, and that it finds a leak when there is one
(on a private L{secrets_guard.Guard}, so as not to leak for real).
"""

import os
import time

from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from cri_shim.model import schema
from tests import secrets_guard

GUARD = secrets_guard.GUARD


def _require_guard():
    if not secrets_guard._installed:
        raise SkipTest("the secret check is off (ICS_SECRETS_GUARD=off, or not under trial)")


class FinalCheckTests(SynchronousTestCase):
    """
    The check over everything the run recorded so far.
    """

    def setUp(self):
        _require_guard()

    def test_no_secret_leaked(self):
        """
        No registered secret shows in any log event, in the test process's
        stdout or stderr, or in any shim log.
        """
        started = time.monotonic()
        findings = GUARD.check()
        Logger().info("secret check: {stats}; {seconds:.1f} s", stats=GUARD.stats(),
                      seconds=time.monotonic() - started)
        if findings:
            self.fail("{} secret(s) leaked (each shown as <secret #N>):\n{}".format(
                len(findings), "\n".join("  " + str(f) for f in findings)))


class MachineryTests(SynchronousTestCase):
    """
    What the final check relies on is in place in this process.
    """

    def setUp(self):
        _require_guard()

    def test_observer_installed(self):
        """
        The guard observes the global log publisher: an event logged now is
        recorded.
        """
        marker = "secrets-guard-canary-" + os.urandom(8).hex()
        Logger().info("canary {marker}", marker=marker)
        self.assertTrue(any(marker in text for text in GUARD.event_texts()))

    def test_descriptors_teed(self):
        """
        What is written straight to descriptors 1 and 2 (as grpc C-core
        does, past Python's C{sys.stderr}) is kept.
        """
        if GUARD.tee is None:
            raise SkipTest("no fd tee in a trial -j worker")
        marker = "secrets-guard-canary-" + os.urandom(8).hex()
        os.write(1, "({}: the secret check's fd 1 test)\n".format(marker).encode())
        os.write(2, "({}: the secret check's fd 2 test)\n".format(marker).encode())
        GUARD.tee.sync()
        captured = GUARD.tee.captured()
        self.assertIn(marker + ": the secret check's fd 1 test", captured["stdout"])
        self.assertIn(marker + ": the secret check's fd 2 test", captured["stderr"])

    def test_config_secrets_registered(self):
        """
        A password and login read by the shim's config code in this process
        are looked for from then on.
        """
        password = "registered-" + os.urandom(8).hex()
        schema.load("address: http://sealos.hub:5000\nauth: someone:{}\n".format(password))
        self.assertTrue(GUARD.is_registered(password))
        self.assertTrue(GUARD.is_registered(secrets_guard.base64.b64encode(
            "someone:{}".format(password).encode()).decode()))

    def test_fixture_secrets_registered(self):
        """
        The e2e fixtures' logins (kubelet's at least, registered when
        L{tests.e2e_support} is imported) are looked for.
        """
        from tests import e2e_support

        self.assertTrue(GUARD.is_registered(e2e_support.KUBELET_AUTH[1]))
        self.assertTrue(GUARD.is_registered(e2e_support.basic_token(*e2e_support.KUBELET_AUTH)))


class GuardTests(SynchronousTestCase):
    """
    A private guard finds leaks, and reports them without the secret.
    """

    def setUp(self):
        self.guard = secrets_guard.Guard()
        self.secret = "s3cr3t-" + os.urandom(8).hex()

    def test_log_event_leak_found(self):
        """
        A secret in a log event's text or in one of its fields is found;
        the report names the test running and hides the secret.
        """
        self.guard.register_login("user", self.secret, "a test login")
        self.guard.observe({"message": ("--> tests.fake.Case.test_it <--",),
                            "log_namespace": "trial"})
        self.guard.observe({"log_format": "pulled with {password}", "password": self.secret,
                            "log_namespace": "cri_shim.x"})
        self.guard.observe({"log_format": "nothing shown", "extra": {"auth": self.secret},
                            "log_namespace": "cri_shim.y"})
        findings = self.guard.check()
        self.assertEqual(sorted({f.where for f in findings}), [
            "log event (cri_shim.x) during tests.fake.Case.test_it",
            "log event (cri_shim.y) during tests.fake.Case.test_it"])
        for finding in findings:
            self.assertNotIn(self.secret, str(finding))
            self.assertIn("<secret #1>", str(finding))
        # Reported once only.
        self.assertEqual(self.guard.check(), [])

    def test_base64_login_found(self):
        """
        The base64 C{user:password} of a registered login is found, as a
        Basic header shows it.
        """
        self.guard.register_login("user", self.secret)
        token = secrets_guard.base64.b64encode("user:{}".format(self.secret).encode()).decode()
        self.guard.observe({"log_format": "Authorization: Basic " + token.replace("{", "{{")})
        self.assertEqual(len(self.guard.check()), 1)

    def test_config_text(self):
        """
        Passwords and tokens of shim configs, ConfigMaps, kubeconfigs and
        docker configs are registered; short ones are not.
        """
        token = secrets_guard.base64.b64encode(b"d:docker-pw-1").decode()
        self.guard.register_config_text(
            "auth: a:{0}-a\nregistries:\n  - auth: {{username: b, password: {0}-b}}\n"
            "users: [{{user: {{token: {0}-t}}}}]\nauths: {{h: {{auth: {1}}}}}\n"
            "sealos: {{auth: short}}\n".format(self.secret, token))
        for value in (self.secret + "-a", self.secret + "-b", self.secret + "-t", token,
                      "docker-pw-1"):
            self.assertTrue(self.guard.is_registered(value), value)
        self.assertFalse(self.guard.is_registered("short"))

    def test_escaped_forms(self):
        """
        A secret is also looked for as JSON and URL encoding show it.
        """
        for shown in ('"p\\"w/1:2 x"', "p%22w%2F1%3A2%20x"):
            guard = secrets_guard.Guard()
            guard.register_secret('p"w/1:2 x')
            guard.observe({"log_format": "{x}", "x": shown})
            self.assertTrue(guard.check(), shown)

    def test_log_file_leak_found(self):
        """
        A secret in a registered log file is found, in what was kept of it
        at cleanup after the file itself is gone.
        """
        path = self.mktemp()
        self.guard.register_secret(self.secret)
        self.guard.register_log_file(path, "the shim's log")
        with open(path, "w") as f:
            f.write("2024 [-] PullImage with password {}\n".format(self.secret))
        self.guard.capture_log_file(path)
        os.unlink(path)
        findings = self.guard.check()
        self.assertEqual(len(findings), 1)
        self.assertIn(path, findings[0].where)
        self.assertIn("<secret #1>", findings[0].context)

    def test_clean_record_passes(self):
        """
        Records without a secret give no finding; short values are not
        secrets (they would match everywhere).
        """
        self.guard.register_secret("pw")
        self.guard.register_secret(self.secret)
        self.guard.observe({"log_format": "pw is not {what}", "what": "a secret"})
        self.assertEqual(self.guard.check(), [])

    def test_observer_never_raises(self):
        """
        An event whose fields cannot be shown is still recorded, and the
        observer does not raise.
        """
        class Bad:
            def __repr__(self):
                raise RuntimeError("no repr")

        self.guard.observe({"log_format": "{bad}", "bad": Bad()})
        self.assertEqual(len(self.guard.event_texts()), 1)

    def test_observer_on_publisher(self):
        """
        Added to a publisher, the private guard records what is logged.
        """
        globalLogPublisher.addObserver(self.guard.observe)
        self.addCleanup(globalLogPublisher.removeObserver, self.guard.observe)
        self.guard.register_secret(self.secret)
        Logger().info("not a secret")
        self.assertEqual(self.guard.check(), [])
        self.assertTrue(self.guard.event_texts())
