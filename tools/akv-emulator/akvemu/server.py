"""HTTPS server: TLS per connection, routing by Host header, faults,
the admin endpoint, and one log line per request.

Routing: login.* -> Entra, management.* -> ARM, {name}.vault.* /
{name}.managedhsm.* -> the data plane of that vault, localhost/127.0.0.1 ->
the admin endpoint (/_admin/..., and only with the X-AKV-Emulator-Admin
header, so no Azure client can reach it by accident).
"""
import collections
import datetime
import json
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import authz
from .arm import Arm
from .config import ARM_HOSTS, LOGIN_HOSTS
from .entra import Entra, aad_error
from .errors import HttpError, kv_error
from .faults import FaultError, Faults
from .keyvault import KeyVault
from .web import Request, Response

ADMIN_HOSTS = ("localhost", "127.0.0.1")
ADMIN_HEADER = "X-AKV-Emulator-Admin"
DROP = object()   # handler result: close the connection without answering


class Emulator:
    """Everything but the socket layer: dispatch of a Request to a Response."""

    def __init__(self, config, state_dir, log_stream=None):
        self.config = config
        self.entra = Entra(config, state_dir)
        self.faults = Faults(config.settings)
        self.kv = KeyVault(config, state_dir, self.entra, self.faults)
        self.arm = Arm(config, self.entra)
        self._log_lock = threading.Lock()
        self.log_stream = log_stream or sys.stderr
        # Key Vault requests that reached a vault, by (vault, operation, status), and the most
        # Key Vault requests served at once: GET /_admin/requests.
        self.requests = collections.Counter()
        self.in_flight = self.max_in_flight = 0

    def log(self, req, status, ms):
        if getattr(req, "op", None):
            with self._log_lock:
                self.requests[(req.vault_name, req.op, status)] += 1
        # Never log bodies, headers or query strings: they may hold secrets.
        line = "%s %s %s%s %s client=%s %dms\n" % (
            datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
            req.method, req.host, req.path, status, req.client_id, ms)
        with self._log_lock:
            self.log_stream.write(line)
            self.log_stream.flush()

    def service_of(self, host):
        if host in LOGIN_HOSTS:
            return "entra"
        if host in ARM_HOSTS:
            return "arm"
        if host in self.config.vaults_by_host:
            return "keyvault"
        if host in ADMIN_HOSTS:
            return "admin"
        return None

    def dispatch(self, req):
        """Returns a Response, or DROP."""
        service = self.service_of(req.host)
        if service == "admin":
            return self.admin(req)
        if service != "keyvault":
            return self._dispatch(req, service)
        with self._log_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._dispatch(req, service)
        finally:
            with self._log_lock:
                self.in_flight -= 1

    def _dispatch(self, req, service):
        rule = self.faults.match(req, service or "-") if service else None
        if rule:
            if rule.get("delayMs"):
                time.sleep(rule["delayMs"] / 1000.0)
            if rule["action"] == "drop_before":
                return DROP
            if rule["action"] == "status":
                return self.fault_response(service, rule)
        try:
            if service == "entra":
                resp = self.entra.handle(req)
            elif service == "arm":
                resp = self.arm.handle(req)
            elif service == "keyvault":
                resp = self.kv.handle(req, self.config.vaults_by_host[req.host])
            else:
                resp = Response(404, {"error": {
                    "code": "NotFound",
                    "message": "akv-emulator: no service, vault or managed HSM is configured for host '%s'."
                               % req.host}})
        except HttpError as e:
            resp = Response(e.status, e.body, e.headers)
        if rule and rule["action"] == "drop_after":
            return DROP
        return resp

    def fault_response(self, service, rule):
        status = rule["status"]
        headers = {}
        if "body" in rule:   # an answer of the test's own making
            r = Response(status, rule["body"])
            if rule.get("retryAfter") is not None:
                r.headers["Retry-After"] = str(int(rule["retryAfter"]))
            return r
        if rule.get("retryAfter") is not None:
            headers["Retry-After"] = str(int(rule["retryAfter"]))
        if service == "entra":
            if status == 429:
                r = aad_error(429, "temporarily_unavailable", 90033,
                              "A transient error has occurred. Please try again.")
            else:
                r = aad_error(status, "temporarily_unavailable", 90033,
                              "A transient error has occurred. Please try again.")
        elif status == 429:
            e = kv_error(429, "Throttled", "Request was not processed because too many requests were "
                                           "received. Reason: VaultRequestTypeLimitReached")
            r = Response(429, e.body)
        else:
            code = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                    504: "GatewayTimeout"}.get(status, rule.get("code", "InjectedFault"))
            r = Response(status, {"error": {"code": rule.get("code", code),
                                            "message": rule.get("message", "Injected fault (akv-emulator).")}})
        r.headers.update(headers)
        return r

    # ------------------------------------------------------------ admin
    def admin(self, req):
        req.service = "admin"
        if not req.path.startswith("/_admin/"):
            return Response(404, {"error": {"code": "NotFound", "message":
                                            "akv-emulator: use an Azure host name (see README)."}})
        if req.headers.get(ADMIN_HEADER) is None:
            return Response(403, {"error": {"code": "Forbidden",
                                            "message": "admin requests need the %s header" % ADMIN_HEADER}})
        p, m = req.path.rstrip("/"), req.method
        try:
            if p == "/_admin/health" and m == "GET":
                return Response(200, {"status": "ok"})
            if p == "/_admin/faults":
                if m == "GET":
                    return Response(200, {"value": self.faults.snapshot()})
                if m == "POST":
                    return Response(201, self.faults.add(req.json()))
                if m == "DELETE":
                    self.faults.clear()
                    return Response(204)
            if p.startswith("/_admin/faults/") and m == "DELETE":
                ok = self.faults.remove(int(p.rsplit("/", 1)[1]))
                return Response(204 if ok else 404)
            if p == "/_admin/requests":
                with self._log_lock:
                    if m == "DELETE":
                        self.requests.clear()
                        self.max_in_flight = self.in_flight
                        return Response(204)
                    counts = sorted(self.requests.items())
                    most = self.max_in_flight
                return Response(200, {"value": [{"vault": v, "op": o, "status": st, "count": n}
                                                for (v, o, st), n in counts], "maxInFlight": most})
            if p == "/_admin/ratelimit":
                if m in ("PUT", "POST"):
                    self.faults.set_rate_limit(req.json())
                return Response(200, dict(self.faults.rate))
            if p == "/_admin/grants" and m == "POST":
                # A grant that propagates after a delay, as Azure's do (authz.py).
                d = req.json()
                vault = next((v for v in self.config.vaults if v.name.lower() == str(d.get("vault", "")).lower()),
                             None)
                if vault is None:
                    return Response(404, {"error": {"code": "NotFound", "message": "unknown vault"}})
                return Response(201, authz.add_grant(vault, d, d.get("propagationSeconds", 0)))
            if p == "/_admin/token" and m == "POST":
                # Mint an access token directly (e.g. an expired one for tests).
                d = req.json()
                tenant = self.config.find_tenant(d.get("tenantId", ""))
                app = tenant.apps.get(str(d.get("clientId", "")).lower()) if tenant else None
                if app is None:
                    return Response(404, {"error": {"code": "NotFound", "message": "unknown tenant/client"}})
                req.client_id = app.client_id
                tok = self.entra.issue(app, d.get("resource", "https://vault.azure.net"),
                                       int(d.get("lifetime", 3599)), d.get("loginHost",
                                                                           "login.microsoftonline.com"))
                return Response(200, {"access_token": tok})
        except (FaultError, ValueError) as e:
            return Response(400, {"error": {"code": "BadRequest", "message": str(e)}})
        except HttpError as e:
            return Response(e.status, e.body, e.headers)
        return Response(404, {"error": {"code": "NotFound", "message": "unknown admin endpoint"}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "akv-emulator"
    sys_version = ""
    timeout = 120   # idle keep-alive connections are closed after this

    def log_message(self, fmt, *args):   # replaced by Emulator.log
        pass

    def _serve(self):
        t0 = time.monotonic()
        emu = self.server.emulator
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            try:
                body = self.rfile.read(int(length)) if length else b""
            except ValueError:
                self.send_error(400)
                return
        host_hdr = (self.headers.get("Host") or "").strip().lower()
        host, port = host_hdr, None
        if host_hdr.startswith("["):
            host = host_hdr.split("]")[0] + "]"
        elif ":" in host_hdr:
            host, _, p = host_hdr.rpartition(":")
            port = int(p) if p.isdigit() else None
        req = Request(self.command, host, port, self.path, self.headers, body)
        try:
            resp = emu.dispatch(req)
        except Exception:   # a bug: answer 500 like the service would, keep serving
            traceback.print_exc()
            resp = Response(500, {"error": {"code": "InternalServerError",
                                            "message": "akv-emulator internal error"}})
        ms = int((time.monotonic() - t0) * 1000)
        if resp is DROP:
            emu.log(req, "DROP", ms)
            self.close_connection = True
            try:   # no TLS close_notify, no response: the client sees a reset/EOF
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
            except OSError:
                pass
            return
        # Logged before the answer leaves: a request a client sends after reading this answer is
        # then always logged after it, so the log's order is the causal order tests rely on.
        emu.log(req, resp.status, ms)
        self.send_response(resp.status)
        hdrs = {"Cache-Control": "no-cache", "x-ms-request-id": str(uuid.uuid4()),
                "Strict-Transport-Security": "max-age=31536000;includeSubDomains"}
        if req.service == "keyvault":
            hdrs.update({"x-ms-keyvault-service-version": "1.9.1.0", "x-ms-keyvault-region": "westeurope",
                         "x-ms-keyvault-network-info": "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;"})
        hdrs.update(resp.headers)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.data)))
        self.end_headers()
        if self.command != "HEAD" and resp.data:
            self.wfile.write(resp.data)

    def _read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake in the worker thread,
    so a slow or broken client cannot stall accept()."""
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, ssl_ctx, emulator):
        self.ssl_ctx = ssl_ctx
        self.emulator = emulator
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        # An answer leaves in several writes (TLS records for the headers, then the body): with
        # Nagle's algorithm the last waits for the client's delayed ACK, 40 ms a request.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return   # failed handshake (e.g. client does not trust the CA)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass   # per-connection errors are the client's business


def json_dumps(d):
    return json.dumps(d, indent=1)
