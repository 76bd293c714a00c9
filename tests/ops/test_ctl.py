"""
Tests for L{cri_shim.ops.ctl} without a shim: its defaults are the config's,
it finds the admin endpoint in a config file where the shim does, and it runs
on the standard library alone.  Its commands against a running shim are in
L{tests.ops.test_admin}.
"""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import cri_shim
from cri_shim.model import config, schema
from cri_shim.ops import ctl

# (the config's text, the admin endpoint in it)
ADMIN_LINES = [
    ("", config.DEFAULT_ADMIN_SOCKET),
    ("cri: /run/containerd/containerd.sock\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: /run/x/admin.sock\n", "/run/x/admin.sock"),
    ("admin:   /run/x/admin.sock   # the shim's\n", "/run/x/admin.sock"),
    ("admin: /run/x/a#b.sock\n", "/run/x/a#b.sock"),
    ("admin: \"/run/x/a #b.sock\"  # quoted\n", "/run/x/a #b.sock"),
    ("admin: '/run/x/admin.sock'\n", "/run/x/admin.sock"),
    ("admin: 127.0.0.1:9099\n", "127.0.0.1:9099"),
    ("admin: \"[::1]:9099\"\n", "[::1]:9099"),
    ("admin: /run/one.sock\nadmin: /run/two.sock\n", "/run/two.sock"),
    ("cri: /run/c.sock\r\nadmin: /run/x/crlf.sock\r\nshim: /run/s.sock\r\n",
     "/run/x/crlf.sock"),
    ("# admin: /run/x/commented.sock\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: false\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: no\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: ~\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin:\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: 9099\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: localhost:http\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: relative/admin.sock\n", config.DEFAULT_ADMIN_SOCKET),
    ("admin: \"/run/x/unclosed.sock\n", config.DEFAULT_ADMIN_SOCKET),
]


def shim_reads(text):
    """
    The admin endpoint the shim's own schema reads in C{text}, as the ctl
    used it: the default when the config is invalid or turns the endpoint off.
    """
    try:
        loaded, _ = schema.load(text)
    except config.ConfigError:
        return config.DEFAULT_ADMIN_SOCKET
    return loaded.admin or config.DEFAULT_ADMIN_SOCKET


class DefaultsTests(SynchronousTestCase):
    def test_defaults_are_the_configs(self):
        """
        The ctl's own default paths are the config's defaults.
        """
        self.assertEqual((ctl.DEFAULT_CONFIG_PATH, ctl.DEFAULT_ADMIN_SOCKET),
                         (config.DEFAULT_CONFIG_PATH, config.DEFAULT_ADMIN_SOCKET))


class AdminAddressTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", newline="") as f:
            f.write(text)
        return path

    def test_table_is_what_the_shim_reads(self):
        """
        Each expectation of L{ADMIN_LINES} is what the shim's schema reads.
        """
        self.assertEqual([shim_reads(text) for text, _ in ADMIN_LINES],
                         [expected for _, expected in ADMIN_LINES])

    def test_admin_address(self):
        """
        L{ctl.admin_address} finds the endpoint the shim reads, without a YAML
        parser.
        """
        self.assertEqual([ctl.admin_address(self.write(text)) for text, _ in ADMIN_LINES],
                         [expected for _, expected in ADMIN_LINES])

    def test_unreadable(self):
        """
        A config file that cannot be read means the default endpoint.
        """
        self.assertEqual(ctl.admin_address(self.mktemp()), config.DEFAULT_ADMIN_SOCKET)


class StandardLibraryTests(SynchronousTestCase):
    def test_runs_on_the_standard_library_alone(self):
        """
        Under C{python -S} (no site-packages: no attrs, YAML, Twisted or
        grpc), the ctl reads the endpoint from C{--config} and says it cannot
        reach it.
        """
        admin = "/nonexistent/image-cri-shim-ctl-test.sock"
        config_path = os.path.abspath(self.mktemp())
        with open(config_path, "w") as f:
            f.write("admin: {}\n".format(admin))
        tree = os.path.dirname(os.path.dirname(os.path.abspath(cri_shim.__file__)))
        run = subprocess.run(
            [sys.executable, "-S", "-c",
             "import sys; from cri_shim.ops import ctl; sys.exit(ctl.main(sys.argv[1:]))",
             "--config", config_path, "registries"],
            cwd=tree, capture_output=True, text=True, timeout=60)
        self.assertEqual(
            (run.returncode, run.stdout, run.stderr.splitlines()[:1]),
            (1, "", ["image-cri-shim-ctl: cannot reach the shim's admin endpoint {} "
                     "(No such file or directory)".format(admin)]))
