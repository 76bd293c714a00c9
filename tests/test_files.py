"""
Tests for L{cri_shim.files}: content, mode, failures, and the order
of the calls that make the write survive a crash.
"""

import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.files import write_atomically


class RecordingOS:
    """
    The C{os} module, recording the calls that matter to durability:
    C{("write", path)}, C{("fsync", path)}, C{("rename", old, new)} (paths
    of the files or folders their descriptors are open on).
    """

    path = os.path

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(os, name)

    def _name(self, fd):
        return os.readlink("/proc/self/fd/{}".format(fd))

    def write(self, fd, data):
        self.calls.append(("write", self._name(fd)))
        return os.write(fd, data)

    def fsync(self, fd):
        self.calls.append(("fsync", self._name(fd)))
        return os.fsync(fd)

    def rename(self, old, new):
        self.calls.append(("rename", old, new))
        return os.rename(old, new)


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

    def test_durable_order(self):
        """
        The temporary file is written and fsynced before it is renamed over
        the file, and the folder is fsynced after the rename: a crash at any
        point leaves the old content or the new, never an empty file.
        """
        with open(self.path, "wb") as f:
            f.write(b"old")
        system = RecordingOS()
        self.assertEqual(write_atomically(self.path, b"new", system=system), self.path)
        [temporary] = {call[1] for call in system.calls if call[0] == "write"}
        self.assertEqual(os.path.dirname(temporary), self.folder)
        self.assertEqual(system.calls[-3:], [
            ("fsync", temporary),
            ("rename", temporary, self.path),
            ("fsync", self.folder),
        ])
        self.assertEqual({call[0] for call in system.calls[:-3]}, {"write"})
