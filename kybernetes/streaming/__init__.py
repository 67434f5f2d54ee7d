"""The streaming protocols of exec, attach and port-forward, shared by the API server's proxy
and the node agent: the WebSocket channel protocol (`channels`), SPDY/3.1 (`spdy`), and the
server ends (`remotecommand.serve_exec`, `portforward.serve_portforward`)."""
