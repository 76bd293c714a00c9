"""
A registry that can vanish: a TCP proxy to a real sandbox registry that, on
SIGUSR1, turns into a black hole (connections are accepted, old and new, and
nothing is ever answered on them: what a dead host behind a load balancer or
a dropped route looks like to a client with a timeout), and on SIGUSR2 relays
again (every connection of the black-hole time is cut; new ones relay).

    python bench/blackhole.py UPSTREAM_HOST:PORT

It listens on a free 127.0.0.1 port and prints ``port N`` once it listens,
then ``mode hole`` / ``mode relay`` once each switch is in force.  SIGTERM
stops it.
"""

import asyncio
import signal
import sys

CHUNK = 64 * 1024


class Switch:
    def __init__(self):
        self.hole = False
        self.writers = set()

    def to_hole(self):
        self.hole = True
        print("mode hole", flush=True)

    def to_relay(self):
        self.hole = False
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        print("mode relay", flush=True)


async def pump(switch, reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if switch.hole:
                # Swallowed: the other side never hears of it.
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(upstream):
    host, port = upstream.rsplit(":", 1)
    switch = Switch()

    async def serve(client_reader, client_writer):
        switch.writers.add(client_writer)
        if switch.hole:
            # Accept, read, never answer, until the hole closes.
            try:
                while await client_reader.read(CHUNK):
                    pass
            except (ConnectionError, OSError):
                pass
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(switch, client_reader, server_writer),
                             pump(switch, server_reader, client_writer))
        switch.writers.discard(client_writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=512)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, switch.to_hole)
    loop.add_signal_handler(signal.SIGUSR2, switch.to_relay)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
