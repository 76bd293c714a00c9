# -*- test-case-name: tests.sync.test_configfile -*-
"""
The config file on disk, read the one way the start, the reload and the
ConfigMap sync all use: whole but capped, with its permission bits, and a
warning when those bits show a password to other users.  Blocking: the
reactor runs L{read_config} on a thread.
"""

import os
import stat

from cri_shim.model.config import MAX_CONFIG_BYTES, Notice

#: Permission bits that show a file to other users, and what they mean.
EXPOSING = ((stat.S_IRGRP, "group-readable"), (stat.S_IROTH, "world-readable"),
            (stat.S_IWOTH, "world-writable"))


def read_config(path):
    """
    Read a config file.

    :return: C{(text, mode)}: at most C{MAX_CONFIG_BYTES + 1} bytes (so
        that L{cri_shim.model.reader.parse_yaml} tells a file too large, the
        same way for every reader) and the file's permission bits.
    :raise OSError: when it cannot be read.
    """
    with open(path, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        return f.read(MAX_CONFIG_BYTES + 1), mode


def mode_notices(mode, config):
    """
    :param mode: the config file's permission bits, from L{read_config}.
    :param config: the L{cri_shim.model.config.Config} it holds.
    :return: a warning, as a list of L{Notice}, when the file holds a
        password and other users may read it (or anyone may write it).
    """
    exposed = [name for bit, name in EXPOSING if mode & bit]
    if not exposed or not any(registry.credentials and registry.credentials.password
                              for registry in config.registries):
        return []
    return [Notice("warn", "holds a password and is {} (mode {:04o}); make it 0600".format(
        " and ".join(exposed), mode))]
