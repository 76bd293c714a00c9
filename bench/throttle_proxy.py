"""
A slow registry: a TCP proxy in front of a real sandbox registry that passes
what the client sends at once and what the registry answers at RATE bytes per
second per connection.  Manifests and registry probes (a few hundred bytes)
pass in a millisecond; a 1.5 MB layer takes seconds, so every pull through it
lasts seconds, as from a slow or distant registry.

    python bench/throttle_proxy.py UPSTREAM_HOST:PORT RATE_BYTES_PER_S

It listens on a free 127.0.0.1 port and prints ``port N`` once it listens.
SIGTERM stops it.
"""

import asyncio
import signal
import sys

CHUNK = 16 * 1024


async def pump(reader, writer, rate):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            started = loop.time()
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(max(len(data) / rate - (loop.time() - started), 0))
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(upstream, rate):
    host, port = upstream.rsplit(":", 1)

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, 0),
                             pump(server_reader, client_writer, rate))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=512)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
