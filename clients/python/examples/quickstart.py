"""agentd from Python: a session, a turn that asks before it writes a file, the approval, the cost.

    python examples/quickstart.py --server 127.0.0.1:50051 [--token TOKEN]

It uses the scripted model (no key, no network), so it runs against any agentd as it starts.
"""

import argparse
import json

from agentd_client import Client, event_kind, scripted_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()

    model = scripted_model(
        [
            {"text": "Writing the note.", "toolCalls": [{"name": "write_file", "arguments": {"path": "note.txt", "content": "hello from Python"}}]},
            {"text": "Done: note.txt is written."},
        ]
    )
    with Client(args.server, token=args.token) as agentd:
        session = agentd.create_session(model=model, confirmation=True)
        print(f"session {session.id}")
        for event in agentd.stream_generate(session.id, "Write a note"):
            kind = event_kind(event)
            if kind == "text_delta":
                print(event.text_delta.text, end="", flush=True)
            elif kind == "confirmation_required":
                asked = event.confirmation_required.confirmation
                print(f"\n[asks] {asked.tool_name} {json.dumps(json.loads(asked.arguments_json))}: approving")
                agentd.confirm(session.id, asked.id, approve=True)
            elif kind == "tool_result":
                print(f"[{event.tool_result.name}] {event.tool_result.output}")
            elif kind == "turn_completed":
                usage = event.turn_completed.result.usage
                print(f"\n[done] {usage.input_tokens} in / {usage.output_tokens} out tokens, {usage.cost_usd:.6f} USD")
            elif kind in ("error", "cancelled"):
                print(f"\n[{kind}] {getattr(event, kind)}")
        replayed = [event_kind(e) for e in agentd.subscribe(session.id, after=0, follow=False)]
        print(f"[log] {len(replayed)} events: {', '.join(replayed)}")
        print(f"[messages] {len(agentd.messages(session.id))}")
        spent = agentd.owner_usage()
        budget = f"of {spent.budget_usd} USD" if spent.budget_usd > 0 else "no budget"
        print(f"[owner] {spent.owner}: {spent.usage.cost_usd:.6f} USD this {spent.period}, {budget}")


if __name__ == "__main__":
    main()
