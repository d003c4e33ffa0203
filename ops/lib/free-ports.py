#!/usr/bin/env python3
"""Prints loopback ports that are free now, for processes started on them a moment later.

    ops/lib/free-ports.py 1 1 5     three numbers: two free ports, and the first of five
                                    consecutive free ones (all distinct)

Each port is free for both TCP and UDP on 127.0.0.1 (Consul's Serf and DNS use both). Every
port is held until all are found, so they are distinct; another process may still take one
between this and its use, which the caller notices as a start-up failure.

Python 3 standard library only. Exit codes: 0 fine, 1 no ports found, 2 bad usage.
"""

import random
import socket
import sys

HOST = "127.0.0.1"
# Below Linux's ephemeral range (from 32768 unless configured), where the kernel picks the
# local ports of outgoing connections: one of those could take a port between this and its use.
# Above the registered ports most software defaults to.
LOW, HIGH = 20000, 32000
TRIES = 2000


def hold(port):
    """A TCP and a UDP socket bound to `port`, or None when either is taken."""
    held = []
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind((HOST, port))
        except OSError:
            sock.close()
            for s in held:
                s.close()
            return None
        held.append(sock)
    return held


def block(size, taken):
    """The first port of `size` consecutive free ports, with their sockets, or None."""
    for _ in range(TRIES):
        first = random.randint(LOW, HIGH - size)
        ports = range(first, first + size)
        if any(p in taken for p in ports):
            continue
        sockets = []
        for port in ports:
            got = hold(port)
            if got is None:
                break
            sockets += got
        else:
            return first, sockets
        for s in sockets:
            s.close()
    return None


def main(args):
    try:
        sizes = [int(a) for a in args]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 or s > 100 for s in sizes):
        print(__doc__.strip().split("\n\n")[0].strip(), file=sys.stderr)
        return 2
    taken, sockets, firsts = set(), [], []
    try:
        for size in sizes:
            found = block(size, taken)
            if found is None:
                print(f"free-ports: no {size} consecutive free ports on {HOST}", file=sys.stderr)
                return 1
            first, held = found
            taken.update(range(first, first + size))
            sockets += held
            firsts.append(first)
    finally:
        for s in sockets:
            s.close()
    print(" ".join(str(p) for p in firsts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
