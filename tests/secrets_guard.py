"""
The suite-wide secret check: no password, token or base64 login the tests
put in play may ever show in a log event, on the test process's stdout or
stderr, or in a shim subprocess's log.

How it works
============

C{tests/__init__.py} calls L{install} when the package is imported under
trial, so it is on for every run of the suite (or of any part of it)
without a line in the tests themselves.  It installs:

  - B{A registry of secrets in play}, filled by:
      - every L{cri_shim.model.config.Secret} and L{cri_shim.model.config.Credentials}
        made in the test process (their constructors are wrapped): each
        password and token a test config, ConfigMap, kubeconfig or token
        file holds, once the shim's own code reads it, and the base64
        C{user:password} of each login;
      - the test doubles of L{cri_shim.testing} (L{FakeRegistry} logins and
        bearer tokens, L{FakeAPIServer} tokens and ConfigMap contents),
        through its C{register_secret} / C{register_config_text} hooks;
      - L{tests.e2e_support}: C{KUBELET_AUTH}, each L{ShimNode}'s logins
        (L{ShimNode.secrets}) and every config it writes for the shim;
      - any test, with L{register_secret}, L{register_login} or
        L{register_config_text}.
    Each value is also registered as JSON, URL and repr escaping would show
    it.  Values shorter than L{MIN_SECRET_LENGTH}, and plain lowercase
    words (C{secret}, C{password}), are ignored: they would match test
    names and prose everywhere.

  - B{A global log observer} (C{globalLogPublisher.addObserver}) that keeps
    the text of every event: its formatted text with traceback, and the
    repr of each of its fields (a JSON log observer would write those even
    when the format string does not show them).  Trial's C{--> test <--}
    event tells which test was running.

  - B{A tee of file descriptors 1 and 2}: each is replaced by a pipe (a raw
    pty when it was a terminal, so that trial still colours its output),
    and a thread copies what arrives to the original descriptor and keeps a
    copy.  Working at the descriptor level rather than on
    C{sys.stdout}/C{sys.stderr} catches what Python-level wrappers cannot:
    trial's reporter (it holds the C{sys.stdout} object of the moment it
    was imported), C-level writes such as grpc C-core's logging, and
    subprocesses that inherit the descriptors.

  - B{Shim subprocess logs}: L{ShimNode} registers its log file
    (L{register_log_file}) and copies it here when it cleans up
    (L{capture_log_file}), before the sandbox directory is deleted.  These
    files capture the shim's descriptors 1 and 2, so they also hold what
    its grpc C-core wrote.

The check (L{check}) searches all of that for every registered secret.
C{tests/test_zz_secrets.py} runs it last (trial runs modules in
alphabetical order) and fails, naming where each secret showed, with every
secret in the report replaced by C{<secret #N>}.  At exit, whatever was not
checked yet (trial's summary, or everything when C{test_zz_secrets} did not
run: a subset of the suite, C{--random} order) is checked again; a leak
there is reported on stderr and the exit status forced to 1.

Limits
======

  - Only registered values are looked for: a secret no fixture registers,
    and no config parsed in the test process holds, is not found (a secret
    known only to a subprocess, for instance).  When it was registered does
    not matter: everything is searched at the end.  Secrets shorter than
    L{MIN_SECRET_LENGTH} characters or made of lowercase letters only are
    not looked for, nor forms other than those listed (base64 of the
    password alone, say, or a secret split across two log events).
  - grpc C-core (and any C library) writes to descriptor 2 directly,
    bypassing C{sys.stderr}: wrappers of C{sys.stdout}/C{sys.stderr} would
    miss it.  The descriptor-level tee catches it in the test process, and
    the shim's log files catch it in the shim; C-level output of other
    processes is not looked at.
  - Other subprocesses' logs (containerd, the registries) are not checked:
    they are not the shim's, and containerd's own logging is not ours to
    fix.
  - Only the shim's log files registered through L{ShimNode} are read; a
    shim started another way is not covered.
  - With C{trial -j}, the workers' fd tee and exit check are off (their
    descriptors belong to trial's process protocol), and each worker checks
    only what it saw: C{test_zz_secrets} runs in one worker.
  - Output written after the process's last Python code runs (a fatal
    signal's C{faulthandler} dump, for instance) may be lost in the pipe.
  - Everything recorded is kept in memory until the process ends (a few
    MB for the whole suite).
  - Set C{ICS_SECRETS_GUARD=off} to switch it all off.
"""

