"""TF Serving's REST routing (model_servers/http_rest_api_handler.cc), as pure functions.

The regexes are TF Serving's own, matched against the whole path; anything else under /v1/ is
`Malformed request: <METHOD> <path>` (docs/gateway.md, Endpoints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.errors import BadVersion, MalformedRequest, MissingModelName
from gateway.upstream import ModelRef

V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
INT64_MAX = 2**63 - 1
POST_METHODS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class Route:
    method: str  # predict | classify | regress | status | metadata (the metrics label)
    model: ModelRef


def is_v1(path: str) -> bool:
    return V1.fullmatch(path) is not None


def resolve(http_method: str, path: str) -> Route:
    """The route for a /v1/ request; raises the error TF Serving answers for a bad one."""
    if http_method == "POST":
        match = POST.fullmatch(path)
        # The regex ignores case but the method token is dispatched case-sensitively.
        if match and match.group(4) in POST_METHODS:
            return Route(match.group(4), _model(match.group(1), match.group(2), match.group(3)))
    elif http_method == "GET":
        match = GET.fullmatch(path)
        if match and match.group(4) in (None, "metadata"):
            if match.group(1) is None:
                raise MissingModelName()
            method = "metadata" if match.group(4) else "status"
            return Route(method, _model(match.group(1), match.group(2), match.group(3)))
    raise MalformedRequest(http_method, path)


def _model(name: str, version: str | None, label: str | None) -> ModelRef:
    if version is None:
        return ModelRef(unquote(name), None, unquote(label) if label is not None else None)
    number = int(version)
    if number > INT64_MAX:
        raise BadVersion(version)
    return ModelRef(unquote(name), number, None)
