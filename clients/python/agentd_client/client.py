"""The wrapper: plain methods over the generated AgentRuntime stub, events as iterators."""

from __future__ import annotations

import json
from typing import Iterator, Mapping, Optional, Sequence, Union

import grpc

from agentd.v1 import runtime_pb2 as pb
from agentd.v1 import runtime_pb2_grpc as rpc

ModelSpec = Union[pb.ModelConfig, Mapping[str, object], None]


class AgentdError(Exception):
    """A call the server refused: ``code`` is the gRPC status (grpc.StatusCode), ``details`` its message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def event_kind(event: pb.AgentEvent) -> str:
    """The event's payload name: "text_delta", "tool_call", "confirmation_required", "turn_completed"..."""
    return event.WhichOneof("payload") or ""


def scripted_model(steps: Sequence[Mapping[str, object]], repeat: bool = False) -> pb.ModelConfig:
    """The scripted model (no network, no key): it plays these steps, one per model call."""
    return pb.ModelConfig(provider="scripted", model="script", script_json=json.dumps({"steps": list(steps), "repeat": repeat}))


class Client:
    """One connection to an agentd server. Every method raises AgentdError when the server refuses."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        token: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """``token``: a bearer token (agentd token create); ``root_certificates``: PEM of the CA for TLS;
        ``timeout``: seconds each unary call may take (streams run until they end)."""
        # Pings on a quiet connection, so that a stream whose server went away ends with UNAVAILABLE
        # instead of waiting for ever (the server accepts pings every 10 s or more).
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
        if root_certificates is not None:
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates), options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = rpc.AgentRuntimeStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # Sessions

    def create_session(
        self,
        *,
        model: ModelSpec = None,
        system_prompt: Optional[str] = None,
        owner: str = "",
        labels: Optional[Mapping[str, str]] = None,
        ephemeral: bool = False,
        confirmation: Optional[bool] = None,
        budget_usd: Optional[float] = None,
    ) -> pb.Session:
        """A new session. ``model``: a ModelConfig or a dict of its fields (provider, model, base_url...);
        ``confirmation``: whether tool calls that ask wait for a person (the server's default otherwise)."""
        config = pb.SessionConfig()
        if model is not None:
            config.model.CopyFrom(model if isinstance(model, pb.ModelConfig) else pb.ModelConfig(**dict(model)))
        if system_prompt is not None:
            config.system_prompt = system_prompt
        if confirmation is not None:
            config.confirmation.enabled = confirmation
        if budget_usd is not None:
            config.limits.budget_usd = budget_usd
        request = pb.CreateSessionRequest(owner=owner, config=config, labels=dict(labels or {}), ephemeral=ephemeral)
        return self._unary(self._stub.CreateSession, request).session

    def get_session(self, session_id: str) -> pb.Session:
        return self._unary(self._stub.GetSession, pb.GetSessionRequest(session_id=session_id)).session

    def list_sessions(self, owner: str = "") -> list[pb.Session]:
        """Every session the caller may see (all pages)."""
        return self._all_pages(lambda token: self._unary(self._stub.ListSessions, pb.ListSessionsRequest(owner=owner, page_size=1000, page_token=token)), "sessions")

    def messages(self, session_id: str) -> list[pb.Message]:
        """The session's whole transcript."""
        return self._all_pages(lambda token: self._unary(self._stub.GetMessages, pb.GetMessagesRequest(session_id=session_id, page_size=1000, page_token=token)), "messages")

    @staticmethod
    def _all_pages(fetch, field: str) -> list:  # type: ignore[no-untyped-def]
        """Follows next_page_token until the last page."""
        items: list = []
        token = ""
        while True:
            page = fetch(token)
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                return items

    def owner_usage(self, owner: str = "") -> pb.OwnerUsage:
        """What an owner spent in the current budget period (all their sessions, destroyed ones
        included) and their budget: usage.cost_usd, budget_usd, period, period_end. The caller's
        own by default; only an admin may name another owner."""
        return self._unary(self._stub.GetOwnerUsage, pb.GetOwnerUsageRequest(owner=owner)).owner_usage

    def destroy_session(self, session_id: str) -> list[str]:
        """Destroys the session and its descendants; returns their ids."""
        return list(self._unary(self._stub.DestroySession, pb.DestroySessionRequest(session_id=session_id)).destroyed_session_ids)

    # Turns

    def stream_generate(self, session_id: str, prompt: str, *, timeout: Optional[float] = None) -> Iterator[pb.AgentEvent]:
        """Runs a turn and yields its events as they come, ending with turn_completed, error or cancelled.
        Leaving the loop early cancels the turn."""
        call = self._stub.StreamGenerate(pb.StreamGenerateRequest(session_id=session_id, prompt=prompt), metadata=self._metadata, timeout=timeout)
        try:
            for reply in call:
                yield reply.event
        except grpc.RpcError as error:
            raise _refused(error) from None
        finally:
            call.cancel()

    def generate(self, session_id: str, prompt: str) -> pb.TurnResult:
        """Runs a turn to its end (tool calls that ask must be answered by another caller meanwhile)."""
        return self._unary(self._stub.Generate, pb.GenerateRequest(session_id=session_id, prompt=prompt)).result

    def cancel(self, session_id: str) -> None:
        self._unary(self._stub.Cancel, pb.CancelRequest(session_id=session_id))

    # People in the loop

    def pending_confirmations(self, session_id: str) -> list[pb.PendingConfirmation]:
        return list(self._unary(self._stub.ListPendingConfirmations, pb.ListPendingConfirmationsRequest(session_id=session_id)).confirmations)

    def confirm(
        self,
        session_id: str,
        confirmation_id: str,
        approve: bool = True,
        *,
        reason: str = "",
        edited_arguments: Optional[Mapping[str, object]] = None,
        remember: bool = False,
    ) -> None:
        """Answers a tool call that waits for a person: approve (optionally with edited arguments) or reject.
        ``remember`` adds a rule so the same question is not asked again."""
        request = pb.ConfirmToolCallRequest(
            session_id=session_id,
            confirmation_id=confirmation_id,
            decision=pb.CONFIRM_DECISION_APPROVE if approve else pb.CONFIRM_DECISION_REJECT,
            reason=reason,
            remember=remember,
        )
        if edited_arguments is not None:
            request.edited_arguments_json = json.dumps(edited_arguments)
        self._unary(self._stub.ConfirmToolCall, request)

    # The event log

    def subscribe(self, session_id: str, after: int = 0, *, follow: bool = True) -> Iterator[pb.AgentEvent]:
        """The session's events with a sequence number above ``after`` (replayed from its log), then,
        with ``follow``, the live ones until the caller stops reading. Heartbeats are not yielded."""
        call = self._stub.Subscribe(pb.SubscribeRequest(session_id=session_id, after_sequence=after), metadata=self._metadata)
        try:
            for reply in call:
                if reply.HasField("event"):
                    yield reply.event
                elif reply.HasField("caught_up") and not follow:
                    return
        except grpc.RpcError as error:
            # This client cancels only after the loop has ended: a CANCELLED here came from elsewhere.
            raise _refused(error) from None
        finally:
            call.cancel()

    def _unary(self, method, request):  # type: ignore[no-untyped-def]
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise _refused(error) from None


def _refused(error: grpc.RpcError) -> AgentdError:
    call = error  # a grpc.Call as well
    return AgentdError(call.code(), call.details() or "")  # type: ignore[attr-defined]