import atexit
import base64
import bisect
import fcntl
import json
import os
import select
import struct
import sys
import termios
import threading
import time
import tty
import urllib.parse

#: Secrets shorter than this are not looked for (C{"pw"} is everywhere).
MIN_SECRET_LENGTH = 6
#: Characters of context shown on each side of a leak.
CONTEXT = 60
#: The longest field repr kept per log event field.
REPR_LIMIT = 20000
#: The most occurrences of one secret looked at per text searched.
MAX_HITS = 10000
#: How long the tee may take to pass on what was written before a check.
SYNC_TIMEOUT = 5.0
#: How long nothing must arrive for the tee to count as caught up.
QUIET = 0.05

_TRIAL_TEST_START = ("--> ", " <--")
#: Event fields not worth keeping: rendered already, or objects whose repr
#: says nothing (the logger, its source).
_SKIPPED_FIELDS = frozenset([
    "log_format", "format", "log_logger", "log_source", "log_time", "time", "log_level",
    "log_namespace", "log_system", "system", "isError", "log_trace", "log_io",
])


class Finding:
    """
    A secret seen where it must not be.

    :ivar where: the place (a log event, a stream, a file) and when.
    :ivar number: the secret's number in the registry.
    :ivar origin: who registered the secret.
    :ivar context: the text around its first occurrence there, every
        secret replaced by C{<secret #N>}.
    :ivar count: how many times it shows there.
    """

    def __init__(self, where, number, origin, context):
        self.where = where
        self.number = number
        self.origin = origin
        self.context = context
        self.count = 1

    def key(self):
        return (self.where, self.number)

    def __str__(self):
        return "{}: <secret #{}> ({}){}: ...{}...".format(
            self.where, self.number, self.origin,
            ", {} times".format(self.count) if self.count > 1 else "", self.context)


