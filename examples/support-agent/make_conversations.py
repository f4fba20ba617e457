"""Write conversations.jsonl: ~240 multi-turn support chats of an invented online shop, with two tools.

Every conversation is in the OpenAI message shape (``messages``) with the tools it may call (``tools``):
``lookup_order(order_id)`` returns an order's status, and ``start_return(order_id, reason)`` opens a return.
The agent calls a tool only when it needs one: for a status question with an order number, after asking for
the number when the customer gave none, or to open a return; shipping and return policy questions, thanks and
greetings are answered directly. Answers after a tool result quote the result (carrier, date, return label).

Run: python examples/support-agent/make_conversations.py   (deterministic: the same file every time)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order's status, carrier and delivery date.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "The order number, e.g. A1234"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "start_return",
            "description": "Open a return for an order and get a prepaid return label.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "reason": {"type": "string", "enum": ["damaged", "wrong_item", "not_needed", "too_small"]},
                },
                "required": ["order_id", "reason"],
            },
        },
    },
]
ITEMS = ["desk lamp", "rain jacket", "coffee grinder", "yoga mat", "phone case", "backpack", "kettle", "sneakers"]
CARRIERS = ["DHL", "UPS", "La Poste", "GLS"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
ASK_STATUS = [
    "Where is my order {oid}?",
    "Hi, can you check order {oid} for me?",
    "My order {oid} hasn't arrived yet. What's going on?",
    "Any news on {oid}? I ordered a {item}.",
    "Could you tell me the status of order {oid}?",
]
ASK_WITHOUT_ID = [
    "Where is my {item}? I ordered it last week.",
    "I'm still waiting for my package.",
    "Can you check on my delivery?",
]
RETURN_ASK = {
    "damaged": "The {item} from order {oid} arrived broken. I'd like to send it back.",
    "wrong_item": "I got the wrong item in order {oid}, I ordered a {item}.",
    "not_needed": "I don't need the {item} from order {oid} anymore, can I return it?",
    "too_small": "The {item} in order {oid} is too small. I want to return it.",
}
POLICY = [
    (
        "How long does shipping take?",
        "Standard shipping takes 2 to 4 working days; express arrives the next working day.",
    ),
    (
        "What is your return policy?",
        "You can return any item within 30 days of delivery, and the return label is free.",
    ),
    ("Do you ship abroad?", "Yes, we ship to every EU country; delivery takes 4 to 7 working days."),
    ("Can I change my delivery address?", "Yes, as long as the order has not shipped: reply with the new address."),
    ("Do you have a phone number?", "We answer here in the chat every day from 8:00 to 20:00."),
]
GREETINGS = ["Hi!", "Hello there", "Good morning", "Hey"]
THANKS = ["Thanks!", "Great, thank you.", "Perfect, thanks a lot.", "Ok, thanks"]


def order_id(rng: random.Random) -> str:
    return f"{rng.choice('ABCDK')}{rng.randint(1000, 9999)}"


def call(name: str, arguments: dict[str, str], number: int) -> dict[str, Any]:
    return {"id": f"call_{number}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def status_result(rng: random.Random, oid: str, item: str) -> tuple[dict[str, str], str]:
    """A lookup_order result and the answer that quotes it."""
    state = rng.choice(["shipped", "shipped", "processing", "delivered"])
    carrier, day = rng.choice(CARRIERS), rng.choice(DAYS)
    if state == "shipped":
        result = {"order_id": oid, "status": "shipped", "carrier": carrier, "expected": day, "item": item}
        return result, f"Your {item} (order {oid}) is on its way with {carrier} and should arrive on {day}."
    if state == "processing":
        result = {"order_id": oid, "status": "processing", "ships_by": day, "item": item}
        return result, f"Order {oid} is being packed right now; it will ship by {day}."
    result = {"order_id": oid, "status": "delivered", "delivered_on": day, "item": item}
    return result, f"Order {oid} was delivered on {day}. If you can't find it, check with your neighbours first."


def status_chat(rng: random.Random) -> list[dict[str, Any]]:
    oid, item = order_id(rng), rng.choice(ITEMS)
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.4:
        messages += [
            {"role": "user", "content": rng.choice(GREETINGS)},
            {"role": "assistant", "content": "Hello! How can I help you today?"},
        ]
    if rng.random() < 0.35:  # no order number: ask for it first, no call yet
        messages += [
            {"role": "user", "content": rng.choice(ASK_WITHOUT_ID).format(item=item)},
            {"role": "assistant", "content": "I can check that for you. What is your order number?"},
            {"role": "user", "content": f"It's {oid}."},
        ]
    else:
        messages.append({"role": "user", "content": rng.choice(ASK_STATUS).format(oid=oid, item=item)})
    result, answer = status_result(rng, oid, item)
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call("lookup_order", {"order_id": oid}, 0)]},
        {"role": "tool", "tool_call_id": "call_0", "content": json.dumps(result)},
        {"role": "assistant", "content": answer},
    ]
    if rng.random() < 0.5:
        messages += [
            {"role": "user", "content": rng.choice(THANKS)},
            {"role": "assistant", "content": "You're welcome! Anything else I can do?"},
        ]
    return messages


def return_chat(rng: random.Random) -> list[dict[str, Any]]:
    oid, item, reason = order_id(rng), rng.choice(ITEMS), rng.choice(list(RETURN_ASK))
    label = f"RT-{rng.randint(100000, 999999)}"
    result = {"order_id": oid, "return_id": label, "label_url": f"https://shop.example/returns/{label}.pdf"}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": RETURN_ASK[reason].format(item=item, oid=oid)},
        {
            "role": "assistant",
            "content": "Sorry about that. I'm opening a return for you now.",
            "tool_calls": [call("start_return", {"order_id": oid, "reason": reason}, 0)],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": json.dumps(result)},
        {
            "role": "assistant",
            "content": f"Done: return {label} is open. Print the free label at {result['label_url']} and drop the "
            "parcel at any post office within 30 days.",
        },
    ]
    if rng.random() < 0.4:
        messages += [
            {"role": "user", "content": "When do I get my money back?"},
            {
                "role": "assistant",
                "content": "The refund goes to your original payment method within 5 working days of the parcel "
                "reaching us.",
            },
        ]
    return messages


def policy_chat(rng: random.Random) -> list[dict[str, Any]]:
    question, answer = rng.choice(POLICY)
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if rng.random() < 0.5:  # then a status question in the same chat: the call comes at turn two
        messages += status_chat(rng)
    return messages


def main() -> None:
    rng = random.Random(22)
    makers = [status_chat] * 5 + [return_chat] * 3 + [policy_chat] * 3
    rows, seen = [], set()
    while len(rows) < 240:  # distinct conversations only: a repeat would weigh double and leak into eval
        messages = rng.choice(makers)(rng)
        key = json.dumps(messages)
        if key not in seen:
            seen.add(key)
            rows.append({"messages": messages, "tools": TOOLS})
    out = Path(__file__).with_name("conversations.jsonl")
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} conversations to {out}")


if __name__ == "__main__":
    main()
