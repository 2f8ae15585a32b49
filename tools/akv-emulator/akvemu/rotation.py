"""Key rotation policies (API 7.3+): GET/PUT /keys/{name}/rotationpolicy.

Shape (keys.json KeyRotationPolicy, examples Get/UpdateKeyRotationPolicy):
  {"id": "https://{vault}/keys/{name}/rotationpolicy",
   "lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"} | {"timeBeforeExpiry": "P30D"},
                        "action": {"type": "Rotate" | "Notify"}}],
   "attributes": {"expiryTime": "P2Y", "created": unix, "updated": unix}}

Rules, from the spec and Learn's how-to-configure-key-rotation:
- at most two actions, one Rotate and one Notify [C, spec];
- timeAfterCreate applies to Rotate only [C, spec];
- the rotation time is at least 7 days after creation and at least 7 days before expiry [C, Learn];
- expiryTime is at least 28 days [C, spec];
- a timeBeforeExpiry trigger needs expiryTime on the policy [C, Learn].
The error texts are [U]: the service answers 400 BadParameter; the wording is ours.
"""
import re

from .errors import bad_parameter

DURATION_RE = re.compile(r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                         r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
DAY = 86400
MIN_ROTATION_DAYS = 7
MIN_EXPIRY_DAYS = 28
ACTIONS = {"rotate": "Rotate", "notify": "Notify"}
# A key that never had a policy set answers a Notify-only default, 30 days before expiry, the
# notification time the spec calls the default [I]; it has no created/updated times.
DEFAULT_ACTIONS = [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}]


def duration_seconds(text, what):
    """Seconds of an ISO-8601 duration. Months count 30 days and years 365 [I]: the service
    measures the 7- and 28-day minimums; how it counts calendar units is not published."""
    m = DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise bad_parameter("%s must be an ISO 8601 duration such as P90D, P3M or P1Y; got %r." % (what, text))
    y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return (((y * 365 + mo * 30 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s


def validate(body):
    """The policy to store from a PUT body, or the 400 the service answers."""
    actions = body.get("lifetimeActions")
    if actions is None:
        actions = []
    if not isinstance(actions, list):
        raise bad_parameter("lifetimeActions must be an array.")
    attrs = body.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise bad_parameter("attributes must be an object.")
    expiry = attrs.get("expiryTime")
    expiry_s = None
    if expiry is not None:
        expiry_s = duration_seconds(expiry, "attributes.expiryTime")
        if expiry_s < MIN_EXPIRY_DAYS * DAY:
            raise bad_parameter("attributes.expiryTime must be at least %d days (P%dD); got %s."
                                % (MIN_EXPIRY_DAYS, MIN_EXPIRY_DAYS, expiry))
    out, seen = [], set()
    for a in actions:
        if not isinstance(a, dict) or not isinstance(a.get("action"), dict) or \
                not isinstance(a.get("trigger"), dict):
            raise bad_parameter("Each lifetime action needs an 'action' and a 'trigger' object.")
        kind = ACTIONS.get(str(a["action"].get("type", "")).lower())
        if kind is None:
            raise bad_parameter("Lifetime action type must be Rotate or Notify; got %r." % a["action"].get("type"))
        if kind in seen:
            raise bad_parameter("A rotation policy has at most one %s action." % kind)
        seen.add(kind)
        after, before = a["trigger"].get("timeAfterCreate"), a["trigger"].get("timeBeforeExpiry")
        if (after is None) == (before is None):
            raise bad_parameter("The %s trigger needs exactly one of timeAfterCreate and timeBeforeExpiry." % kind)
        if after is not None:
            if kind == "Notify":
                raise bad_parameter("timeAfterCreate applies to the Rotate action only; Notify takes "
                                    "timeBeforeExpiry.")
            t = duration_seconds(after, "timeAfterCreate")
            if t < MIN_ROTATION_DAYS * DAY:
                raise bad_parameter("timeAfterCreate must be at least %d days (P%dD); got %s."
                                    % (MIN_ROTATION_DAYS, MIN_ROTATION_DAYS, after))
            if expiry_s is not None and expiry_s - t < MIN_ROTATION_DAYS * DAY:
                raise bad_parameter("The rotation time must be at least %d days before expiry: timeAfterCreate %s "
                                    "with expiryTime %s." % (MIN_ROTATION_DAYS, after, expiry))
            trigger = {"timeAfterCreate": after}
        else:
            t = duration_seconds(before, "timeBeforeExpiry")
            if expiry_s is None:
                raise bad_parameter("A timeBeforeExpiry trigger needs attributes.expiryTime on the policy.")
            if t < MIN_ROTATION_DAYS * DAY or expiry_s - t < MIN_ROTATION_DAYS * DAY:
                raise bad_parameter("timeBeforeExpiry must leave at least %d days after creation and before "
                                    "expiry: %s with expiryTime %s." % (MIN_ROTATION_DAYS, before, expiry))
            trigger = {"timeBeforeExpiry": before}
        out.append({"trigger": trigger, "action": {"type": kind}})
    return {"lifetimeActions": out, "expiryTime": expiry}


def to_json(kid_base, stored, now=None):
    """The service's answer for a stored policy (or the default when there is none)."""
    body = {"id": kid_base + "/rotationpolicy"}
    if stored is None:
        body["lifetimeActions"] = [dict(a) for a in DEFAULT_ACTIONS]
        body["attributes"] = {}
        return body
    body["lifetimeActions"] = stored["lifetimeActions"]
    attrs = {"created": stored["created"], "updated": stored["updated"]}
    if stored.get("expiryTime"):
        attrs["expiryTime"] = stored["expiryTime"]
    body["attributes"] = attrs
    return body


def expiry_for_new_version(stored, now):
    """`exp` of a version made by rotate: now + the policy's expiryTime, if any."""
    if stored and stored.get("expiryTime"):
        return now + duration_seconds(stored["expiryTime"], "attributes.expiryTime")
    return None
