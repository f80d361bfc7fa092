"""Is a backend endpoint serving? One GetModelStatus check of many endpoints at once.

Every call of a check is in flight at the same time (gRPC futures), so a check takes at most its
timeout however many endpoints hang. Checks run in each worker's health thread (health.Prober),
never in a request: `/readyz` reads the results the health tracker keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from tfstack.protocol.proto import get_model_status_pb2, model_pb2

# Asked for when no model is named: any answer, NOT_FOUND included, proves the server serves.
PROBE_MODEL = "__tfstack_readiness_probe__"
_NOT_SERVING = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


class ReadinessCheck:
    """`check(endpoints)` → {address: "" if serving, else why not}.

    With `ready_models`, an endpoint serves when each of them has an AVAILABLE version there;
    without, when its ModelService answers at all. An endpoint is anything with an `address` and
    a `client.method("GetModelStatus")` (balancing.Endpoint with upstream's client).
    """

    def __init__(self, ready_models: Iterable[str], timeout_s: float) -> None:
        self.ready_models = tuple(ready_models)
        self.timeout_s = timeout_s

    def __call__(self, endpoints: Iterable[Any]) -> dict[str, str]:
        names = self.ready_models or (PROBE_MODEL,)
        pending = [
            (endpoint.address, name, endpoint.client.method("GetModelStatus").future(
                get_model_status_pb2.GetModelStatusRequest(
                    model_spec=model_pb2.ModelSpec(name=name)
                ),
                timeout=self.timeout_s,
            ))
            for endpoint in endpoints
            for name in names
        ]
        problems: dict[str, str] = {}
        for address, name, call in pending:
            problem = self._problem(name, call)
            if not problems.get(address):
                problems[address] = problem
        return problems

    def _problem(self, name: str, call: Any) -> str:
        try:
            response = call.result()
        except grpc.RpcError as err:
            code = err.code()
            if self.ready_models or code in _NOT_SERVING:
                return f"{code.name if code else 'UNKNOWN'}: {err.details()}"
            return ""
        if not any(v.state == _AVAILABLE for v in response.model_version_status):
            return f"{name}: no version AVAILABLE"
        return ""
