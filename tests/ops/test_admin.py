"""
Tests for L{cri_shim.ops.admin}, L{cri_shim.metrics} and L{cri_shim.ops.ctl}
against a running shim (real containerd and registries): the metrics after
known traffic, parsed by prometheus_client's parser; the health endpoints;
every ctl command.
"""

import io
import os
import stat
from contextlib import redirect_stdout

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from cri_shim.ops import ctl
from tests import e2e_support
from tests.security.test_security import _wait_until


def samples(text):
    """
    :return: C{{(name, frozenset(labels.items())): value}} of a scrape.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


class AdminEndpointTests(SynchronousTestCase):
    def setUp(self):
        reason = e2e_support.skip_reason()
        if reason:
            raise SkipTest(reason)
        self.node = e2e_support.ShimNode()
        self.addCleanup(self.node.cleanup)
        self.node.start_sandbox()
        self.pushed = self.node.offline.push_image("library/nginx", "latest")
        self.node.write_config()
        self.node.start_shim()
        self.client = self.node.client()
        self.api = self.client.api

    def ctl(self, *argv):
        out = io.StringIO()
        with redirect_stdout(out):
            status = ctl.main(["--admin", self.node.admin] + list(argv))
        return status, out.getvalue()

    def test_metrics_after_traffic(self):
        """
        After one pull and three ImageStatus calls, the counters say so;
        the text parses as Prometheus exposition format.
        """
        self.client.PullImage(self.api.PullImageRequest(
            image=self.api.ImageSpec(image="nginx:latest")), timeout=30)
        for _ in range(3):
            self.client.ImageStatus(self.api.ImageStatusRequest(
                image=self.api.ImageSpec(image="nginx:latest")), timeout=30)
        self.client.Version(self.api.VersionRequest(), timeout=30)
        found = samples(ctl.ask(self.node.admin, "GET", "/metrics"))
        image = "runtime.v1.ImageService"
        self.assertEqual(found[("image_cri_shim_calls_total", frozenset(
            {"service": image, "method": "ImageStatus", "code": "OK"}.items()))], 3)
        self.assertEqual(found[("image_cri_shim_calls_total", frozenset(
            {"service": image, "method": "PullImage", "code": "OK"}.items()))], 1)
        self.assertEqual(found[("image_cri_shim_calls_total", frozenset(
            {"service": "runtime.v1.RuntimeService", "method": "Version",
             "code": "OK"}.items()))], 1)
        self.assertEqual(found[("image_cri_shim_call_duration_seconds_count", frozenset(
            {"service": image, "method": "ImageStatus"}.items()))], 3)
        self.assertEqual(found[("image_cri_shim_rewrites_total", frozenset(
            {"action": "PullImage", "outcome": "probe",
             "registry": self.node.offline.host}.items()))], 1)
        self.assertEqual(found[("image_cri_shim_cache_hits_total", frozenset())], 3)
        self.assertEqual(found[("image_cri_shim_registry_up", frozenset(
            {"registry": self.node.offline.host}.items()))], 1)
        self.assertEqual(found[("image_cri_shim_cache_entries", frozenset())], 1)
        for secret in self.node.secrets():
            self.assertNotIn(secret, str(found))

    def test_health_endpoints(self):
        """
        /healthz answers; /readyz answers once the runtime does, and says
        503 once it does not (the runtime's answer is reused for a second).
        """
        self.assertEqual(ctl.ask(self.node.admin, "GET", "/healthz"), "ok\n")
        self.assertEqual(ctl.ask(self.node.admin, "GET", "/readyz"), "ready\n")
        self.node.containerd.stop()
        errors = []

        def refused():
            try:
                ctl.ask(self.node.admin, "GET", "/readyz")
            except ctl.AdminError as e:
                errors.append(e)
            return bool(errors)
        _wait_until(refused, lambda: "/readyz still answers ready")
        self.assertIn("503", str(errors[0]))

    def test_socket_mode(self):
        """
        The admin socket is only for root.
        """
        self.assertEqual(stat.S_IMODE(os.stat(self.node.admin).st_mode), 0o600)

    def test_ctl_commands(self):
        """
        explain, registries, cache flush and reload work against the running
        shim, and show no password.
        """
        status, text = self.ctl("explain", "nginx")
        self.assertEqual(status, 0)
        self.assertIn("pull {}/library/nginx:latest from {}".format(
            self.node.offline.host, self.node.offline.host), text)
        self.assertIn("login 'alice' (password redacted)", text)
        status, text = self.ctl("registries")
        self.assertEqual(status, 0)
        self.assertIn(self.node.offline.host + " *", text)
        self.assertIn(self.node.second.host, text)
        status, text = self.ctl("cache", "flush")
        self.assertEqual((status, text), (0, "flushed 1 cached decisions\n"))
        status, text = self.ctl("reload")
        self.assertEqual(status, 0)
        self.assertIn("unchanged", text)
        self.node.write_config(priorities=[5000])
        status, text = self.ctl("reload")
        self.assertEqual((status, text), (0, "reloaded\n"))
        status, text = self.ctl("--json", "registries")
        self.assertIn('"priority": 5000', text)
        log = self.node.shim_log()
        for secret in self.node.secrets():
            self.assertNotIn(secret, log)

    def test_ctl_explain_for_pod(self):
        """
        C{explain --namespace NS --label k=v} shows the pod, which
        restricted registries' rules match it, and decides for it; a label
        without C{=} is refused.
        """
        # The last registries: entry gets the restriction.
        self.node.write_config(self.node.config_text(extra="    namespaces: [team-a]\n"))
        self.assertEqual(self.ctl("reload"), (0, "reloaded\n"))
        second = self.node.second.host
        status, text = self.ctl("explain", "nginx", "--namespace", "team-a", "--label",
                                "tier=gpu")
        self.assertEqual(status, 0)
        self.assertIn("pod        namespace team-a labels tier=gpu", text)
        self.assertRegex(text, r"rule +{} +matches +namespaces team-a podSelector \(any\)"
                         .format(second))
        self.assertIn(second + "/library/nginx:latest", text)
        status, text = self.ctl("explain", "nginx")
        self.assertIn("pod        none (as crictl or a pre-pull)", text)
        self.assertRegex(text, r"rule +{} +no match".format(second))
        self.assertNotIn(second + "/library/nginx:latest", text)
        status, _ = self.ctl("explain", "nginx", "--label", "oops")
        self.assertEqual(status, 1)

    def test_ctl_unreachable(self):
        """
        A shim that is not running is a clear error, exit 1.
        """
        self.node.stop_shim()
        status, _ = self.ctl("registries")
        self.assertEqual(status, 1)
