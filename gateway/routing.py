"""TF Serving's REST routes (tfstack/protocol/routes.py) with the model as the backend client
names it (`ModelRef`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.upstream import ModelRef
from tfstack.protocol import routes

is_v1 = routes.is_v1


@dataclass(frozen=True)
class Route:
    method: str  # predict | classify | regress | status | metadata (the metrics label)
    model: ModelRef


def resolve(http_method: str, path: str) -> Route:
    """The route for a /v1/ request; raises the error TF Serving answers for a bad one."""
    route = routes.resolve(http_method, path)
    return Route(route.method, ModelRef(route.name, route.version, route.label))
