"""DefaultBinder: POST pods/NAME/binding, which sets spec.nodeName."""

from kybernetes.api.errors import ApiError

from ..framework import Plugin, error


class DefaultBinder(Plugin):
    name = "DefaultBinder"

    async def bind(self, state, pi, node_name):
        client = self.handle.client
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pi.name, "namespace": pi.namespace, "uid": pi.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        try:
            await client.request("POST", f"/api/v1/namespaces/{pi.namespace}/pods/{pi.name}/binding",
                                 body=body)
        except ApiError as e:
            return error(str(e))
        return None
