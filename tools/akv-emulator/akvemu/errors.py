"""HTTP error responses in the shapes the real services use (reference §3.4)."""
import json


class HttpError(Exception):
    """Raised by handlers; the server turns it into a response."""

    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body            # dict (JSON) or None (empty body)
        self.headers = headers or {}

    def body_bytes(self):
        return b"" if self.body is None else json.dumps(self.body).encode()


def kv_error(status, code, message, inner=None, headers=None):
    """Key Vault / ARM error body: {"error":{"code","message","innererror"?}}."""
    err = {"code": code, "message": message}
    if inner:
        err["innererror"] = {"code": inner}
    return HttpError(status, {"error": err}, headers)


def bad_parameter(message):
    return kv_error(400, "BadParameter", message)


def key_not_found(name):
    # Message text as recorded from the real service (reference §3.4).
    return kv_error(404, "KeyNotFound",
                    "A key with (name/id) %s was not found in this key vault. If you recently deleted "
                    "this key you may be able to recover it using the correct recovery command. For "
                    "help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
                    % name)


def deleted_key_not_found(name):
    # [U] The code of the 404 for a missing *deleted* key may differ; the real
    # service is reported to answer KeyNotFound here too, so we do the same.
    return kv_error(404, "KeyNotFound", "Deleted Key not found: %s" % name)
