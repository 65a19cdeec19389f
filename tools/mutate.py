#!/usr/bin/env python3
"""Mutation pass: plant small plausible bugs, run the tests that should catch them, report the survivors.

    python3 tools/mutate.py                      # curated bugs + a seeded sample of operator mutants (~15 min)
    python3 tools/mutate.py --list               # list the mutants, run nothing
    python3 tools/mutate.py --only S2 Q7a        # some curated ones
    python3 tools/mutate.py --sample 0 --nodes-sample 0   # curated only
    python3 tools/mutate.py --sample -1          # every operator mutant (about 1000: many hours)
    python3 tools/mutate.py --paths nodes        # operator mutants in nodes/ only
    python3 tools/mutate.py --tests tests/test_ar_parity.py   # run these tests for every mutant instead

The working tree is never written: the repository's files (git ls-files, tracked and untracked-not-ignored) are
copied to a temporary folder, each mutant is written there, its tests run in a subprocess (PYTHONPATH = the
copy, no bytecode cache, a timeout), and the file is restored from the original before the next mutant. Ctrl-C
stops the pass and still prints the table for what ran.

Two kinds of mutants:
  * curated (CURATED below): plausible bugs of the classes the suite must catch (assembly and defaults,
    sampling processors, the quirks Q7/Q8, slerp, the understanding resizes); a stale one (its snippet no
    longer found exactly once) is reported, not run;
  * operator mutants, generated from the AST of nexus_core/ar, nexus_core/decoder and nodes/ (or --paths): each
    tagged with its class: [op] comparison (boundaries < / <=) and arithmetic swaps, and/or swaps, dropped
    `not`/unary minus; [const] int constants +1, floats doubled, booleans flipped; [round] floor <-> round, ceil ->
    floor; [swap] the first two arguments of a call swapped (two variables); [drop] a call made for its effect
    removed (an unlink of a temp or lock, a cache reset ...); [cast] a dtype cast or move removed (.float(),
    .to(x) ...); [key] a cache key or version stamp (a tuple indexing a dict, given to .get/.setdefault/.pop, or
    named *key*/*stamp*) that forgets one of its parts; [edge] a slice's end one less (block and chunk edges). Never inside strings, f-strings, raise
    statements, log calls or annotations.

Each mutant runs the test files mapped to its source file (TEST_MAP), with -x so a killed mutant stops early.
Killed = the tests fail, error or time out; survived = they pass. nodes/ mutants are reported apart: without
COMFYUI_PATH most of what could catch them (tests/comfyui) skips.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCOPE = ("nexus_core/ar", "nexus_core/decoder", "nodes", "nexus_core/embeddings/conditioning.py",
         "nexus_core/memory/fp8.py", "nexus_core/memory/offload.py")
# what changed in the round of 2026-12-04 (the shared server and damaged files): `--paths` for that round's pass
ROUND_2026_12_04 = ("nexus_core/settings/names.py", "nexus_core/settings/bounds.py",
                    "nexus_core/files/safetensors_check.py", "nexus_core/files/torch_zip_check.py",
                    "nexus_core/files/safetensors_read.py", "nexus_core/files/atomic.py", "nexus_core/ar/checkpoint.py",
                    "nexus_core/loading/streamed.py", "nexus_core/flux/lora_layouts.py", "nexus_core/cli/checks.py",
                    "nodes/inputs/checks.py", "nodes/inputs/paths.py", "nodes/host/progress.py", "nodes/host/lora_notice.py",
                    "nodes/host/cast_ops.py")

# (id, file, original snippet, mutated snippet, what the bug is). Each snippet must occur exactly once.
CURATED = [
    # assembly of the decode path and the CLI's defaults
    ("A1", "nexus_core/pipeline.py", "pooled = text.clip_pooled(\"\")", "pooled = text.clip_pooled(s.negative)",
     "positive pooled from CLIP(negative) instead of CLIP(\"\")"),
    ("A2", "nexus_core/pipeline.py", "neg = negative_conditioning(text, s.negative) if",
     "neg = negative_conditioning(text, \"\") if", "the negative prompt is ignored (always \"\")"),
    ("A3", "nexus_core/settings/defaults.py", "guidance=3.5, seed=52)", "guidance=3.5, seed=42)",
     "generation's default seed 42 instead of 52"),
    ("A4", "nexus_core/settings/defaults.py", "width=512, height=512, steps=50, cfg=1.0",
     "width=512, height=512, steps=28, cfg=1.0", "editing's default steps 28 (FLUX's) instead of 50"),
    ("A5", "nexus_core/cli/decode.py", "a.negative, a.guidance, a.seed, a.max_side)",
     "a.negative, a.guidance, 52, a.max_side)",
     "the CLI drops --seed when building the decode settings (editing gets 52)"),
    ("A6", "nexus_core/ar/vit.py", "return encode_image(ar, image, 324, \"squash\")",
     "return encode_image(ar, image, 324, \"crop\")", "reference embeddings from a centre crop, not the squash"),
    ("A7", "nexus_core/pipeline.py", "noise = initial_noise(embeds.shape[0], s.height, s.width, s.seed)",
     "noise = initial_noise(embeds.shape[0], s.width, s.height, s.seed)", "noise drawn with width and height swapped"),
    # sampling processors
    ("S1", "nexus_core/ar/sampling.py", "scores = scores / cfg.temperature", "scores = scores * cfg.temperature",
     "temperature multiplies instead of dividing"),
    ("S2", "nexus_core/ar/sampling.py",
     "picked = torch.where(picked < 0, picked * cfg.repetition_penalty, picked / cfg.repetition_penalty)",
     "picked = picked / cfg.repetition_penalty", "repetition penalty divides negative logits too"),
    ("S3", "nexus_core/ar/sampling.py", "k = min(cfg.top_k, scores.numel())", "k = cfg.top_k",
     "top-k larger than the vocabulary is not clamped"),
    ("S4", "nexus_core/ar/sampling.py", "drop = cum <= (1 - cfg.top_p)", "drop = cum <= cfg.top_p",
     "top-p threshold inverted"),
    ("S5", "nexus_core/ar/decoding.py", "tok = choose_token(scores, torch.tensor(seq), sampling, gen)",
     "tok = choose_token(scores, torch.tensor(seq[-len(out.generated_ids) - 1:]), sampling, gen)",
     "repetition penalty over the reply (and last prompt token) only, not the prompt"),
    # quirks
    ("Q8", "nexus_core/ar/decoding.py", "        scores[tk.vision_end] = -float(\"inf\")",
     "        if opts.want_image:\n            scores[tk.vision_end] = -float(\"inf\")",
     "<|vision_end|> masked only on image requests"),
    ("Q7a", "nexus_core/ar/decoding.py", "after = q + n_img + 1 if", "after = q + n_img if",
     "<|vision_end|> one position early in the reference layout"),
    ("Q7b", "nexus_core/ar/decoding.py", "delta = after - (len(seq) - 1)", "delta = after - len(seq)",
     "text after the span one position early"),
    ("Q7c", "nexus_core/ar/decoding.py", "opts.positions_after_image == \"reference\" else q + 1 + side",
     "opts.positions_after_image == \"reference\" else q + side", "training layout off by one"),
    # slerp
    ("B1", "nexus_core/embeddings/blend.py",
     "    wa = torch.where(near, torch.full_like(sin, 1 - w), torch.sin((1 - w) * theta) / sin)\n"
     "    wb = torch.where(near, torch.full_like(sin, w), torch.sin(w * theta) / sin)",
     "    wa = torch.full_like(sin, 1 - w)\n    wb = torch.full_like(sin, w)",
     "normalised lerp instead of slerp (same end points and norms)"),
    ("B2", "nexus_core/embeddings/blend.py", "theta = torch.acos(cos)", "theta = torch.acos(cos) / 2",
     "half the angle (end points still exact)"),
    # the understanding path's resizes
    ("R1", "nexus_core/ar/images.py", "smart_resize(image.height, image.width, max_pixels=VISION_INFO_MAX_PIXELS)",
     "smart_resize(image.height, image.width, max_pixels=max_pixels)",
     "process_vision_info's resize uses the AR bound: one resize instead of two"),
    ("R2", "nexus_core/ar/images.py", "return bound_image(_resize(image, (w, h), Image.BICUBIC), max_pixels)",
     "return bound_image(_resize(image, (w, h), Image.BILINEAR), max_pixels)",
     "process_vision_info's resize with the wrong filter"),
    ("R3", "nexus_core/ar/understand.py", "im = prepare_understanding_image(load_image(image),",
     "from .images import bound_image; im = bound_image(load_image(image),",
     "understand() skips process_vision_info's resize"),
]

FAST_AR = ["tests/test_ar_parity.py"]
# First match wins; order the files so that the quickest sensitive ones come first (-x stops at the first failure).
TEST_MAP = [
    ("nexus_core/settings/names.py", ["tests/test_server_checks.py"]),
    ("nexus_core/settings/bounds.py", ["tests/test_server_checks.py"]),
    ("nexus_core/files/safetensors_check.py", ["tests/test_damaged_files.py", "tests/test_one_file_ar_damage.py",
                                               "tests/test_decoder_files.py"]),
    ("nexus_core/files/torch_zip_check.py", ["tests/test_damaged_files.py", "tests/test_decoder_files.py"]),
    ("nexus_core/files/safetensors_read.py", ["tests/test_big_tensor_paths.py", "tests/test_streamed_load.py",
                                              "tests/test_damaged_files.py"]),
    ("nexus_core/ar/checkpoint.py", ["tests/test_damaged_files.py", "tests/test_one_file_ar_damage.py",
                                     "tests/test_server_checks.py", "tests/test_streamed_load.py",
                                     "tests/test_rules.py"]),
    ("nexus_core/loading/streamed.py", ["tests/test_one_file_ar_damage.py", "tests/test_streamed_load.py",
                                        "tests/test_big_tensor_paths.py"]),
    ("nexus_core/flux/lora_layouts.py", ["tests/test_lora_layouts.py", "tests/test_writers_under_faults.py"]),
    ("nexus_core/cli/checks.py", ["tests/test_convert_safety.py", "tests/test_full_size_plan_first.py",
                                  "tests/test_cli.py", "tests/test_bad_input.py", "tests/test_bad_input_3.py"]),
    ("nodes/inputs/checks.py", ["tests/test_server_checks.py", "tests/test_host_glue.py", "tests/comfyui"]),
    ("nodes/inputs/paths.py", ["tests/test_server_checks.py", "tests/test_host_glue.py", "tests/test_node_helpers.py",
                        "tests/comfyui"]),
    ("nodes/host/progress.py", ["tests/test_server_checks.py", "tests/comfyui"]),
    ("nodes/host/lora_notice.py", ["tests/test_host_glue.py", "tests/comfyui"]),
    ("nodes/host/cast_ops.py", ["tests/test_host_glue.py", "tests/comfyui"]),
    ("nexus_core/ar/sampling.py", ["tests/test_sampling_oracles.py", "tests/test_ar_parity.py",
                                   "tests/test_ar_robustness.py"]),
    ("nexus_core/ar/decoding.py", ["tests/test_quirks.py", "tests/test_ar_parity.py", "tests/test_sampling_oracles.py",
                                   "tests/test_ar_robustness.py"]),
    ("nexus_core/ar/positions.py", ["tests/test_ar_parity.py", "tests/test_quirks.py"]),
    ("nexus_core/ar/images.py", ["tests/test_oracles.py", "tests/test_ar_parity.py", "tests/test_ar_robustness.py"]),
    ("nexus_core/ar/understand.py", ["tests/test_oracles.py", "tests/test_input_checks.py", "tests/test_ar_parity.py",
                                     "tests/test_ar_robustness.py"]),
    ("nexus_core/ar/vit.py", ["tests/test_ar_parity.py", "tests/test_assembly_golden.py",
                              "tests/test_ar_robustness.py"]),
    ("nexus_core/ar/", ["tests/test_rules.py", "tests/test_ar_parity.py", "tests/test_input_checks.py",
                        "tests/test_ar_robustness.py",
                        "tests/test_quirks.py", "tests/test_cli.py"]),
    ("nexus_core/decoder/keymap.py", ["tests/test_decoder_files.py", "tests/test_decoder_parity.py"]),
    ("nexus_core/decoder/convert.py", ["tests/test_decoder_files.py", "tests/test_convert_safety.py",
                                       "tests/test_gguf.py"]),
    ("nexus_core/decoder/gguf_file.py", ["tests/test_rules.py", "tests/test_gguf.py", "tests/test_file_writes.py"]),
    ("nexus_core/decoder/ids.py", ["tests/test_node_layer.py", "tests/test_decoder_parity.py"]),
    ("nexus_core/decoder/checkpoint.py", ["tests/test_decoder_files.py", "tests/test_decoder_parity.py"]),
    ("nexus_core/decoder/", ["tests/test_decoder_parity.py", "tests/test_assembly_golden.py",
                             "tests/test_pipeline.py", "tests/test_input_checks.py"]),
    ("nexus_core/embeddings/blend.py", ["tests/test_oracles.py", "tests/test_node_helpers.py"]),
    ("nexus_core/pipeline.py", ["tests/test_assembly_golden.py", "tests/test_pipeline.py"]),
    ("nexus_core/settings/defaults.py", ["tests/test_assembly_golden.py", "tests/test_pipeline.py"]),
    ("nexus_core/cli/decode.py", ["tests/test_assembly_golden.py", "tests/test_cli.py", "tests/test_pipeline.py"]),
    ("nexus_core/cli/commands.py", ["tests/test_assembly_golden.py", "tests/test_cli.py", "tests/test_pipeline.py"]),
    ("nexus_core/embeddings/conditioning.py", ["tests/test_rules.py", "tests/test_node_layer.py"]),
    ("nexus_core/memory/fp8.py", ["tests/test_memory_levers.py", "tests/test_big_tensor_paths.py",
                                  "tests/test_blocked_cast.py"]),
    ("nexus_core/memory/offload.py", ["tests/test_rules.py", "tests/test_memory_levers.py"]),
    ("nexus_core/files/atomic.py", ["tests/test_rules.py", "tests/test_file_writes.py", "tests/test_convert_safety.py",
                                    "tests/test_bad_input_3.py", "tests/test_cli_manners.py",
                                    "tests/test_writers_under_faults.py"]),
    ("nexus_core/files/safetensors_write.py", ["tests/test_rules.py", "tests/test_file_writes.py",
                                               "tests/test_full_size_files.py", "tests/test_convert_safety.py",
                                               "tests/test_bad_input_3.py"]),
    ("nexus_core/files/", ["tests/test_full_size_files.py", "tests/test_streamed_load.py", "tests/test_bad_input_3.py",
                           "tests/test_decoder_files.py"]),
    ("nexus_core/images/", ["tests/test_rules.py", "tests/test_images_modes.py", "tests/test_bad_input_3.py",
                            "tests/test_node_helpers.py"]),
    ("nexus_core/settings/validate.py", ["tests/test_rules.py", "tests/test_validate.py", "tests/test_bad_input.py",
                                         "tests/test_bad_input_3.py"]),
    ("nexus_core/loading/companions.py", ["tests/test_rules.py", "tests/test_companions.py"]),
    ("nexus_core/loading/", ["tests/test_streamed_load.py", "tests/test_memory_levers.py"]),
    ("nexus_core/synthetic/", ["tests/test_full_size_files.py"]),
    ("nexus_core/cli/", ["tests/test_cli.py", "tests/test_bad_input.py", "tests/test_bad_input_3.py",
                         "tests/test_cli_manners.py"]),
    ("nodes/host/text_source.py", ["tests/test_node_layer.py", "tests/comfyui"]),
    ("nodes/", ["tests/test_node_helpers.py", "tests/test_node_layer.py", "tests/comfyui"]),
]


@dataclass
class Mutant:
    id: str
    path: str  # relative to the repository
    description: str
    kind: str  # curated | operator
    line: int = 0
    original: str = ""  # curated: the snippet
    mutated: str = ""
    span: tuple[int, int] | None = None  # operator: byte offsets in the file
    result: str = ""  # killed | survived | timeout | stale | error
    detail: str = ""
    seconds: float = 0.0
    tests: list[str] = field(default_factory=list)

    def apply(self, source: str) -> str | None:
        if self.kind == "curated":
            return source.replace(self.original, self.mutated, 1) if source.count(self.original) == 1 else None
        data = source.encode()
        a, b = self.span
        return (data[:a] + self.mutated.encode() + data[b:]).decode()


def curated_mutants() -> list[Mutant]:
    out = []
    for mid, path, original, mutated, desc in CURATED:
        src = (REPO / path).read_text() if (REPO / path).is_file() else ""
        line = src[:src.find(original)].count("\n") + 1 if original in src else 0
        out.append(Mutant(mid, path, desc, "curated", line, original, mutated))
    return out


# --- operator mutants from the AST ---------------------------------------------------------------------------------

ROUNDING = {"floor": "round", "round": "floor", "ceil": "floor", "trunc": "round"}
CASTS = {"float", "double", "half", "bfloat16", "int", "long", "contiguous", "detach", "clone"}
CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult}
LOG_NAMES = {"log", "logger", "logging", "warnings", "print"}


class _Collector(ast.NodeVisitor):
    def __init__(self):
        self.found: list[tuple[ast.AST, str]] = []  # (node, replacement source)

    def _skip_call(self, node: ast.Call) -> bool:
        f = node.func
        base = f.value if isinstance(f, ast.Attribute) else f
        return isinstance(base, ast.Name) and base.id in LOG_NAMES

    def visit(self, node):
        if isinstance(node, (ast.JoinedStr, ast.Raise, ast.Assert, ast.Import, ast.ImportFrom)):
            return
        if isinstance(node, ast.Call) and self._skip_call(node):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
            for n in node.decorator_list + body:
                self.visit(n)
            for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                self.visit(d)
            return
        if isinstance(node, ast.ClassDef):
            body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
            for n in body:
                self.visit(n)
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.visit(node.value)
            return
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self._mutate(node)
        self.generic_visit(node)

    def _mutate(self, node):
        import copy
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and not self._skip_call(node.value):
            self.found.append((node, "pass", "drop"))  # a call made for its effect, dropped
            return
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMP_SWAP:
            m = copy.deepcopy(node)
            m.ops = [CMP_SWAP[type(node.ops[0])]()]
            self.found.append((node, f"({ast.unparse(m)})", "op"))
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_SWAP:
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                return
            m = copy.deepcopy(node)
            m.op = BIN_SWAP[type(node.op)]()
            self.found.append((node, f"({ast.unparse(m)})", "op"))
        elif isinstance(node, ast.BoolOp):
            m = copy.deepcopy(node)
            m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.found.append((node, f"({ast.unparse(m)})", "op"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            self.found.append((node, f"({ast.unparse(node.operand)})", "op"))
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                self.found.append((node, repr(not v), "const"))
            elif isinstance(v, int):
                self.found.append((node, repr(v + 1), "const"))
            elif isinstance(v, float):
                self.found.append((node, repr(v * 2 if v else 1.0), "const"))
        elif isinstance(node, ast.Call):
            self._mutate_call(node)
        elif isinstance(node, ast.Tuple) and len(node.elts) >= 2 and self._is_key(node):
            for i in range(len(node.elts)):  # a cache key or version stamp that forgets one of its parts
                rest = [ast.unparse(e) for j, e in enumerate(node.elts) if j != i]
                self.found.append((node, f"({', '.join(rest)},)", "key"))
        elif isinstance(node, ast.Slice) and node.upper is not None:
            self.found.append((node.upper, f"({ast.unparse(node.upper)} - 1)", "edge"))  # a block or chunk edge

    def _is_key(self, node: ast.Tuple) -> bool:
        """A tuple that keys a cache: a subscript's index, the first argument of .get/.setdefault/.pop, or a value
        named *key* / *stamp*."""
        parent = getattr(node, "_parent", None)
        if isinstance(parent, ast.Subscript) and parent.slice is node:
            return True
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and \
                parent.func.attr in ("get", "setdefault", "pop") and parent.args and parent.args[0] is node:
            return True
        if isinstance(parent, ast.Assign) and any(isinstance(t, ast.Name) and ("key" in t.id or "stamp" in t.id)
                                                   for t in parent.targets):
            return True
        return False

    def _mutate_call(self, node: ast.Call):
        import copy
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in ROUNDING:  # rounding: floor <-> round, ceil -> floor, trunc -> round
            m = copy.deepcopy(node)
            if isinstance(m.func, ast.Attribute):
                m.func.attr = ROUNDING[name]
            else:
                m.func.id = "int" if name == "round" else name
            self.found.append((node, f"({ast.unparse(m)})", "round"))
        if isinstance(f, ast.Attribute) and not node.keywords and (
                (f.attr in CASTS and not node.args) or (f.attr == "to" and len(node.args) == 1)):
            self.found.append((node, f"({ast.unparse(f.value)})", "cast"))  # a dtype cast or move removed
        pos = [a for a in node.args if not isinstance(a, ast.Starred)]
        plain = (ast.Name, ast.Attribute, ast.Subscript)  # two values that could each be the other: a plausible slip
        if len(pos) >= 2 and len(pos) == len(node.args) and all(isinstance(a, plain) for a in pos[:2]) and \
                ast.unparse(pos[0]) != ast.unparse(pos[1]):
            m = copy.deepcopy(node)
            m.args[0], m.args[1] = m.args[1], m.args[0]
            self.found.append((node, f"({ast.unparse(m)})", "swap"))


def operator_mutants(paths=SCOPE) -> list[Mutant]:
    out = []
    for base in paths:
        root = REPO / base
        files = sorted(root.rglob("*.py")) if root.is_dir() else ([root] if root.is_file() else [])
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            src = f.read_text()
            data = src.encode()
            starts = [0]
            for line in data.split(b"\n"):
                starts.append(starts[-1] + len(line) + 1)
            col = _Collector()
            tree = ast.parse(src)
            for parent in ast.walk(tree):
                for child in ast.iter_child_nodes(parent):
                    child._parent = parent
            col.visit(tree)
            for node, repl, kind in col.found:
                a = starts[node.lineno - 1] + node.col_offset
                b = starts[node.end_lineno - 1] + node.end_col_offset
                orig = data[a:b].decode()
                desc = f"[{kind}] {_short(orig)} -> {_short(repl)}"
                if isinstance(node, ast.Constant):  # say where the constant sits
                    desc += f"   in: {_short(src.splitlines()[node.lineno - 1], 70)}"
                m = Mutant("", rel, desc, "operator", node.lineno, span=(a, b), mutated=repl)
                try:
                    compile(m.apply(src), rel, "exec")
                except SyntaxError:
                    continue
                out.append(m)
    for i, m in enumerate(out):
        m.id = f"O{i}"
    return out


def _short(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n - 3] + "..."


def sample_operator_mutants(mutants: list[Mutant], n: int, seed: int) -> list[Mutant]:
    """A seeded sample spread over files: round-robin over the files, each file's mutants shuffled."""
    if n < 0 or n >= len(mutants):
        return mutants
    rng = random.Random(seed)
    by_file: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_file.setdefault(m.path, []).append(m)
    for lst in by_file.values():
        rng.shuffle(lst)
    files = sorted(by_file)
    rng.shuffle(files)
    picked = []
    while len(picked) < n:
        for f in files:
            if by_file[f] and len(picked) < n:
                picked.append(by_file[f].pop())
    return picked


