"""gRPC surface: proto <-> domain translation and error mapping only.

The generated quota.v1 code is imported only inside this package: the server registers the service
through `add_services` and names it for health checks with `SERVICE_NAME`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpc import aio
from quota.v1 import quota_pb2, quota_pb2_grpc

if TYPE_CHECKING:  # at run time the servicer's module imports the app layer, which imports api.overload
    from quota_service.api.servicer import QuotaServicer

# the full name of quota.v1.QuotaService, as health checks and reflection know it
SERVICE_NAME: str = quota_pb2.DESCRIPTOR.services_by_name["QuotaService"].full_name


def add_services(server: aio.Server, servicer: QuotaServicer) -> None:
    """Register `servicer` as quota.v1.QuotaService on `server`."""
    quota_pb2_grpc.add_QuotaServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
