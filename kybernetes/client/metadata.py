"""A client that asks for metadata only (PartialObjectMetadata), as client-go's metadata client.

Lists, watches and GETs return `{"kind": "PartialObjectMetadata", "metadata": {...}}` objects, so
informers over every kind (the garbage collector's) keep names, uids, owners and finalizers
without the bodies. Writes work as with `Client`; their answers are metadata only too.
"""

from __future__ import annotations

import aiohttp

from .rest import Client

METADATA_ACCEPT = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                   "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
                   "application/json")


class MetadataClient(Client):
    @classmethod
    def like(cls, client: Client) -> "MetadataClient":
        """A metadata client with the connection settings of `client` (its own session)."""
        return cls(client.config, timeout=client.timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        s = Client.session.fget(self)
        if s.headers.get("Accept") != METADATA_ACCEPT:
            s.headers["Accept"] = METADATA_ACCEPT
        return s
