"""Running the app: a socket, the URL, a browser, uvicorn."""

import socket
import threading
import webbrowser

WILDCARDS = ("0.0.0.0", "::")


def listening_socket(host, port):
    """A TCP socket bound to ``host:port`` (port 0: one the OS picks, so two servers never race for a port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock):
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def allowed_hosts(host):
    """Host header values the app answers (against DNS rebinding): this machine's names, and the address it
    listens on; any name when it listens on every address, as the user asked for."""
    if host in WILDCARDS:
        return ["*"]
    return sorted({"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host})


def serve(app, sock, *, open_browser=False, announce=print, log_level="warning"):
    """Serve ``app`` on the bound ``sock`` with uvicorn until interrupted; ``announce(url)`` once it accepts."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                           server_header=False))
    url = url_of(sock)

    def when_up():
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        if server.started:
            announce(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=when_up, daemon=True).start()
    server.run(sockets=[sock])
