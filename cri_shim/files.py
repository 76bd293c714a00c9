# -*- test-case-name: tests.test_files -*-
"""
Replace a file atomically: a reader (or a crash, or a power cut) sees the old
content or the new, never a mix or an empty file.  Blocking: run it on a
thread.
"""

import os
import secrets
import tempfile


def write_atomically(path, data, mode=0o600, system=os):
    """
    Write C{data} to C{path}: a temporary file in the target's folder,
    created exclusively with C{mode}, written and fsynced, then renamed over
    the target, and the folder fsynced so the rename survives a crash.

    A symbolic link is followed: its target is replaced (the link stays a
    link) and keeps its owner and group.

    :param path: the file to replace.
    :param data: the new content, C{bytes}.
    :param mode: the new file's permission bits (0600: it holds secrets).
    :param system: the C{os} module (tests pass one that records calls).
    :return: the path of the file written: C{path} made absolute, with
        every symbolic link resolved.
    :raise OSError: when anything fails; the target is then untouched and no
        temporary file is left behind.
    """
    target = system.path.realpath(path)
    folder = system.path.dirname(target)
    try:
        status = system.stat(target)
    except FileNotFoundError:
        owner = None
    else:
        owner = (status.st_uid, status.st_gid)
    fd, temporary = tempfile.mkstemp(prefix="." + system.path.basename(target) + ".",
                                     dir=folder)
    try:
        try:
            system.fchmod(fd, mode)
            if owner is not None and owner != (system.geteuid(), system.getegid()):
                system.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[system.write(fd, view):]
            system.fsync(fd)
        finally:
            system.close(fd)
        system.rename(temporary, target)
    except BaseException:
        try:
            system.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory = system.open(folder, os.O_RDONLY)
    try:
        system.fsync(directory)
    finally:
        system.close(directory)
    return target


def replace_in(folder, name, data, mode=0o600, system=os):
    """
    Write C{data} to the file C{name} in an open folder, atomically as
    L{write_atomically} does, and never through a symbolic link: a link at
    C{name} is replaced by the file (its target is untouched), and the
    temporary file is created with C{O_EXCL|O_NOFOLLOW} under a random
    name, so a link planted there fails the write instead.

    :param folder: a descriptor of the folder, open for reading.
    :param name: the file's name in it.
    :param data: the new content, C{bytes}.
    :param mode: the new file's permission bits.
    :param system: the C{os} module (tests pass one that records calls).
    :raise OSError: when anything fails; the file is then untouched and no
        temporary file is left behind.
    """
    temporary = ".{}.{}".format(name, secrets.token_hex(8))
    fd = system.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode, dir_fd=folder)
    try:
        try:
            # The umask may have taken bits from C{mode}.
            system.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[system.write(fd, view):]
            system.fsync(fd)
        finally:
            system.close(fd)
        system.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            system.unlink(temporary, dir_fd=folder)
        except FileNotFoundError:
            pass
        raise
    system.fsync(folder)
