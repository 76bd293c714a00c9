# -*- test-case-name: tests.ops.test_admin -*-
"""
Prometheus metrics without a dependency: counters and histograms that any
thread may update (one short lock each), gauges read at scrape time, and the
text exposition format.
"""

import threading
import time

import grpc

#: Latency buckets in seconds, from a relayed call (~0.3 ms) to a long pull.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, 300.0)


class Counter:
    """
    A counter family: C{inc(labels...)}.
    """

    kind = "counter"

    def __init__(self, name, help, labels=()):
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._values = {}
        self._lock = threading.Lock()

    def inc(self, *labels, amount=1):
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def samples(self):
        with self._lock:
            items = sorted(self._values.items())
        return [(self.name, dict(zip(self.labels, key)), value) for key, value in items]


class Histogram:
    """
    A histogram family: C{observe(seconds, labels...)}.
    """

    kind = "histogram"

    def __init__(self, name, help, labels=(), buckets=BUCKETS):
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._buckets = tuple(buckets)
        self._values = {}
        self._lock = threading.Lock()

    def observe(self, value, *labels):
        with self._lock:
            counts = self._values.get(labels)
            if counts is None:
                counts = self._values[labels] = [0] * (len(self._buckets) + 1) + [0.0]
            for index, bound in enumerate(self._buckets):
                if value <= bound:
                    counts[index] += 1
                    break
            else:
                counts[len(self._buckets)] += 1
            counts[-1] += value

    def samples(self):
        with self._lock:
            items = sorted((key, list(counts)) for key, counts in self._values.items())
        samples = []
        for key, counts in items:
            labels = dict(zip(self.labels, key))
            running = 0
            for bound, count in zip(self._buckets + (float("inf"),), counts):
                running += count
                samples.append((self.name + "_bucket", dict(labels, le=_number(bound)), running))
            samples.append((self.name + "_sum", labels, counts[-1]))
            samples.append((self.name + "_count", labels, running))
        return samples


class Readout:
    """
    A family whose samples come from C{read()}, called at scrape time on the
    reactor: a list of C{(label values tuple, value)}.  A gauge, or a
    counter kept elsewhere (C{kind="counter"}).
    """

    def __init__(self, name, help, labels=(), read=lambda: [], kind="gauge"):
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.read = read
        self.kind = kind

    def samples(self):
        return [(self.name, dict(zip(self.labels, key)), value) for key, value in self.read()]


class Metrics:
    """
    The shim's metrics.  Request-path families are created here; the
    control path adds gauges with L{add}.
    """

    def __init__(self):
        self.families = []
        self.calls = self.add(Counter(
            "image_cri_shim_calls_total", "CRI calls served, by service, method and status "
            "code.", ("service", "method", "code")))
        self.call_seconds = self.add(Histogram(
            "image_cri_shim_call_duration_seconds", "Time to serve a CRI call.",
            ("service", "method")))
        self.rewrites = self.add(Counter(
            "image_cri_shim_rewrites_total", "Image decisions, by call, outcome and registry.",
            ("action", "outcome", "registry")))
        self.probe_seconds = self.add(Histogram(
            "image_cri_shim_probe_duration_seconds", "Registry manifest lookups and health "
            "checks, by registry and kind.", ("registry", "kind")))
        self.reloads = self.add(Counter(
            "image_cri_shim_config_reloads_total", "Config loads, by result.", ("result",)))
        self.syncs = self.add(Counter(
            "image_cri_shim_configmap_syncs_total", "ConfigMap polls, by outcome.",
            ("outcome",)))

    def add(self, family):
        """
        Register a metric family.

        :return: C{family}.
        """
        self.families.append(family)
        return family

    def instrument(self, path, behavior):
        """
        Wrap a unary gRPC handler function so every call is counted and
        timed under the method path's service and method.
        """
        service, method = split(path)
        calls, seconds = self.calls, self.call_seconds

        def handler(request, context):
            started = time.monotonic()
            code = "UNKNOWN"
            try:
                result = behavior(request, context)
                code = "OK"
                return result
            finally:
                status = context.code()
                if status is not None:
                    code = status.name if isinstance(status, grpc.StatusCode) else str(status)
                calls.inc(service, method, code)
                seconds.observe(time.monotonic() - started, service, method)

        return handler

    def render(self):
        """
        :return: every family in the Prometheus text format, as bytes.
        """
        lines = []
        for family in self.families:
            lines.append("# HELP {} {}".format(family.name, family.help))
            lines.append("# TYPE {} {}".format(family.name, family.kind))
            for name, labels, value in family.samples():
                lines.append("{}{} {}".format(name, _labels(labels), _number(value)))
        return ("\n".join(lines) + "\n").encode("utf-8")


def split(path):
    """
    :return: C{(service, method)} of a gRPC method path, the labels of its
        calls.
    """
    service, _, method = path.lstrip("/").rpartition("/")
    return service, method


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join('{}="{}"'.format(key, _escape(value))
                          for key, value in labels.items()) + "}"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