class Guard:
    """
    The registry, the records and the check.  L{GUARD} is the process's;
    tests of the guard itself make their own.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._secrets = {}          # value -> (number, origin)
        self._events = []           # (test, namespace, text)
        self._files = {}            # path -> (origin, [captured texts])
        self._reported = set()      # Finding keys reported already
        self._local = threading.local()
        self.tee = None
        self.current_test = None
        #: Whether L{check} ran (C{test_zz_secrets}).
        self.checked = False

    # -- the registry -----------------------------------------------------------

    def register_secret(self, value, origin="a test"):
        """
        Look for C{value} (and its JSON, URL and repr escapes) from now on.
        C{None}, non-strings and short values are ignored.
        """
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        if value.isalpha() and value.islower():
            # A plain word ("secret", "password"): test names and prose
            # hold it, so it cannot tell a leak.
            return
        variants = [value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
                    repr(value)[1:-1]]
        when = "during {}".format(self.current_test) if self.current_test else "outside tests"
        with self._lock:
            for variant in variants:
                if len(variant) >= MIN_SECRET_LENGTH and variant not in self._secrets:
                    self._secrets[variant] = (len(self._secrets) + 1,
                                              "{}, registered {}".format(origin, when))

    def register_login(self, username, password, origin="a test"):
        """
        Look for C{password} and the base64 C{username:password} a Basic
        C{Authorization} header (or a docker config C{auth}) holds.
        """
        if password is None:
            return
        self.register_secret(password, origin + " password")
        if isinstance(username, str) and isinstance(password, str):
            token = base64.b64encode("{}:{}".format(username, password).encode("utf-8"))
            self.register_secret(token.decode("ascii"), origin + " base64 login")

    def register_config_text(self, text, origin="a config"):
        """
        Register the passwords and tokens of a YAML or JSON document: shim
        configs (C{auth: user:password} or C{{username, password}}),
        kubeconfigs (C{token}), docker configs (base64 C{auth}).  Text that
        does not parse is ignored.
        """
        import yaml

        try:
            document = yaml.safe_load(text)
        except Exception:
            return
        self._walk(document, origin)

    def _walk(self, value, origin):
        if isinstance(value, list):
            for item in value:
                self._walk(item, origin)
            return
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            name = str(key).lower()
            if name == "auth" and isinstance(item, str):
                user, colon, password = item.partition(":")
                if colon:
                    self.register_login(user, password, origin)
                else:
                    self._register_base64_login(item, origin)
            elif name == "auth" and isinstance(item, dict):
                self.register_login(item.get("username"), item.get("password"), origin)
            elif name in ("password", "token", "identitytoken", "registrytoken") and \
                    isinstance(item, str):
                self.register_secret(item, "{} {}".format(origin, name))
            else:
                self._walk(item, origin)

    def _register_base64_login(self, text, origin):
        try:
            decoded = base64.b64decode(text, validate=True).decode("utf-8")
        except Exception:
            return
        user, colon, password = decoded.partition(":")
        if colon:
            self.register_secret(text, origin + " base64 login")
            self.register_login(user, password, origin)

    def register_log_file(self, path, origin="a log file"):
        """
        Check C{path} too: read at check time if it still exists, and
        whatever L{capture_log_file} kept of it.
        """
        with self._lock:
            self._files.setdefault(path, (origin, []))

    def capture_log_file(self, path):
        """
        Keep C{path}'s content now (before its folder is deleted).  Never
        raises.
        """
        try:
            with open(path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return
        when = " (kept at the cleanup of {})".format(self.current_test) \
            if self.current_test else ""
        with self._lock:
            origin, kept = self._files.setdefault(path, ("a log file", []))
            kept.append((when, data))

    def stats(self):
        """
        :return: a line saying how much the guard holds.
        """
        with self._lock:
            events = len(self._events)
            event_chars = sum(len(text) for _, _, text in self._events)
            files = len(self._files)
            kept = sum(len(kept) for _, kept in self._files.values())
            secrets = len(self._secrets)
        output = sum(len(text) for text in self.tee.captured().values()) \
            if self.tee is not None else 0
        return ("{} secret forms; {} log events ({} characters); {} characters of "
                "stdout and stderr; {} log files ({} copies kept)").format(
                    secrets, events, event_chars, output, files, kept)

    def secret_count(self):
        with self._lock:
            return len(self._secrets)

    def is_registered(self, value):
        with self._lock:
            return value in self._secrets

    # -- the records ------------------------------------------------------------

    def observe(self, event):
        """
        A log observer: keep the event's text.  Never raises.
        """
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            message = event.get("message")
            if isinstance(message, tuple) and len(message) == 1 and isinstance(message[0], str):
                start, end = _TRIAL_TEST_START
                if message[0].startswith(start) and message[0].endswith(end):
                    self.current_test = message[0][len(start):-len(end)]
            text = _event_text(event)
            with self._lock:
                self._events.append((self.current_test, event.get("log_namespace", "-"), text))
        except Exception:
            pass
        finally:
            self._local.busy = False

    def event_texts(self):
        with self._lock:
            return [text for _, _, text in self._events]

    # -- the check ----------------------------------------------------------------

    def findings(self):
        """
        :return: every L{Finding}, in the recorded events, the captured
            output and the log files.
        """
        if self.tee is not None:
            self.tee.sync()
        with self._lock:
            secrets = list(self._secrets.items())
            events = list(self._events)
            files = {path: (origin, list(kept)) for path, (origin, kept) in self._files.items()}
        if not secrets:
            return []
        found = []
        # Log events: one search per secret over all of them.
        offsets, parts, position = [], [], 0
        for _, _, text in events:
            offsets.append(position)
            parts.append(text)
            position += len(text) + 1
        joined = "\x00".join(parts)

        def event_place(offset):
            test, namespace, _ = events[bisect.bisect_right(offsets, offset) - 1]
            return "log event ({}) {}".format(
                namespace, "during " + test if test else "outside tests")

        found += self._search(joined, secrets, event_place)
        if self.tee is not None:
            for name, data in self.tee.captured().items():
                found += self._search(data, secrets, lambda offset, name=name: (
                    "the test process's {}".format(name)))
        for path, (origin, kept) in sorted(files.items()):
            texts = list(kept)
            try:
                with open(path, "rb") as f:
                    texts.append(("", f.read().decode("utf-8", "replace")))
            except OSError:
                pass
            for when, text in texts:
                found += self._search(text, secrets, lambda offset, when=when, path=path: (
                    "{} {}{}".format(origin, path, when)))
        return found

    def _search(self, text, secrets, place):
        """
        :return: one L{Finding} per place and secret found in C{text}.
        """
        found = []
        for value, (number, origin) in secrets:
            by_place = {}
            start, hits = text.find(value), 0
            while start >= 0 and hits < MAX_HITS:
                where = place(start)
                if where in by_place:
                    by_place[where].count += 1
                else:
                    context = text[max(0, start - CONTEXT):start + len(value) + CONTEXT]
                    by_place[where] = Finding(where, number, origin,
                                              self.redact(context, secrets))
                hits += 1
                start = text.find(value, start + len(value))
            found.extend(by_place.values())
        return found

    def redact(self, text, secrets=None):
        """
        :return: C{text} with every registered secret replaced by
            C{<secret #N>} (longest first).
        """
        if secrets is None:
            with self._lock:
                secrets = list(self._secrets.items())
        for value, (number, _) in sorted(secrets, key=lambda item: -len(item[0])):
            text = text.replace(value, "<secret #{}>".format(number))
        # A secret cut by the context's edges shows no more than part of it.
        return text.replace("\n", "\\n")

    def check(self):
        """
        :return: the findings not reported yet; they count as reported.
        """
        self.checked = True
        fresh = [f for f in self.findings() if f.key() not in self._reported]
        self._reported.update(f.key() for f in fresh)
        return fresh

    # -- at exit ------------------------------------------------------------------

    def at_exit(self):
        """
        Check what was not checked yet, restore descriptors 1 and 2, and
        force a failing exit status on a leak.
        """
        try:
            fresh = self.check()
        except Exception as e:  # never hide the run's own outcome
            fresh = []
            _flush()
            os.write(2, "secrets guard: the final check failed: {!r}\n".format(e).encode())
        if self.tee is not None:
            self.tee.restore()
        if fresh:
            _flush()
            report = "\nsecrets guard: FAIL: {} secret(s) leaked after the last check:\n{}\n" \
                .format(len(fresh), "\n".join("  " + str(f) for f in fresh))
            os.write(2, report.encode("utf-8", "replace"))
            os._exit(1)


def _event_text(event):
    from twisted.logger import eventAsText

    parts = [eventAsText(event, includeTraceback=True, includeTimestamp=False,
                         includeSystem=True)]
    for key in sorted(event, key=str):
        if key in _SKIPPED_FIELDS:
            continue
        try:
            shown = repr(event[key])
        except Exception:
            continue
        parts.append("{}={}".format(key, shown[:REPR_LIMIT]))
    return "\n".join(parts)


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


class FdTee:
    """
    Descriptors 1 and 2 through a pipe (or a raw pty for a terminal), copied
    to where they pointed and kept.
    """

    NAMES = {1: "stdout", 2: "stderr"}

    def __init__(self, fds=(1, 2)):
        self._lock = threading.Lock()
        self._saved = {}
        self._channels = {}         # read end -> (name, original fd copy)
        self._data = {}             # name -> bytearray
        self._idle = True
        self._stop = False
        _flush()
        for fd in fds:
            saved = os.dup(fd)
            read_end, write_end = self._channel(fd)
            os.dup2(write_end, fd)
            os.close(write_end)
            self._saved[fd] = saved
            self._channels[read_end] = (self.NAMES.get(fd, str(fd)), saved)
            self._data[self.NAMES.get(fd, str(fd))] = bytearray()
        self._thread = threading.Thread(target=self._pump, name="secrets-guard-tee",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _channel(fd):
        if os.isatty(fd):
            master, slave = os.openpty()
            tty.setraw(slave)
            try:
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            except OSError:
                pass
            return master, slave
        return os.pipe()

    def _pump(self):
        open_ends = set(self._channels)
        while open_ends:
            ready, _, _ = select.select(list(open_ends), [], [], 0.1)
            if not ready:
                if self._stop:
                    return
                continue
            for end in ready:
                self._idle = False
                try:
                    data = os.read(end, 65536)
                except OSError:     # EIO: a pty whose other side is closed
                    data = b""
                name, target = self._channels[end]
                if not data:
                    open_ends.discard(end)
                else:
                    with self._lock:
                        self._data[name] += data
                    _write_all(target, data)
                self._idle = True

    def _pending(self):
        total = 0
        for end in self._channels:
            try:
                total += struct.unpack("i", fcntl.ioctl(end, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                pass
        return total

    def sync(self, timeout=SYNC_TIMEOUT):
        """
        Wait until what was written so far is kept (bounded).
        """
        _flush()
        deadline = time.monotonic() + timeout
        quiet_since, size = time.monotonic(), self._size()
        # A pty passes data on asynchronously: wait for a quiet spell too.
        while self._thread.is_alive() and time.monotonic() < deadline:
            now = time.monotonic()
            if self._pending() or not self._idle or self._size() != size:
                quiet_since, size = now, self._size()
            elif now - quiet_since >= QUIET:
                return
            time.sleep(0.005)

    def _size(self):
        with self._lock:
            return sum(len(data) for data in self._data.values())

    def captured(self):
        """
        :return: C{{"stdout": text, "stderr": text}} kept so far.
        """
        with self._lock:
            return {name: bytes(data).decode("utf-8", "replace")
                    for name, data in self._data.items()}

    def restore(self):
        """
        Put the original descriptors back and stop the thread.
        """
        self.sync()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
        self._stop = True
        self._thread.join(2.0)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return      # the reader went away: keep recording all the same
        view = view[written:]


#: The process's guard.
GUARD = Guard()
register_secret = GUARD.register_secret
register_login = GUARD.register_login
register_config_text = GUARD.register_config_text
register_log_file = GUARD.register_log_file
capture_log_file = GUARD.capture_log_file
_installed = False


def _under_trial():
    return "twisted.scripts.trial" in sys.modules


def _trial_worker():
    main = getattr(sys.modules.get("__main__"), "__file__", "") or ""
    return "workertrial" in main or "twisted.trial._dist.workertrial" in sys.modules


def install():
    """
    Switch the guard on for this process (once; only under trial, unless
    C{ICS_SECRETS_GUARD=off}).

    :return: whether it is on.
    """
    global _installed
    if _installed:
        return True
    if os.environ.get("ICS_SECRETS_GUARD", "on").lower() in ("0", "off", "no", "false"):
        return False
    if not _under_trial():
        return False
    _installed = True

    from twisted.logger import globalLogPublisher

    from cri_shim.testing import hooks
    from cri_shim.model import config

    original_secret_init = config.Secret.__init__

    def secret_init(self, value):
        original_secret_init(self, value)
        GUARD.register_secret(value, "a cri_shim.model.config.Secret")

    config.Secret.__init__ = secret_init

    original_credentials_init = config.Credentials.__init__

    def credentials_init(self, *args, **kwargs):
        original_credentials_init(self, *args, **kwargs)
        password = self.password
        if isinstance(password, config.Secret):
            password = password.reveal()
        GUARD.register_login(self.username, password, "a cri_shim.model.config.Credentials")

    config.Credentials.__init__ = credentials_init
    hooks.register_secret = lambda value: GUARD.register_secret(value, "cri_shim.testing")
    hooks.register_config_text = lambda text: GUARD.register_config_text(
        text, "a cri_shim.testing ConfigMap")

    globalLogPublisher.addObserver(GUARD.observe)
    if not _trial_worker():
        GUARD.tee = FdTee()
        atexit.register(GUARD.at_exit)
    return True
