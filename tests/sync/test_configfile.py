"""
Tests for L{cri_shim.sync.configfile}: the one reader of the config file,
and the warning about a password other users may read.
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.sync.configfile import mode_notices, read_config

WITH_PASSWORD = b"address: http://sealos.hub:5000\nauth: admin:pw\n"


class ReadConfigTests(SynchronousTestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.path = os.path.join(self.folder, "shim.yaml")

    def write(self, data, mode=0o600):
        with open(self.path, "wb") as f:
            f.write(data)
        os.chmod(self.path, mode)

    def test_text_and_mode(self):
        """
        The file's bytes and its permission bits.
        """
        self.write(WITH_PASSWORD, 0o640)
        self.assertEqual(read_config(self.path), (WITH_PASSWORD, 0o640))

    def test_capped(self):
        """
        At most one byte more than the limit is read, so that the parser
        says the file is too large, naming it.
        """
        self.write(b"# " + b"x" * (2 * config.MAX_CONFIG_BYTES))
        text, _ = read_config(self.path)
        self.assertEqual(len(text), config.MAX_CONFIG_BYTES + 1)
        error = self.assertRaises(config.ConfigError, schema.load, text, self.path)
        self.assertEqual(error.problems, ["{}: larger than {} bytes".format(
            self.path, config.MAX_CONFIG_BYTES)])

    def test_missing(self):
        """
        A missing file is an C{OSError} (the callers say why).
        """
        self.assertRaises(FileNotFoundError, read_config, self.path)


class ModeNoticesTests(SynchronousTestCase):
    def notices(self, mode, text=WITH_PASSWORD):
        return [(n.level, n.message) for n in mode_notices(mode, schema.load(text)[0])]

    def test_exposed(self):
        """
        A password in a file other users may read, or anyone may write, is
        warned about with the mode.
        """
        self.assertEqual(self.notices(0o644), [(
            "warn", "holds a password and is group-readable and world-readable (mode 0644); "
            "make it 0600")])
        self.assertEqual(self.notices(0o640), [(
            "warn", "holds a password and is group-readable (mode 0640); make it 0600")])
        self.assertEqual(self.notices(0o602), [(
            "warn", "holds a password and is world-writable (mode 0602); make it 0600")])

    def test_quiet(self):
        """
        A private file, or one without a password, is not warned about.
        """
        self.assertEqual(self.notices(0o600), [])
        self.assertEqual(self.notices(0o620), [])
        self.assertEqual(self.notices(0o644, b"address: http://sealos.hub:5000\n"), [])
        self.assertEqual(self.notices(0o644, b"address: http://h:5000\nauth: {username: admin}\n"), [])
