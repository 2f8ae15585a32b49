#!/usr/bin/python3
"""A minimal HTTP CONNECT proxy for the azure tests.

Prints "proxy listening on PORT" once, then one line per CONNECT request
("CONNECT target 200" or "... 403"). With --deny-all it refuses every tunnel
with 403, to test how the client reports a proxy refusal. With --auth USER:PASSWORD a tunnel
needs that Proxy-Authorization (Basic); without it, or with another, the answer is 407. Stops on
SIGTERM.
"""
import argparse
import base64
import select
import signal
import socket
import sys
import threading


def pump(a, b):
    try:
        while True:
            r, _, _ = select.select([a, b], [], [], 60)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


def authorized(head, auth):
    if auth is None:
        return True
    want = "Basic " + base64.b64encode(auth.encode()).decode()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "proxy-authorization" and value.strip() == want:
            return True
    return False


def handle(conn, deny_all, auth):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            conn.close()
            return
        head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or parts[0] != "CONNECT":
        conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        conn.close()
        return
    target = parts[1]
    if deny_all:
        print("CONNECT %s 403" % target, flush=True)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()
        return
    if not authorized(head, auth):
        print("CONNECT %s 407" % target, flush=True)
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                     b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
        conn.close()
        return
    host, _, port = target.rpartition(":")
    try:
        up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
    except OSError:
        print("CONNECT %s 502" % target, flush=True)
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        conn.close()
        return
    print("CONNECT %s 200" % target, flush=True)
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    pump(conn, up)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deny-all", action="store_true")
    ap.add_argument("--auth", help="USER:PASSWORD a tunnel must present")
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("proxy listening on %d" % srv.getsockname()[1], flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c, args.deny_all, args.auth), daemon=True).start()


if __name__ == "__main__":
    main()
