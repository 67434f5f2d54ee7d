"""A client that asks for metadata only (PartialObjectMetadata), as client-go's metadata client.

Lists, watches and GETs return `{"kind": "PartialObjectMetadata", "metadata": {...}}` objects, so
informers over every kind (the garbage collector's) keep names, uids, owners and finalizers
without the bodies. Writes work as with `Client`; their answers are metadata only too.
"""

from __future__ import annotations

from .rest import Client

METADATA_ACCEPT = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                   "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
                   "application/json")


class MetadataClient(Client):
    # Sent on every request, plain ones and watches alike.
    accept = METADATA_ACCEPT

    @classmethod
    def like(cls, client: Client) -> "MetadataClient":
        """A metadata client with the connection settings of `client` (its own connections)."""
        return cls(client.config, timeout=client.timeout)
