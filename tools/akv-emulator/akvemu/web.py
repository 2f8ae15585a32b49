"""Request/response types shared by the handlers (independent of http.server)."""
import json
import urllib.parse

from .errors import bad_parameter


class Request:
    def __init__(self, method, host, port, raw_path, headers, body):
        self.method = method
        self.host = host              # lower-case, without port
        self.port = port              # port in the Host header, or None
        self.raw_path = raw_path
        parts = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(parts.path)
        self.query = {k.lower(): v[-1] for k, v in
                      urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = headers        # email.message.Message: case-insensitive get()
        self.body = body
        self.client_id = "-"          # filled in by authentication, for the log
        self.service = "-"

    def json(self):
        if not self.body:
            raise bad_parameter("The request body is missing.")
        try:
            d = json.loads(self.body)
        except ValueError:
            raise bad_parameter("The request body is not valid JSON.") from None
        if not isinstance(d, dict):
            raise bad_parameter("The request body must be a JSON object.")
        return d

    def form(self):
        return {k: v[-1] for k, v in urllib.parse.parse_qs(
            self.body.decode("utf-8", "replace"), keep_blank_values=True).items()}

    def authority(self):
        """scheme://host[:port] as the client addressed us (for nextLink)."""
        return "https://" + self.host + (":%d" % self.port if self.port and self.port != 443 else "")


class Response:
    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.headers = dict(headers or {})
        if body is None:
            self.data = b""
        elif isinstance(body, (bytes, bytearray)):
            self.data = bytes(body)
        else:
            self.data = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json; charset=utf-8")
