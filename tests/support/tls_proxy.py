#!/usr/bin/env python3
"""tls_proxy.py - TLS in front of a plaintext server, for tests.

Usage: tls_proxy.py CERT KEY TARGET_PORT

Listens on 127.0.0.1 and a free port (printed on stdout), offers ALPN h2 and http/1.1, and
pipes the bytes of each connection to 127.0.0.1:TARGET_PORT unchanged, so a server that speaks
HTTP/1.1 and HTTP/2 with prior knowledge (tests/mock_kinesis) is reached as an https endpoint
would be: TLS, then HTTP/2 where the client asked for it. Runs until killed.
"""
import socket
import ssl
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(conn, ctx, target):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    try:
        up = socket.create_connection(('127.0.0.1', target))
    except OSError:
        tls.close()
        return
    back = threading.Thread(target=pipe, args=(up, tls), daemon=True)
    back.start()
    pipe(tls, up)
    back.join()
    tls.close()
    up.close()


def main():
    cert, key, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(['h2', 'http/1.1'])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', 0))
    srv.listen(256)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, ctx, target), daemon=True).start()


if __name__ == '__main__':
    main()