WITHOUT: set[str] = set()  # --without: test files left out of every mapping (to measure a suite before them)


def tests_for(path: str) -> list[str]:
    for prefix, tests in TEST_MAP:
        if path == prefix or path.startswith(prefix):
            return [t for t in tests if t not in WITHOUT]
    return ["tests"]


# --- running -------------------------------------------------------------------------------------------------------

def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and "__pycache__" not in rel:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def child_env(copy: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant and its restore may share size and mtime
    env.setdefault("NEXUS_FIXTURES", str(REPO.parent / "shared" / "fixtures"))
    env.pop("PYTEST_ADDOPTS", None)
    return env


_current: subprocess.Popen | None = None


def run_pytest(copy: Path, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """(result, detail, seconds): result passed | failed | timeout | error."""
    global _current
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "--no-header", "-p", "no:cacheprovider", *tests]
    _current = subprocess.Popen(cmd, cwd=copy, env=child_env(copy), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)  # test output may hold bytes that are not UTF-8
    try:
        out, _ = _current.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_current()
        return "timeout", f"over {timeout:.0f}s", time.perf_counter() - t
    finally:
        rc = _current.returncode
        _current = None
    dt = time.perf_counter() - t
    if rc == 0:
        return "passed", "", dt
    first = next((ln for ln in out.splitlines() if ln.startswith(("FAILED ", "ERROR "))), "")
    if not first:
        first = next((ln for ln in reversed(out.splitlines()) if ln.strip()), f"exit {rc}")
    return ("failed" if rc in (1, 2) else "error"), _short(first, 110), dt


def _kill_current():
    if _current is not None and _current.poll() is None:
        try:
            os.killpg(_current.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _current.communicate()


def run_mutant(m: Mutant, copy: Path, timeout: float, tests_override: list[str] | None) -> None:
    original = (REPO / m.path).read_text()
    mutated = m.apply(original)
    if mutated is None or mutated == original:
        m.result, m.detail = "stale", "snippet not found exactly once"
        return
    m.tests = tests_override or tests_for(m.path)
    if not m.tests:  # --without left nothing that could catch it
        m.result, m.detail = "survived", "no test file maps to it"
        return
    target = copy / m.path
    try:
        target.write_text(mutated)
        result, m.detail, m.seconds = run_pytest(copy, m.tests, timeout)
    finally:
        target.write_text(original)
    m.result = {"passed": "survived", "failed": "killed", "timeout": "killed", "error": "killed"}[result]
    if result == "timeout":
        m.detail = "timeout " + m.detail


def report(mutants: list[Mutant], out=None) -> dict:
    out = out or sys.stdout
    ran = [m for m in mutants if m.result in ("killed", "survived")]
    w = max([len(m.id) for m in mutants] + [2])
    print(f"\n{'id':<{w}}  {'result':<8} {'secs':>5}  where / what / first failure", file=out)
    for m in mutants:
        print(f"{m.id:<{w}}  {m.result or '-':<8} {m.seconds:5.0f}  {m.path}:{m.line}  {m.description}", file=out)
        if m.detail:
            print(f"{'':<{w}}  {'':<8} {'':>5}    {m.detail}", file=out)
    stats = {}
    for name, group in (("core (nexus_core)", [m for m in ran if not m.path.startswith("nodes/")]),
                        ("nodes/", [m for m in ran if m.path.startswith("nodes/")])):
        if group:
            k = sum(m.result == "killed" for m in group)
            stats[name] = (k, len(group))
            print(f"{name}: {k}/{len(group)} killed ({100 * k / len(group):.0f} %)", file=out)
    for kind in ("curated", "operator"):
        group = [m for m in ran if m.kind == kind]
        if group:
            k = sum(m.result == "killed" for m in group)
            print(f"  {kind}: {k}/{len(group)} killed", file=out)
    stale = [m.id for m in mutants if m.result == "stale"]
    if stale:
        print(f"stale (not run): {', '.join(stale)}", file=out)
    survivors = [m for m in ran if m.result == "survived"]
    if survivors:
        print("survivors: " + ", ".join(f"{m.id} ({m.path}:{m.line})" for m in survivors), file=out)
    return stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the selected mutants and exit")
    p.add_argument("--only", nargs="+", help="run only these mutant ids")
    p.add_argument("--sample", type=int, default=16,
                   help="operator mutants to sample in nexus_core (-1 = all there and in nodes/, 0 = none)")
    p.add_argument("--nodes-sample", type=int, default=4, help="operator mutants to sample in nodes/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paths", nargs="+", default=list(SCOPE), help="where operator mutants are made")
    p.add_argument("--no-curated", action="store_true")
    p.add_argument("--tests", nargs="+", help="run these tests for every mutant instead of the mapped ones")
    p.add_argument("--without", nargs="+", default=[],
                   help="test files left out of every mapping: the same mutants against the suite before them")
    p.add_argument("--round", action="store_true",
                   help="operator mutants in the modules of the last round (ROUND_2026_12_04) instead of --paths")
    p.add_argument("--timeout", type=float, default=240, help="seconds per mutant run")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    p.add_argument("--allow-missing-fixtures", action="store_true", help="run even without the golden fixture")
    a = p.parse_args(argv)
    WITHOUT.update(a.without)
    if a.round:
        a.paths = list(ROUND_2026_12_04)

    ops = operator_mutants(a.paths)
    core = [m for m in ops if not m.path.startswith("nodes/")]
    nodes = [m for m in ops if m.path.startswith("nodes/")]
    mutants = ([] if a.no_curated else curated_mutants()) + sample_operator_mutants(core, a.sample, a.seed) + \
        sample_operator_mutants(nodes, a.nodes_sample if a.sample >= 0 else -1, a.seed)
    if a.only:
        pool = {m.id: m for m in curated_mutants() + ops}
        unknown = [i for i in a.only if i not in pool]
        if unknown:
            p.error(f"unknown mutant ids: {unknown}")
        mutants = [pool[i] for i in a.only]
    if a.list:
        for m in mutants:
            print(f"{m.id:<5} {m.kind:<8} {m.path}:{m.line}  {m.description}  [{' '.join(tests_for(m.path))}]")
        print(f"{len(mutants)} selected ({len(ops)} operator mutants in {', '.join(a.paths)})")
        return 0

    fixtures = Path(child_env(REPO)["NEXUS_FIXTURES"]) / "nexus-tiny-a" / "manifest.json"
    if not fixtures.is_file() and not a.allow_missing_fixtures:
        print(f"golden fixture not found ({fixtures}): the golden tests would skip and every mutant they should "
              "catch would survive. Set NEXUS_FIXTURES to the shared/fixtures folder (or pass "
              "--allow-missing-fixtures).", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="nexus-mutate-"))
    t0 = time.perf_counter()
    try:
        copy_tree(tmp)
        if not a.no_baseline:
            union = a.tests or sorted({t for m in mutants for t in tests_for(m.path)}) or ["tests/test_rules.py"]
            print(f"baseline: {' '.join(union)}", flush=True)
            result, detail, dt = run_pytest(tmp, union, a.timeout * 4)
            if result != "passed":
                print(f"the unmutated tests do not pass ({result}: {detail}); fix that first", file=sys.stderr)
                return 2
            print(f"baseline green in {dt:.0f}s", flush=True)
        for i, m in enumerate(mutants, 1):
            run_mutant(m, tmp, a.timeout, a.tests)
            print(f"[{i}/{len(mutants)} {time.perf_counter() - t0:5.0f}s] {m.id} {m.result:<8} "
                  f"{m.path}:{m.line} {m.description}", flush=True)
    except KeyboardInterrupt:
        _kill_current()
        print("\ninterrupted: the table covers the mutants that ran", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(mutants)
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
