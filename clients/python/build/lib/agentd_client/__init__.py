"""A small, typed Python client for agentd (https://github.com/...: the agentd gRPC runtime).

    from agentd_client import Client

    with Client("127.0.0.1:50051") as agentd:
        session = agentd.create_session(model={"provider": "openai", "model": "gpt-4o-mini"})
        for event in agentd.stream_generate(session.id, "hello"):
            ...

The generated stubs are importable too: ``from agentd.v1 import runtime_pb2``.
"""

from agentd_client.client import AgentdError, Client, event_kind, scripted_model

__all__ = ["AgentdError", "Client", "event_kind", "scripted_model"]
