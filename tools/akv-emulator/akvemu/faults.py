"""Injected faults and the per-vault rate limiter.

Fault rules come from the config ("emulator.faults") or the admin endpoint.
A rule matches requests and then does one thing:
  status       answer with `status` (429, 500, 503, ...) in the style of the
               service hit; `retryAfter` adds a Retry-After header
  drop_before  close the connection before the request is applied
  drop_after   apply the request, then close the connection without answering
  latency      only delay (`delayMs`), then serve normally
Any rule may also carry `delayMs`. `count` limits how many requests a rule
hits (then it is removed); `skip` lets that many matching requests through
first. Match fields (all optional, globs, case-insensitive): service
(entra|arm|keyvault), host, method, path.

The rate limiter counts requests in sliding windows per vault and bucket; which
bucket, limit and window a request belongs to is limits.py's business (vaults:
per 10 s; Managed HSM: capacity per second). Requests that get a 429 are not
counted (as in Azure). `scale` multiplies every limit.
"""
import collections
import fnmatch
import itertools
import threading
import time

from .errors import kv_error

ACTIONS = ("status", "drop_before", "drop_after", "latency")


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self, settings):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.rules = []
        for r in settings.get("faults", []):
            self.add(r)
        self.rate = {"enabled": False, "scale": 1.0, "retryAfter": None}
        self.set_rate_limit(settings.get("rateLimit", {}))
        self._windows = collections.defaultdict(collections.deque)   # (vault, bucket) -> deque

    # ------------------------------------------------------------ rules
    def add(self, rule):
        if not isinstance(rule, dict):
            raise FaultError("a fault rule is a JSON object")
        rule = dict(rule)
        action = rule.get("action", "status")
        if action not in ACTIONS:
            raise FaultError("action must be one of %s" % ", ".join(ACTIONS))
        if action == "status" and not isinstance(rule.get("status"), int):
            raise FaultError("a status rule needs an integer 'status'")
        for k in ("count", "skip", "delayMs", "retryAfter"):
            if k in rule and rule[k] is not None and not isinstance(rule[k], (int, float)):
                raise FaultError("%s must be a number" % k)
        rule["action"] = action
        rule["match"] = {k.lower(): str(v) for k, v in rule.get("match", {}).items()}
        with self._lock:
            rule["id"] = next(self._ids)
            rule.setdefault("hits", 0)
            self.rules.append(rule)
        return rule

    def remove(self, rule_id):
        with self._lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r["id"] != rule_id]
            return len(self.rules) != before

    def clear(self):
        with self._lock:
            self.rules = []
            self._windows.clear()

    def snapshot(self):
        with self._lock:
            return [dict(r) for r in self.rules]

    def match(self, req, service):
        """The first rule that hits this request (consuming one use), or None."""
        values = {"service": service, "host": req.host, "method": req.method, "path": req.path}
        with self._lock:
            for r in self.rules:
                if not all(fnmatch.fnmatch(values.get(k, "").lower(), v.lower())
                           for k, v in r["match"].items()):
                    continue
                if r.get("skip"):
                    r["skip"] -= 1
                    continue
                r["hits"] += 1
                if r.get("count") is not None:
                    r["count"] -= 1
                    if r["count"] <= 0:
                        self.rules.remove(r)
                return dict(r)
        return None

    # ------------------------------------------------------------ rate limit
    def set_rate_limit(self, cfg):
        if not isinstance(cfg, dict):
            raise FaultError("rateLimit is a JSON object")
        with self._lock:
            self.rate.update({k: cfg[k] for k in ("enabled", "scale", "retryAfter") if k in cfg})
            if hasattr(self, "_windows"):
                self._windows.clear()

    def rate_check(self, vault_name, charge):
        """Count one request (a limits.Charge) against its window. A full window answers the
        429 the service sends (no Retry-After unless configured: the recorded real 429 had
        none), or, for a charge that is not refused, waits until the window has room."""
        if not self.rate.get("enabled"):
            return
        limit = max(1, int(charge.limit * float(self.rate.get("scale") or 1.0)))
        weight = min(charge.weight, limit)
        while True:
            now = time.monotonic()
            with self._lock:
                win = self._windows[(vault_name, charge.bucket)]
                while win and win[0][0] <= now - charge.window:
                    win.popleft()
                used = sum(w for _, w in win)
                if used + weight <= limit:
                    win.append((now, weight))
                    return
                if charge.refuse:
                    headers = {}
                    if self.rate.get("retryAfter") is not None:
                        headers["Retry-After"] = str(int(self.rate["retryAfter"]))
                    raise kv_error(429, "Throttled",
                                   "Request was not processed because too many requests were received. "
                                   "Reason: VaultRequestTypeLimitReached", headers=headers)
                wait = win[0][0] + charge.window - now
            time.sleep(max(wait, 0.001))
