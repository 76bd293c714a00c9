"""
The load workers: client processes, each a grpc.aio client keeping N calls in
flight for a while and answering with counts, latencies and its own CPU time,
so that the client's CPU is spread over processes and kept off the bench's
GIL.  The bench drives them through L{Workers}; each runs this file as a
script, reading one JSON command a line on stdin.
"""

import asyncio
import json
import os
import resource
import sys
import threading
import time

import grpc

from calls import CALL_TIMEOUT, CHANNEL_OPTIONS, percentile, status_body
from procs import PY, BenchError, Child


class Workers:
    """
    A pool of load worker processes.
    """

    def __init__(self, count, directory):
        self.children = [Child("worker{}".format(i), [PY, os.path.abspath(__file__)],
                               os.path.join(directory, "worker{}.log".format(i)),
                               capture="both").start() for i in range(count)]
        for child in self.children:
            child.expect("ready")

    def run(self, commands, timeout):
        """One command to each worker; their answers once all have answered."""
        for child, command in zip(self.children, commands):
            child.process.stdin.write((json.dumps(command) + "\n").encode())
            child.process.stdin.flush()
        return [json.loads(child.readline(timeout)) for child in self.children]

    def start(self, commands, timeout):
        """
        L{run} in a thread, so that the caller can watch the load meanwhile.

        :return: a function that waits for the answers and returns them.
        """
        done = []
        thread = threading.Thread(target=lambda: done.append(self.run(commands, timeout)))
        thread.start()

        def answers():
            thread.join(timeout + 30)
            if not done:
                raise BenchError("the load workers did not answer")
            return done[0]
        return answers

    def close(self):
        for child in self.children:
            child.stop()


async def _worker():
    loop = asyncio.get_running_loop()
    channels = {}
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        result = await _worker_load(command, channels)
        print(json.dumps(result), flush=True)
    for channel in channels.values():
        await channel.close()


async def _worker_load(command, channels):
    loop = asyncio.get_running_loop()
    path = command["socket"]
    channel = channels.get(path)
    if channel is None:
        channel = channels[path] = grpc.aio.insecure_channel("unix:" + path,
                                                             options=CHANNEL_OPTIONS)
    calls = []
    for spec in command["calls"]:
        bodies = [bytes.fromhex(b) for b in spec.get("bodies", [spec.get("body", "")])]
        calls.append((channel.unary_unary(spec["path"]), bodies, spec.get("absent", False),
                      spec.get("timeout", CALL_TIMEOUT)))
    counters = {"unique": 0}

    def body_of(index):
        _, bodies, absent, _ = calls[index]
        if absent:
            counters["unique"] += 1
            return status_body("bench/absent-{}-{}:v1".format(os.getpid(), counters["unique"]))
        counters[index] = counters.get(index, -1) + 1
        return bodies[counters[index] % len(bodies)]

    for index, (call, _, absent, timeout) in enumerate(calls):
        if not absent and len(calls[index][1]) == 1:
            for _ in range(command.get("warmup", 20)):
                await call(calls[index][1][0], timeout=timeout)
    await asyncio.sleep(max(0.0, command["start_at"] - time.time()))
    cpu0 = _self_cpu()
    end = loop.time() + command["duration"]
    latencies, errors = [], []

    async def client(offset):
        i = offset
        while loop.time() < end:
            index = i % len(calls)
            i += 1
            call, _, _, timeout = calls[index]
            started = loop.time()
            try:
                await call(body_of(index), timeout=timeout)
            except grpc.aio.AioRpcError as e:
                errors.append("{}: {}".format(e.code().name, e.details()))
            finished = loop.time()
            if finished <= end:
                latencies.append(finished - started)

    await asyncio.gather(*[client(k) for k in range(command["concurrency"])])
    return {"count": len(latencies), "errors": len(errors), "error": errors[:1],
            "cpu": _self_cpu() - cpu0, "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99)}


def _self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    asyncio.run(_worker())
