"""TF Serving's REST routing (model_servers/http_rest_api_util.cc ParseModelInfo), pure functions.

The regexes are TF Serving's own, matched against the whole path as sent (percent-escapes kept);
names and labels are then unescaped. The path routed on keeps the query and fragment
(`routed_path`), as TF Serving's does. Anything else under /v1/ is `Malformed request: <METHOD>
<path>` (docs/gateway.md, Endpoints). RE2's `\\d` is ASCII only, so the version is `[0-9]+` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from tfstack.protocol.errors import BadVersion, MalformedRequest, MissingModelName
from tfstack.protocol.proto import model_pb2

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
class ModelRef:
    """A model as a REST path names it: name plus an optional version or label (never both)."""

    name: str
    version: int | None = None
    label: str | None = None

    def spec(self, signature_name: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name, signature_name=signature_name)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        return spec


@dataclass(frozen=True)
class Route:
    method: str  # predict | classify | regress | status | metadata (the metrics label)
    model: ModelRef


def routed_path(target: str) -> str:
    """What TF Serving routes a request on, from its request target: the path with the query and
    fragment still on (util/net_http's `uri_path()` is evhttp's path, `?query`, `#fragment`), so
    `:predict?x=1` is a malformed request there, and here. An absolute-form target
    (`http://host/path`) loses its scheme and authority, as evhttp_uri_parse splits them off."""
    scheme = target.find("://")
    if target.startswith("/") or scheme < 0:
        return target
    rest = target[scheme + 3:]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    tail = rest[cut:]
    return tail if tail.startswith("/") else "/" + tail


def plain_path(target: str) -> str:
    """The path alone (no query or fragment): what evhttp looks registered handlers up by."""
    return routed_path(target).split("?", 1)[0].split("#", 1)[0]


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
        label = unquote(label) if label is not None else None
        return Route(method, ModelRef(unquote(name), None, label))
    number = int(version)
    if number > INT64_MAX:
        raise BadVersion(version)
    return Route(method, ModelRef(unquote(name), number, None))
