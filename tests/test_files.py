"""
Tests for L{cri_shim.files}: content, mode, failures, the order of the
calls that make the write survive a crash, and links never followed by
L{replace_in}.
"""

import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.files import replace_in, write_atomically


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


class _FolderRecordingOS(RecordingOS):
    """
    L{RecordingOS} for calls on names in a folder (C{dir_fd}); C{plant}, if
    set, is called with the name of every file opened, before it is.
    """

    plant = None

    def open(self, name, flags, mode=0o777, dir_fd=None):
        if self.plant is not None:
            self.plant(name)
        return os.open(name, flags, mode, dir_fd=dir_fd)

    def rename(self, old, new, src_dir_fd=None, dst_dir_fd=None):
        self.calls.append(("rename", old, new))
        return os.rename(old, new, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


class ReplaceInTests(SynchronousTestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.folder = os.path.join(self.root, "state")
        os.mkdir(self.folder, 0o700)
        self.fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, self.fd)
        self.path = os.path.join(self.folder, "names.json")
        self.victim = os.path.join(self.root, "shadow")
        with open(self.victim, "wb") as f:
            f.write(b"root only")
        os.chmod(self.victim, 0o600)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_replaces_with_mode(self):
        """
        The file gets the new content and the mode asked for, whatever the
        umask; no temporary file is left.
        """
        previous = os.umask(0o777)
        try:
            replace_in(self.fd, "names.json", b"new", 0o640)
        finally:
            os.umask(previous)
        self.assertEqual(self.read(self.path), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(os.listdir(self.folder), ["names.json"])

    def test_link_replaced_not_followed(self):
        """
        A symbolic link at the name is replaced by the file; its target
        keeps its content.
        """
        os.symlink(self.victim, self.path)
        replace_in(self.fd, "names.json", b"new")
        self.assertEqual(self.read(self.victim), b"root only")
        self.assertFalse(os.path.islink(self.path))
        self.assertEqual(self.read(self.path), b"new")

    def test_link_at_temporary_name(self):
        """
        A symbolic link planted at the temporary file's name (here, just
        before it is opened) fails the write: nothing is written through it,
        the file is untouched, and the link is left as it is.
        """
        with open(self.path, "wb") as f:
            f.write(b"old")
        system = _FolderRecordingOS()
        planted = []

        def plant(name):
            os.symlink(self.victim, os.path.join(self.folder, name))
            planted.append(name)

        system.plant = plant
        self.assertRaises(FileExistsError, replace_in, self.fd, "names.json", b"new",
                          system=system)
        self.assertEqual(self.read(self.victim), b"root only")
        self.assertEqual(self.read(self.path), b"old")
        self.assertEqual(sorted(os.listdir(self.folder)), sorted(["names.json"] + planted))
        self.assertTrue(planted[0].startswith(".names.json."))

    def test_failure_keeps_old(self):
        """
        When the rename fails (the name is a folder that is not empty), no
        temporary file is left.
        """
        os.mkdir(self.path)
        os.mkdir(os.path.join(self.path, "x"))
        self.assertRaises(OSError, replace_in, self.fd, "names.json", b"new")
        self.assertEqual(os.listdir(self.folder), ["names.json"])

    def test_durable_order(self):
        """
        The temporary file is written and fsynced before it is renamed over
        the file, and the folder is fsynced after the rename.
        """
        system = _FolderRecordingOS()
        replace_in(self.fd, "names.json", b"new", system=system)
        [temporary] = {call[1] for call in system.calls if call[0] == "write"}
        name = os.path.basename(temporary)
        self.assertEqual(system.calls[-3:], [
            ("fsync", temporary),
            ("rename", name, "names.json"),
            ("fsync", self.folder),
        ])
        self.assertEqual({call[0] for call in system.calls[:-3]}, {"write"})
