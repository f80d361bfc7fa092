"""TF Serving's REST routing (model_servers/http_rest_api_util.cc ParseModelInfo), pure functions.

The regexes are TF Serving's own, matched against the whole path as sent (percent-escapes kept);
names and labels are then unescaped. Anything else under /v1/ is `Malformed request: <METHOD>
<path>` (docs/gateway.md, Endpoints). RE2's `\\d` is ASCII only, so the version is `[0-9]+` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from tfstack.protocol.errors import BadVersion, MalformedRequest, MissingModelName

V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
INT64_MAX = 2**63 - 1
POST_METHODS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class Route:
    """A /v1/ request: the API method (predict | classify | regress | status | metadata) and the
    model as the path names it (a version or a label, never both)."""

    method: str
    name: str
    version: int | None = None
    label: str | None = None


def is_v1(path: str) -> bool:
    return V1.fullmatch(path) is not None


def resolve(http_method: str, path: str) -> Route:
    """The route for a /v1/ request; raises the error TF Serving answers for a bad one."""
    if http_method == "POST":
        match = POST.fullmatch(path)
        # The regex ignores case but the method token is dispatched case-sensitively.
        if match and match.group(4) in POST_METHODS:
            return _route(match.group(4), *match.group(1, 2, 3))
    elif http_method == "GET":
        match = GET.fullmatch(path)
        if match:
            if match.group(1) is None:
                raise MissingModelName()
            # Only the exact token is metadata: TF Serving answers `/METADATA` with the status.
            method = "metadata" if match.group(4) == "metadata" else "status"
            return _route(method, *match.group(1, 2, 3))
    raise MalformedRequest(http_method, path)


def _route(method: str, name: str, version: str | None, label: str | None) -> Route:
    if version is None:
        return Route(method, unquote(name), None, unquote(label) if label is not None else None)
    number = int(version)
    if number > INT64_MAX:
        raise BadVersion(version)
    return Route(method, unquote(name), number, None)
