#!/usr/bin/env python3
"""A TCP proxy that counts the bytes each way: put it between an RPC client and server to
measure what crosses the wire. Usage: count_proxy.py LISTEN_PORT TARGET_HOST:PORT COUNTS_FILE
After each connection closes, COUNTS_FILE holds "to_server from_server" (bytes, cumulative)."""
import socket
import sys
import threading

listen_port, target, counts_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
host, port = target.rsplit(":", 1)
totals = [0, 0]
lock = threading.Lock()


def pump(src, dst, i):
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
            with lock:
                totals[i] += len(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def save():
    with lock:
        with open(counts_file, "w") as f:
            f.write(f"{totals[0]} {totals[1]}\n")


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(8)
save()
while True:
    client, _ = srv.accept()
    upstream = socket.create_connection((host, int(port)))
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a = threading.Thread(target=pump, args=(client, upstream, 0))
    b = threading.Thread(target=pump, args=(upstream, client, 1))
    a.start()
    b.start()

    def finish(a=a, b=b):
        a.join()
        b.join()
        save()

    threading.Thread(target=finish, daemon=True).start()
