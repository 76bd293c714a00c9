"""
Tests for L{cri_shim.files}.
"""

import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.files import write_atomically


class WriteAtomicallyTests(SynchronousTestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.path = os.path.join(self.folder, "shim.yaml")

    def test_replaces_with_mode(self):
        """
        The file gets the new content and mode 0600, whatever the old mode.
        """
        with open(self.path, "wb") as f:
            f.write(b"old")
        os.chmod(self.path, 0o644)
        write_atomically(self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.folder), ["shim.yaml"])

    def test_failure_keeps_old(self):
        """
        When the write fails (here: the rename target is a folder), the old
        file is untouched and no temporary file is left.
        """
        os.mkdir(self.path)
        self.assertRaises(OSError, write_atomically, self.path, b"new")
        self.assertEqual(os.listdir(self.folder), ["shim.yaml"])

    def test_read_only_folder(self):
        """
        A folder that cannot be written fails cleanly, leaving the file.
        """
        with open(self.path, "wb") as f:
            f.write(b"old")
        missing = os.path.join(self.folder, "gone", "shim.yaml")
        self.assertRaises(OSError, write_atomically, missing, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
