"""A CRI v1 client (gRPC over the runtime's unix socket): the kubelet's only way to containers.

Every RPC of the generated subset is available as a coroutine named after it in snake case,
taking keyword arguments of its request message: `await cri.run_pod_sandbox(config=...)`.
"""

from __future__ import annotations

import re

import grpc
from google.protobuf.message import Message

from . import runtime_pb2 as pb

_PACKAGE = pb.DESCRIPTOR.package


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class CRIError(Exception):
    def __init__(self, method: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{method}: {code.name}: {details}")
        self.method, self.code, self.details = method, code, details


class CRI:
    def __init__(self, endpoint: str = "unix:///run/containerd/containerd.sock", timeout: float = 120):
        self.endpoint = endpoint if endpoint.startswith("unix:") else f"unix://{endpoint}"
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(
            self.endpoint, options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)])
        self._calls: dict[str, tuple] = {}
        for svc in pb.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                req = getattr(pb, m.input_type.name)
                resp = getattr(pb, m.output_type.name)
                call = self.channel.unary_unary(f"/{_PACKAGE}.{svc.name}/{m.name}",
                                                request_serializer=req.SerializeToString,
                                                response_deserializer=resp.FromString)
                self._calls[_snake(m.name)] = (m.name, req, call)

    async def close(self) -> None:
        await self.channel.close()

    def __getattr__(self, name: str):
        try:
            method, req_cls, call = self._calls[name]
        except KeyError:
            raise AttributeError(name) from None

        async def invoke(request: Message | None = None, *, timeout: float | None = None, **fields):
            req = request if request is not None else req_cls(**fields)
            try:
                return await call(req, timeout=timeout or self.timeout)
            except grpc.aio.AioRpcError as e:
                raise CRIError(method, e.code(), e.details() or "") from None

        return invoke


messages = pb
