"""What the small models read and write through the API: the chat template and stop sequences.

The CPU models (the bundled Shakespeare model, llama2.c's TinyStories models)
were never tuned for chat, so a conversation is rendered the way their
training text looks, as a script: each message a speaker's turn, ``ROLE:``
on its own line (``SYSTEM``, ``USER``, ``ASSISTANT``), then the text, then a
blank line; the prompt ends with ``ASSISTANT:`` and a new line, and the model
speaks next::

    USER:
    Who is there?

    ASSISTANT:

A ``content`` given as a list of parts (the OpenAI form) is the join of its
text parts.
"""

from __future__ import annotations

ROLES = {"system": "SYSTEM", "developer": "SYSTEM", "user": "USER", "assistant": "ASSISTANT"}
MAX_STOP = 4  # as OpenAI's API


def content_text(content, where: str) -> str:
    """A message's content as text: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ValueError(f"{where}.content must be a string or a list of text parts ({{'type': 'text', 'text': '...'}})")


def chat_prompt(messages: list[dict]) -> str:
    """The prompt the model continues for an OpenAI ``messages`` list (see the module docstring).

    >>> chat_prompt([{"role": "user", "content": "Who is there?"}])
    'USER:\\nWho is there?\\n\\nASSISTANT:\\n'
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} objects")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        turns.append(f"{ROLES[m['role']]}:\n{content_text(m.get('content'), f'messages[{i}]')}\n\n")
    return "".join(turns) + f"{ROLES['assistant']}:\n"


def stop_list(stop) -> list[str]:
    """``stop`` (None, a string, or up to four strings) as a list of non-empty strings."""
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > MAX_STOP or not all(isinstance(s, str) and s for s in stops):
        raise ValueError(f"stop must be a non-empty string or a list of at most {MAX_STOP} non-empty strings")
    return stops


class StopFilter:
    """Cuts generated text at the first stop sequence to complete, holding back only what could still be the start of one.

    ``feed(piece)`` returns the text now safe to send and whether a stop was met
    (after which nothing more is sent); ``flush()`` returns what was held back.

    >>> f = StopFilter(["\\n\\n"])
    >>> f.feed("Ay,\\n"), f.feed("\\nme"), f.flush()
    (('Ay,', False), ('', True), '')
    """

    def __init__(self, stops: list[str]):
        self.stops, self.held, self.stopped = stops, "", False

    def feed(self, piece: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        text = self.held + piece
        found = [(i + len(s), i) for s, i in ((s, text.find(s)) for s in self.stops) if i >= 0]
        if found:  # the stop completed first wins (then the longer one): how the text is split into pieces cannot matter
            cut = min(found)[1]
            self.held, self.stopped = "", True
            return text[:cut], True
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return "" if self.stopped else held
