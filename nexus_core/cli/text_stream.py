"""Streaming a reply as it is written without splitting characters.

A byte-level tokenizer can end a token inside a multi-byte UTF-8 character (most CJK characters and emoji
take two or three tokens); decoding such a prefix gives U+FFFD. So the reply is decoded as a whole each time
and only text that is final is written: nothing while it ends in U+FFFD, and never text written already.
"""
from __future__ import annotations

import unicodedata
from typing import Callable


def for_terminal(text: str) -> str:
    """`text` with control characters other than newline and tab written as escapes (\\x1b, \\u202e): a reply
    (a random test model's especially) must not move the cursor, recolour or reverse the terminal it is shown in."""
    out = []
    for ch in text:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") or ch == "\u200d":  # keep emoji joiners
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class TextStream:
    def __init__(self, decode: Callable[[list[int]], str], write: Callable[[str], None]):
        self.decode, self.write = decode, write
        self.shown = ""

    def _show(self, text: str):
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.write(text[len(self.shown):])
            self.shown = text

    def update(self, ids: list[int]):
        """Call with all the reply's ids so far, after each new token."""
        text = self.decode(ids)
        if not text.endswith("\ufffd"):  # an unfinished character: wait for its remaining bytes
            self._show(text)

    def finish(self, text: str):
        """Write the rest of the final `text` (a genuinely invalid byte sequence stays U+FFFD). Should decoding
        have changed text already written (rare), that part is not written again."""
        if len(text) > len(self.shown):
            self.write(text[len(self.shown):])
        self.shown = text
