"""TF Serving's gRPC methods that answer for one model, by name: the service each belongs to and
the name REST gives the same call (the `method` label the gateway's request metrics share
between protocols). `HandleReloadConfigRequest` is not here: it changes a server, not a model.
"""

from __future__ import annotations

from dataclasses import dataclass

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


@dataclass(frozen=True)
class Rpc:
    name: str
    service: str
    rest_method: str  # predict, classify, ... (MultiInference has no REST route)

    @property
    def path(self) -> str:
        """The HTTP/2 path gRPC calls it by."""
        return f"/{self.service}/{self.name}"


RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        Rpc("Predict", PREDICTION_SERVICE, "predict"),
        Rpc("Classify", PREDICTION_SERVICE, "classify"),
        Rpc("Regress", PREDICTION_SERVICE, "regress"),
        Rpc("MultiInference", PREDICTION_SERVICE, "multi_inference"),
        Rpc("GetModelMetadata", PREDICTION_SERVICE, "metadata"),
        Rpc("GetModelStatus", MODEL_SERVICE, "status"),
    )
}
