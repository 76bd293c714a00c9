# -*- test-case-name: tests.model.test_config,tests.model.test_reader_edges -*-
"""
A validating reader of YAML documents: safe, size-capped parsing, and typed
reads of a mapping's keys (matched case-insensitively, as the Go shim's JSON
decoding does) that collect every problem, each naming its key, instead of
stopping at the first.  The config schema and the ConfigMap merge both read
through it.
"""

import yaml

from cri_shim.model.config import (
    MAX_CONFIG_BYTES, MAX_PRIORITY, ConfigError, Credentials, Notice, Secret, TLS)
from cri_shim.model.duration import DurationError, format_duration, parse_duration


class Reader:
    """
    Collects problems and notices while reading one document.
    """

    def __init__(self):
        self.problems = []
        self.notices = []

    def problem(self, key, message):
        self.problems.append("{}: {}".format(key, message))

    def warn(self, message):
        self.notices.append(Notice("warn", message))

    def info(self, message):
        self.notices.append(Notice("info", message))

    def mapping(self, value, key, known, legacy=()):
        """
        Match a mapping's keys case-insensitively against C{known}.

        :return: a dict keyed by the canonical names, or C{None} if
            C{value} is not a mapping.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, "expected a mapping, got {}".format(kind(value)))
            return None
        canonical = {name.lower(): name for name in known}
        result = {}
        for raw, item in value.items():
            where = join(key, raw)
            if not isinstance(raw, str):
                self.warn("ignoring unknown key {}".format(where))
                continue
            name = canonical.get(raw.lower())
            if name is not None and name in result:
                self.warn("{} is given more than once; the last one is used".format(
                    join(key, name)))
            if name is None:
                if raw.lower() in legacy:
                    self.info("ignoring legacy key {} (not used by this shim)".format(where))
                else:
                    self.warn("ignoring unknown key {}".format(where))
                continue
            result[name] = item
        return result

    def string(self, section, name, key, default=""):
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, (bool, list, dict)) or not isinstance(value, (str, int, float)):
            self.problem(key, "expected a string, got {}".format(kind(value)))
            return default
        return str(value).strip()

    def boolean(self, section, name, key, default=False):
        value = section.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, "expected true or false, got {}".format(describe(value)))
            return default
        return value

    def integer(self, section, name, key, default):
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, "expected a whole number, got {}".format(describe(value)))
            return default
        return value

    def duration(self, section, name, key, default, minimum=None):
        """
        Read a Go-style duration; values <= 0 mean the default, as in the Go
        shim.  C{minimum} rejects positive values that are too small to be
        sane for the key.
        """
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return default
        if not isinstance(value, str):
            self.problem(key, "expected a duration such as '15s' or '5m', got {}".format(
                describe(value)))
            return default
        try:
            seconds = parse_duration(value)
        except DurationError as e:
            self.problem(key, str(e))
            return default
        if seconds <= 0:
            return default
        if minimum is not None and seconds < minimum:
            self.problem(key, "must be at least {}, got {!r}".format(
                format_duration(minimum), value))
            return default
        return seconds

    def priority(self, section, name, key, default):
        value = self.integer(section, name, key, default)
        if value == 0:
            return default
        if value < 0:
            self.warn("{}: {} is below 0; using 0".format(key, value))
            return 0
        if value > MAX_PRIORITY:
            self.warn("{}: {} is above {}; using {}".format(
                key, value, MAX_PRIORITY, MAX_PRIORITY))
            return MAX_PRIORITY
        return value

    def socket_path(self, section, name, key, default):
        path = self.string(section, name, key, default)
        if path.startswith("unix://"):
            path = path[len("unix://"):]
        if path and not path.startswith("/"):
            self.problem(key, "must be an absolute path, got {!r}".format(path))
            return default
        return path

    def credentials(self, value, key):
        """
        Read C{auth}: either C{"user:password"} (split on the FIRST colon, so
        passwords may hold colons) or a mapping C{{username, password}}.
        """
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            section = self.mapping(value, key, ("username", "password"))
            if section is None:
                return None
            username = section.get("username")
            password = section.get("password")
            for field, item in (("username", username), ("password", password)):
                if item is not None and not isinstance(item, str):
                    self.problem(join(key, field), "expected a string, got {}".format(
                        kind(item)))
                    return None
            if not username and not password:
                return None
            return Credentials(username or "", Secret(password or ""))
        if not isinstance(value, str):
            self.problem(key, "expected 'user:password', got {}".format(kind(value)))
            return None
        if not value.strip():
            return None
        username, colon, password = value.partition(":")
        if not colon:
            self.warn("{}: no ':' in the value; using it as a user name with an empty "
                      "password".format(key))
        return Credentials(username, Secret(password))

    def tls(self, section, key):
        insecure = self.boolean(section, "insecureSkipVerify", join(key, "insecureSkipVerify"))
        files = {}
        for name in ("caFile", "certFile", "keyFile"):
            files[name] = self.socket_path(section, name, join(key, name), "") or None
        if bool(files["certFile"]) != bool(files["keyFile"]):
            self.problem(join(key, "certFile"), "certFile and keyFile must be set together")
        return TLS(insecure, files["caFile"], files["certFile"], files["keyFile"])


def parse_yaml(text, source):
    """
    Parse a YAML document of at most L{MAX_CONFIG_BYTES}, safely.

    :return: the document.
    :raise ConfigError: saying what is wrong and where, without quoting the
        document (it may hold passwords).
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(["{}: larger than {} bytes".format(source, MAX_CONFIG_BYTES)])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(["{}: not UTF-8 text ({})".format(source, e)])
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(["{}: invalid YAML: {}".format(source, _yaml_problem(e))])
    except RecursionError:
        raise ConfigError(["{}: invalid YAML: nested too deeply".format(source)])



def join(key, name):
    return "{}.{}".format(key, name) if key else str(name)


def kind(value):
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def describe(value):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return kind(value)


def _yaml_problem(error):
    """
    Describe a YAML error by its problem and position only: PyYAML's own
    message quotes the offending line, which may hold a password.
    """
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        return "{} (line {}, column {})".format(problem, mark.line + 1, mark.column + 1)
    return " ".join(str(error).split())
