"""Task prompts and chat rendering into token ids.

The chat structure comes from the folder's chat template. Text the user typed is tokenized with special-token
parsing switched off, so a prompt containing '<|im_end|>' stays plain text and cannot break the chat
structure. The only markup we honour in user text is '<image>' in editing instructions (the reference's
placeholder for the input image).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NexusError
from ..files.json_file import read_json

GENERATION_TEMPLATES = {
    "en": "Generate an image according to the following description: {}",
    "zh": "根据以下描述生成一张图像：{}",
}
# What the model writes before the image in its training data: the fast mode's fixed assistant prefix.
ASSISTANT_PREFIXES = {
    "generation": {"en": "Here is an image based on the description: ", "zh": "这是根据您的描述生成的图像："},
    "editing": {"en": "Here is the image: ", "zh": "以下为编辑后的图像："},
}
DEFAULT_QUESTION = "Please give a brief description of the image."
IMAGE_PLACEHOLDER = "<image>"
_MARK = "\ue000{}\ue001"  # private-use code points mark user text inside the rendered template
_MARK_RE = re.compile("\ue000(\\d+)\ue001")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def generation_prompt(prompt: str, language: str = "en") -> str:
    if not prompt or not prompt.strip():
        raise NexusError("The prompt is empty: describe the image to generate")
    if language == "auto":
        language = detect_language(prompt)
    if language not in GENERATION_TEMPLATES:
        raise NexusError(f"Unknown language {language!r}: use 'en', 'zh' or 'auto'")
    return GENERATION_TEMPLATES[language].format(prompt)


def editing_content(instruction: str, n_images: int = 1) -> list[dict]:
    """The reference: prepend '<image> ' unless the instruction has '<image>' (fixes quirk Q1), then each
    placeholder becomes the input image."""
    if not instruction or not instruction.strip():
        raise NexusError("The editing instruction is empty: say what to change")
    if IMAGE_PLACEHOLDER not in instruction:
        instruction = f"{IMAGE_PLACEHOLDER} {instruction}"
    parts = instruction.split(IMAGE_PLACEHOLDER)
    if len(parts) - 1 != n_images:
        raise NexusError(
            f"The instruction has {len(parts) - 1} '<image>' placeholders but {n_images} image(s) were given"
        )
    content: list[dict] = []
    for i, text in enumerate(parts):
        if i:
            content.append({"type": "image"})
        if text:
            content.append({"type": "text", "text": text})
    return content


@dataclass
class ChatFormatter:
    tokenizer: object
    template: str
    image_token: str = "<|image_pad|>"

    @classmethod
    def from_folder(cls, folder, tokenizer) -> "ChatFormatter":
        folder = Path(folder)
        template = None
        path = folder / "chat_template.json"
        if path.is_file():
            template = read_json(path, "the chat template ('chat_template')").get("chat_template")
        elif (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        template = template or getattr(tokenizer, "chat_template", None)
        if not template:
            raise NexusError(f"No chat template in {folder}: expected chat_template.json")
        return cls(tokenizer, template)

    def render(self, messages: list[dict], assistant_prefix: str = "") -> tuple[str, list[str]]:
        """Render with user texts replaced by markers; returns (rendered, user_texts)."""
        texts: list[str] = []
        marked = []
        for m in messages:
            content = m["content"]
            if isinstance(content, str):
                texts.append(content)
                content = _MARK.format(len(texts) - 1)
            else:
                items = []
                for item in content:
                    if item.get("type") == "text":
                        texts.append(item["text"])
                        item = {"type": "text", "text": _MARK.format(len(texts) - 1)}
                    items.append(item)
                content = items
            marked.append({"role": m["role"], "content": content})
        rendered = self.tokenizer.apply_chat_template(
            marked, chat_template=self.template, tokenize=False, add_generation_prompt=True
        )
        if assistant_prefix:
            texts.append(assistant_prefix)
            rendered += _MARK.format(len(texts) - 1)
        return rendered, texts

    def encode(self, messages: list[dict], image_token_counts: list[int] = (), assistant_prefix: str = "",
               ) -> tuple[list[int], str]:
        """Token ids of the conversation (each image placeholder expanded to its token count) and the text."""
        rendered, texts = self.render(messages, assistant_prefix)
        pieces = _MARK_RE.split(rendered)
        ids: list[int] = []
        counts = list(image_token_counts)
        shown = []
        for i, piece in enumerate(pieces):
            if i % 2:  # user text: no special-token parsing
                text = texts[int(piece)]
                ids += self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
                shown.append(text)
                continue
            chunks = piece.split(self.image_token)
            for j, chunk in enumerate(chunks):
                if j:
                    if not counts:
                        raise NexusError("The conversation has more image placeholders than images")
                    n = counts.pop(0)
                    ids += [self.tokenizer.convert_tokens_to_ids(self.image_token)] * n
                    shown.append(self.image_token * n)
                if chunk:
                    ids += self.tokenizer(chunk, add_special_tokens=False).input_ids
                    shown.append(chunk)
        if counts:
            raise NexusError(f"{len(counts)} image(s) given but the conversation has no place for them")
        return ids, "".join(shown)
