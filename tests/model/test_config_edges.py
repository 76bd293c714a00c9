"""
Edge cases of L{cri_shim.model.config} found by mutation testing (make
mutate): the defaults the README documents, configuration values that cannot
change once made, and the message when several runtime sockets exist.
"""

import attr
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema


class DocumentedDefaultsTests(SynchronousTestCase):
    """
    The defaults of the README's configuration reference.
    """

    def test_defaults(self):
        """
        An empty file means the documented defaults: health checks every
        10 s with a 2 s timeout, down after 3 failures and up after 1
        success; the ConfigMap C{kube-system/image-cri-shim}, key
        C{registries.yaml}; the admin socket C{/run/image-cri-shim/admin.sock};
        the config file is C{/etc/image-cri-shim.yaml}, as for the Go shim.
        """
        cfg, _ = schema.load(b"")
        self.assertEqual((cfg.health, cfg.configmap, cfg.admin, config.DEFAULT_CONFIG_PATH), (
            config.HealthCheck(interval=10.0, timeout=2.0, failure_threshold=3,
                               success_threshold=1),
            config.ConfigMapSource(enabled=True, namespace="kube-system", name="image-cri-shim",
                                   key="registries.yaml"),
            "/run/image-cri-shim/admin.sock",
            "/etc/image-cri-shim.yaml"))


class ImmutableTests(SynchronousTestCase):
    """
    A loaded configuration is shared by every worker thread and the reactor:
    none of its values can change.
    """

    def test_frozen(self):
        """
        Every value type of a configuration refuses to be changed.
        """
        cfg, notices = schema.load(b"""
registries:
- {address: https://a.example, auth: "u:p", insecureSkipVerify: true}
color: blue
""")
        [registry] = cfg.registries
        values = [cfg, cfg.cache, cfg.health, cfg.configmap, registry, registry.credentials,
                  registry.tls] + notices
        changed = []
        for value in values:
            name = attr.fields(type(value))[0].name
            try:
                setattr(value, name, None)
            except attr.exceptions.FrozenInstanceError:
                continue
            changed.append(type(value).__name__)
        self.assertEqual(changed, [])


class DetectCriTests(SynchronousTestCase):
    """
    L{config.detect_cri} with several sockets present.
    """

    def test_several(self):
        """
        Several runtime sockets are named, each, with what to do.
        """
        error = self.assertRaises(config.ConfigError, config.detect_cri, lambda path: True,
                                  ("/run/a.sock", "/run/b.sock"))
        self.assertEqual(error.problems, [
            "cri: found several CRI sockets (/run/a.sock, /run/b.sock); set cri to the one "
            "to use"])
