# -*- test-case-name: tests.test_files -*-
"""
Replace a file atomically: a reader (or a crash, or a power cut) sees the old
content or the new, never a mix or an empty file.
"""

import os
import tempfile


def write_atomically(path, data, mode=0o600):
    """
    Write C{data} to C{path}: a temporary file in the same folder, created
    with C{mode}, written and fsynced, then renamed over C{path}, and the
    folder fsynced so the rename survives a crash.

    :param path: the file to replace.
    :param data: the new content, C{bytes}.
    :param mode: the new file's permission bits (0600: it holds secrets).
    :raise OSError: when anything fails; C{path} is then untouched and no
        temporary file is left behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
