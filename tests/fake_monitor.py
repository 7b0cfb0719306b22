"""A stand-in for the Pulumi engine's resource monitor (and engine log), served over gRPC on
127.0.0.1, for running the component package the way `pulumi up` does: the engine hands the
package a Construct request naming this monitor, and the package registers its resources here.

It records every registration (type, name, parent, inputs as sent, which of them are secret),
every invoke and every log message, and answers like the engine does: a URN for each resource,
its inputs echoed as its outputs, plus an `arn` and an `id` for AWS resources (the components
read both), and the account of the credentials for aws:index/getCallerIdentity.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)

CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
# What this engine supports, by name (SupportsFeature, how older engines are asked) and by
# number (GetDeploymentInfo): enough for secrets and output values to be sent as such.
FEATURES = {
    "secrets": resource_pb2.RESOURCE_MONITOR_FEATURE_SECRETS,
    "resourceReferences": resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES,
    "outputValues": resource_pb2.RESOURCE_MONITOR_FEATURE_OUTPUT_VALUES,
    "aliasSpecs": resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS,
    "deletedWith": resource_pb2.RESOURCE_MONITOR_FEATURE_DELETED_WITH,
}


def plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as Python values, secrets left wrapped in their signature (so they show)."""
    return dict(rpc.deserialize_properties(struct, keep_unknowns=True))


def secret_keys(struct: struct_pb2.Struct) -> set[str]:
    """The top-level properties sent as secrets."""
    return {key for key, value in plain(struct).items() if rpc.is_rpc_secret(value)}


@dataclass
class Registration:
    typ: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    """The inputs as sent, secrets unwrapped."""
    secrets: set[str]
    """Which inputs were sent as secrets."""
    dependencies: set[str]
    outputs: dict[str, Any] = field(default_factory=dict)
    """What the component registered as its outputs (components only)."""


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str


class FakeMonitor(resource_pb2_grpc.ResourceMonitorServicer, engine_pb2_grpc.EngineServicer):
    """ResourceMonitor and Engine in one gRPC server: `address` is both the engine address the
    plugin is started with and the monitor endpoint of each Construct request."""

    def __init__(self, account_id: str, project: str = "consumer", stack: str = "dev") -> None:
        self.account_id = account_id
        self.project, self.stack = project, stack
        self.stack_urn = f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"
        self.resources: list[Registration] = []
        self.invokes: list[Invoke] = []
        self.logs: list[tuple[int, str, str]] = []
        self.preview = False
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        resource_pb2_grpc.add_ResourceMonitorServicer_to_server(self, self._server)
        engine_pb2_grpc.add_EngineServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeMonitor:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

    def reset(self, *, preview: bool = False) -> None:
        with self._lock:
            self.resources, self.invokes, self.logs = [], [], []
            self.preview = preview

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.typ == typ]

    def by_urn(self, urn: str) -> Registration:
        [found] = [r for r in self.resources if r.urn == urn]
        return found

    # --- ResourceMonitor ------------------------------------------------------------------------

    def GetDeploymentInfo(
        self, request: empty_pb2.Empty, context: Any
    ) -> resource_pb2.DeploymentInfo:
        return resource_pb2.DeploymentInfo(supportedFeatures=FEATURES.values())

    def SupportsFeature(
        self, request: resource_pb2.SupportsFeatureRequest, context: Any
    ) -> resource_pb2.SupportsFeatureResponse:
        return resource_pb2.SupportsFeatureResponse(hasSupport=request.id in FEATURES)

    def RegisterResource(
        self, request: resource_pb2.RegisterResourceRequest, context: Any
    ) -> resource_pb2.RegisterResourceResponse:
        parent = request.parent or self.stack_urn
        # A URN names the types of the resource's ancestors below the stack: parent$child.
        qualified = request.type
        if parent != self.stack_urn:
            qualified = f"{parent.split('::')[2]}${request.type}"
        urn = f"urn:pulumi:{self.stack}::{self.project}::{qualified}::{request.name}"
        with self._lock:
            inputs = {k: rpc.unwrap_rpc_secret(v) for k, v in plain(request.object).items()}
            self.resources.append(
                Registration(
                    typ=request.type,
                    name=request.name,
                    urn=urn,
                    parent=parent,
                    custom=request.custom,
                    inputs=inputs,
                    secrets=secret_keys(request.object),
                    dependencies=set(request.dependencies),
                )
            )
        outputs = struct_pb2.Struct()
        outputs.CopyFrom(request.object)
        resource_id = ""
        if request.custom:
            resource_id = "" if self.preview else f"{request.name}-id"
            if "arn" not in outputs:
                outputs["arn"] = f"arn:aws:fake::{self.account_id}:{request.type}/{request.name}"
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=outputs)

    def RegisterResourceOutputs(
        self, request: resource_pb2.RegisterResourceOutputsRequest, context: Any
    ) -> empty_pb2.Empty:
        with self._lock:
            self.by_urn(request.urn).outputs = plain(request.outputs)
        return empty_pb2.Empty()

    def Invoke(
        self, request: resource_pb2.ResourceInvokeRequest, context: Any
    ) -> resource_pb2.ResourceInvokeResponse:
        with self._lock:
            self.invokes.append(Invoke(request.tok, plain(request.args), request.provider))
        result = struct_pb2.Struct()
        if request.tok == CALLER_IDENTITY:
            result.update(
                {
                    "accountId": self.account_id,
                    "arn": f"arn:aws:iam::{self.account_id}:user/deployer",
                    "userId": "AIDAEXAMPLE",
                    "id": self.account_id,
                }
            )
        else:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no fake for {request.tok}")
        return resource_pb2.ResourceInvokeResponse(**{"return": result})

    # --- Engine ---------------------------------------------------------------------------------

    def Log(self, request: engine_pb2.LogRequest, context: Any) -> empty_pb2.Empty:
        with self._lock:
            self.logs.append((request.severity, request.urn, request.message))
        return empty_pb2.Empty()

    def GetRootResource(
        self, request: engine_pb2.GetRootResourceRequest, context: Any
    ) -> engine_pb2.GetRootResourceResponse:
        return engine_pb2.GetRootResourceResponse(urn=self.stack_urn)
