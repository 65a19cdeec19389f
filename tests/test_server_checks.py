"""A shared server's checks, in CI: every input a node validates itself is checked as strictly as the host would
have (list membership, min/max, NaN), names never leave the model folders and say nothing about paths outside
them, text and batches are bounded, and the AR's context is checked before its first forward.

The node layer runs against small stand-ins for the host (tests/host_stand_in.py); the real-host suite
(tests/comfyui/test_server.py) posts the same values to a real ComfyUI."""
import inspect
import math
import os
import shutil

import pytest
import torch

from nexus_core.errors import NexusError
from nexus_core.settings.bounds import (MAX_BATCH_PROMPTS, MAX_TEXT_CHARS, check_bounded_text,
                                        check_prompt_count)
from nexus_core.settings.names import MAX_NAME_CHARS, check_listed, name_problem

import host_stand_in


# --- names ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["/etc/passwd", "\\\\server\\share\\m", "C:/models/ar", "c:ar", "../outside/ar",
                                  "Nexus-GenV2/../../x", "a/./b", "a//b", "a/", "", "a\x00b", "a\nb", "a\\b",
                                  "x" * (MAX_NAME_CHARS + 1), "a/" + "y" * 256, "caf\udce9", 3, None])
def test_names_that_are_never_model_names(name):
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["Nexus-GenV2", "nexus_gen/Nexus-GenV2/generation_decoder.bin", ".",
                                  "模型/解码器.bin", "a" * 255, "/".join(["b" * 255] * 4)[:MAX_NAME_CHARS],
                                  "x..y/file..bin"])
def test_names_that_can_be_model_names(name):
    assert len(name) <= MAX_NAME_CHARS
    assert name_problem(name) is None


def test_a_name_is_accepted_only_when_listed():
    listed = ["Nexus-GenV2", "sub/ar.safetensors"]
    assert check_listed("sub/ar.safetensors", listed, "model", "models") == "sub/ar.safetensors"
    for bad in ("nexus-genv2", "Nexus-GenV2/", "sub/../Nexus-GenV2", "/abs/Nexus-GenV2"):
        with pytest.raises(NexusError, match="^model: "):
            check_listed(bad, listed, "model", "models")


def test_a_refusal_is_the_same_for_an_outside_path_that_exists(tmp_path):
    """No existence oracle: the message for a real folder outside the model folders and for a made-up one differ
    only in the name quoted."""
    real = tmp_path / "secret"
    real.mkdir()
    made_up = tmp_path / "secreu"
    messages = []
    for p in (real, made_up):
        with pytest.raises(NexusError) as e:
            check_listed(str(p), ["Nexus-GenV2"], "model", "models")
        messages.append(str(e.value).replace(str(p), "NAME"))
    assert messages[0] == messages[1]


# --- text and batch bounds -----------------------------------------------------------------------------------------

def test_text_bound_at_the_edge():
    assert check_bounded_text("é" * MAX_TEXT_CHARS, "prompt")
    with pytest.raises(NexusError, match=f"prompt is {MAX_TEXT_CHARS + 1:,} characters.*at most {MAX_TEXT_CHARS:,}"):
        check_bounded_text("a" * (MAX_TEXT_CHARS + 1), "prompt")
    with pytest.raises(NexusError, match="not valid UTF-8"):
        check_bounded_text("a\ud800b", "prompt")
    assert check_bounded_text(None, "prompt") is None  # linked from another node: checked when it arrives


def test_batch_bound_at_the_edge():
    assert check_prompt_count(MAX_BATCH_PROMPTS, "prompt") == MAX_BATCH_PROMPTS
    with pytest.raises(NexusError, match=f"{MAX_BATCH_PROMPTS + 1} prompts.*at most {MAX_BATCH_PROMPTS}"):
        check_prompt_count(MAX_BATCH_PROMPTS + 1, "prompt")


# --- the node layer against a stand-in host -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def host(tmp_path_factory, tiny_root):
    """ComfyUI's folders: the AR folder placed in models/nexus_gen as a LINK to a folder elsewhere (as users do
    with big models), text encoders in models/text_encoders; and a copy of the AR outside every model folder."""
    root = tmp_path_factory.mktemp("host")
    models = root / "models"
    (models / "nexus_gen").mkdir(parents=True)
    (models / "nexus_gen" / "Nexus-GenV2").symlink_to(tiny_root / "Nexus-GenV2", target_is_directory=True)
    (models / "text_encoders").mkdir()
    clip = next((tiny_root / "FLUX.1-dev").rglob("text_encoder/model.safetensors"))
    shutil.copy(clip, models / "text_encoders" / "clip_l.safetensors")
    outside = root / "outside"
    shutil.copytree(tiny_root / "Nexus-GenV2", outside / "ar", ignore=shutil.ignore_patterns("*decoder*"))
    shutil.copy(clip, outside / "clip_l.safetensors")
    shutil.copy(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", outside / "generation_decoder.bin")
    nodes, fp = host_stand_in.import_pack(root)
    yield nodes, fp, root
    host_stand_in.forget_pack()


def schema_inputs(cls) -> dict:
    return {i.id: i for i in cls.define_schema().inputs}


def call_validate(cls, **values):
    args = inspect.signature(cls.validate_inputs).parameters
    inputs = schema_inputs(cls)
    full = {}
    for name in args:
        spec = inputs[name]
        full[name] = spec.options.get("default", (spec.options.get("options") or [None])[0])
    full.update(values)
    return cls.validate_inputs(**full)


def taken_over(nodes):
    """(node class, input spec) for every input some node's validate_inputs takes over from the host."""
    out = []
    for cls in host_stand_in.node_classes(nodes):
        if "validate_inputs" not in cls.__dict__:
            continue
        inputs = schema_inputs(cls)
        for name in inspect.signature(cls.validate_inputs).parameters:
            out.append((cls, inputs[name]))
    return out


def hostile_names(root):
    out = root / "outside"
    return [str(out / "ar"), str(out / "clip_l.safetensors"), str(out / "generation_decoder.bin"),
            "../../outside/ar", "../outside/generation_decoder.bin", "Nexus-GenV2/../../../outside/ar",
            "Nexus-GenV2\\..\\..\\outside\\ar", "Nexus-GenV2/generation_decoder.bin\x00.txt", "x" * 5000,
            "Nexus-GenV2/model-00001-of-00002.safetensors", "not_listed.safetensors"]


def test_every_taken_over_input_keeps_the_hosts_checks(host):
    """Each input a validate_inputs takes over loses ComfyUI's own check (list, min/max), so the node must make it:
    a value outside the list, outside the bounds, NaN/inf, or text past the bound is refused; the edges pass."""
    nodes, fp, root = host
    seen = set()
    for cls, spec in taken_over(nodes):
        node = cls.define_schema().node_id
        seen.add((node, spec.id))
        if spec.io_type == "COMBO":
            options = [o for o in spec.options["options"] if o != "none"]
            assert options and not options[0].startswith("("), (node, spec.id, options)
            assert call_validate(cls, **{spec.id: options[0]}) is True, (node, spec.id)
            for bad in hostile_names(root):
                assert bad not in spec.options["options"]
                res = call_validate(cls, **{spec.id: bad})
                assert isinstance(res, str) and res.startswith(f"{spec.id}: "), (node, spec.id, bad, res)
                # refused by the list check itself, before any lookup (not only by a later layer)
                assert "this ComfyUI lists" in res or "not a path" in res, (node, spec.id, bad, res)
        elif spec.io_type == "FLOAT":
            lo, hi = spec.options["min"], spec.options["max"]
            for good in (lo, hi, spec.options["default"]):
                assert call_validate(cls, **{spec.id: good}) is True, (node, spec.id, good)
            for bad in (math.nan, math.inf, -math.inf, lo - 1e-3, hi + 1e-3):
                res = call_validate(cls, **{spec.id: bad})
                assert isinstance(res, str) and spec.id in res, (node, spec.id, bad, res)
        elif spec.io_type == "STRING":
            assert call_validate(cls, **{spec.id: "a" * MAX_TEXT_CHARS}) is True, (node, spec.id)
            for bad in ("a" * (MAX_TEXT_CHARS + 1), "a photo\ud83d of a cat"):
                res = call_validate(cls, **{spec.id: bad})
                assert isinstance(res, str) and spec.id in res, (node, spec.id, bad[:20], res)
            assert f"{MAX_TEXT_CHARS:,}" in spec.options["tooltip"], (node, spec.id)  # the bound is shown
            assert call_validate(cls, **{spec.id: None}) is True  # a linked value: checked at execution
        elif spec.io_type == "BOOLEAN":
            assert node == "NexusGenPromptEmbeds" and spec.id == "one_per_line"
        else:
            pytest.fail(f"{node}.{spec.id}: a {spec.io_type} input taken over with no check written for it here")
    assert {("NexusGenARLoader", "model"), ("NexusGenDecoderLoader", "decoder"), ("NexusGenProjectorLoader", "decoder"),
            ("NexusGenTextEncoderLoader", "clip_l"), ("NexusGenTextEncoderLoader", "t5xxl")} <= seen


def test_file_refusals_are_no_existence_oracle(host):
    nodes, fp, root = host
    for cls, spec in taken_over(nodes):
        if spec.io_type != "COMBO":
            continue
        there, not_there = root / "outside" / "ar", root / "outside" / "ar-none"
        a, b = (call_validate(cls, **{spec.id: str(p)}) for p in (there, not_there))
        assert a.replace(str(there), "X") == b.replace(str(not_there), "X"), (spec.id, a, b)
        a, b = (call_validate(cls, **{spec.id: f"../outside/{n}"}) for n in ("ar", "ar-none"))
        assert a.replace("'../outside/ar'", "X") == b.replace("'../outside/ar-none'", "X"), (a, b)


def test_one_per_line_batches_are_bounded(host):
    nodes, _, _ = host
    cls = nodes.embeds.NexusGenPromptEmbeds
    lines = "\n".join(f"a cat number {i}" for i in range(MAX_BATCH_PROMPTS))
    assert cls.validate_inputs(lines, True) is True
    res = cls.validate_inputs(lines + "\none more", True)
    assert isinstance(res, str) and f"at most {MAX_BATCH_PROMPTS}" in res
    assert cls.validate_inputs(lines + "\none more", False) is True  # one prompt with line breaks
    assert "empty" in cls.validate_inputs("  \n ", True)


def test_linked_file_names_are_checked_when_they_arrive(host, monkeypatch):
    """A name linked from another node reaches validation as None and passes; at execution the loaders refuse
    it before loading anything, and resolving never joins an unlisted name onto a root."""
    nodes, fp, root = host
    loaders = nodes.loaders
    assert loaders.NexusGenARLoader.validate_inputs(None) is True
    loaded = []
    monkeypatch.setattr(loaders, "load_dit", lambda *a, **k: loaded.append(a))
    import importlib
    ar_pkg = importlib.import_module(f"{host_stand_in.PACK}.nexus_core.ar")
    monkeypatch.setattr(ar_pkg, "load_ar", lambda *a, **k: loaded.append(a))
    errors = importlib.import_module(f"{host_stand_in.PACK}.nexus_core.errors")
    for bad in (str(root / "outside" / "ar"), "../../outside/ar"):
        with pytest.raises(errors.NexusError, match="^model: "):
            loaders.NexusGenARLoader.execute(bad, "auto", "default", "default")
        with pytest.raises(FileNotFoundError):
            loaders.paths.resolve_model_folder(fp, bad)
    for bad in (str(root / "outside" / "generation_decoder.bin"), "../../outside/generation_decoder.bin"):
        with pytest.raises(errors.NexusError, match="^decoder: "):
            loaders.NexusGenDecoderLoader.execute(bad, "default")
        with pytest.raises(errors.NexusError, match="^decoder: "):
            loaders.NexusGenProjectorLoader.execute(bad)
        with pytest.raises(FileNotFoundError):
            loaders.paths.resolve_decoder(fp, bad)
    with pytest.raises(errors.NexusError, match="^clip_l: "):
        loaders.NexusGenTextEncoderLoader.execute(str(root / "outside" / "clip_l.safetensors"), "none", "default")
    assert loaded == []
    # the link a user placed in the model folder keeps working
    assert os.path.realpath(loaders.paths.resolve_model_folder(fp, "Nexus-GenV2")) == \
        os.path.realpath(root / "models" / "nexus_gen" / "Nexus-GenV2")


def test_linked_texts_and_numbers_are_checked_at_execution(host):
    nodes, _, _ = host
    import importlib
    errors = importlib.import_module(f"{host_stand_in.PACK}.nexus_core.errors")
    with pytest.raises(errors.NexusError, match="question is not valid UTF-8"):
        nodes.understand.NexusGenUnderstand.execute(None, "why\udfff", 10, 0)
    with pytest.raises(errors.NexusError, match="prompt is 16,001 characters"):
        nodes.embeds.NexusGenPromptEmbeds.execute(None, "a" * 16_001, "en", False, "fast", 0, 100)
    with pytest.raises(errors.NexusError, match="guidance must be a finite number"):
        nodes.conditioning.NexusGenConditioning.execute(None, None, math.nan, True)
    with pytest.raises(errors.NexusError, match="weight must be"):
        nodes.embeds.NexusGenEmbedsBlend.execute(None, None, 7.0, "slerp")
    with pytest.raises(errors.NexusError, match="shift must be"):
        nodes.conditioning.NexusGenScheduler.execute(10, 1.0, math.inf)


# --- the AR's context, before the first forward --------------------------------------------------------------------

def test_context_is_checked_before_the_first_forward(tiny_ar, monkeypatch):
    from nexus_core.ar import decoding
    from nexus_core.ar.understand import understand

    forwards = []
    real = decoding._Runner.forward
    monkeypatch.setattr(decoding._Runner, "forward", lambda self, *a: forwards.append(1) or real(self, *a))
    question = "what is in the picture " * 5
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": [{"type": "text", "text": question}]}]
    n_prompt = len(tiny_ar.formatter.encode(messages, [])[0])
    cfg = tiny_ar.text_config
    monkeypatch.setattr(cfg, "max_position_embeddings", n_prompt + 3)
    understand(tiny_ar, question, max_new_tokens=3)  # exactly at the context: runs
    assert forwards
    forwards.clear()
    with pytest.raises(NexusError, match=f"{n_prompt} tokens and max_new_tokens=4.*context of {n_prompt + 3}"):
        understand(tiny_ar, question, max_new_tokens=4)
    assert forwards == []


def test_fast_mode_checks_the_context_too(tiny_ar, monkeypatch):
    from nexus_core.ar import generation_request, predict

    req = generation_request("a red bicycle", "en")
    cfg = tiny_ar.text_config
    monkeypatch.setattr(cfg, "max_position_embeddings", 100_000)
    ran = predict(tiny_ar, [req], "fast")
    calls = []
    monkeypatch.setattr(type(tiny_ar), "language_model", property(lambda self: calls.append(1)))
    monkeypatch.setattr(cfg, "max_position_embeddings", 10)
    with pytest.raises(NexusError, match="context of 10 tokens"):
        predict(tiny_ar, [req], "fast")
    assert calls == [] and ran.embeddings.shape[1] == tiny_ar.n_image_tokens


# --- nothing shared between prompts that should not be -------------------------------------------------------------

def test_sampled_embeddings_follow_each_requests_seed(tiny_ar):
    """Seeds 1, 2, 1 in turn: the third equals the first and the second differs (a result kept from an earlier
    request, or a generator shared across requests, fails one side)."""
    from nexus_core.ar import generation_request, predict
    from nexus_core.ar.sampling import SamplingConfig

    req = [generation_request("a lighthouse at dusk", "en")]
    hot = SamplingConfig(do_sample=True, temperature=5.0, top_k=0)
    runs = [predict(tiny_ar, req, "reference", seed=s, max_new_tokens=90, sampling=hot) for s in (1, 2, 1)]
    assert torch.equal(runs[0].embeddings, runs[2].embeddings) and runs[0].texts == runs[2].texts
    assert runs[0].texts != runs[1].texts or not torch.equal(runs[0].embeddings, runs[1].embeddings)


# --- a one-file AR's unpacked small files: the temp folder is shared with every user of the machine ----------------

@pytest.fixture
def temp(tmp_path, monkeypatch):
    """A system temp folder of the test's own (where a one-file AR's small files are unpacked)."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir() if p.name != ".complete"}


def test_the_unpack_lock_is_free_again_after_each_use(tmp_path, temp, monkeypatch):
    """Built, reused, failed: the lock is released every time (a leaked one would make the next process, or this
    one's next load of a damaged copy, wait for good). Tried without waiting, from a descriptor of our own."""
    fcntl = pytest.importorskip("fcntl")
    from pathlib import Path

    from nexus_core.files import private_temp

    def free(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while someone holds it
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    files = {"config.json": "{}"}
    folder = private_temp.unpacked_once("ar-6", files, "test files")
    lock = folder.parent / "ar-6.lock"
    assert free(lock)
    (folder / "config.json").write_text("[]")
    private_temp.unpacked_once("ar-6", files, "test files")  # rebuilt under the lock
    assert free(lock)
    shutil.rmtree(folder)
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(NexusError):
        private_temp.unpacked_once("ar-6", files, "test files")  # failed under the lock
    assert free(lock)


def test_unpacked_small_files_are_checked_before_each_use(tmp_path, temp):
    from nexus_core.ar import checkpoint

    ar_file = tmp_path / "nexus_fp8.safetensors"
    ar_file.write_bytes(b"weights")
    meta = {"file/config.json": '{"model_type": "qwen2_5_vl"}', "file/tokenizer.json": '{"v": 1}',
            "format": "nexus-gen-ar", "file/not_a_small_file.py": "print('no')"}
    want = {"config.json": meta["file/config.json"], "tokenizer.json": meta["file/tokenizer.json"]}

    first = checkpoint._unpacked(ar_file, meta)
    root = first.parent  # this user's private folder in the shared temp folder, closed to others
    assert _contents(first) == want and root.parent == temp and root.name == f"nexus-gen-{os.getuid()}"
    assert os.lstat(root).st_mode & 0o777 == 0o700
    assert checkpoint._unpacked(ar_file, meta) == first  # reused while intact
    (first / "config.json").write_text('{"model_type": "llama"}')  # damaged by someone else's tool
    again = checkpoint._unpacked(ar_file, meta)
    assert again == first and _contents(again) == want
    (first / "extra.json").write_text("{}")
    assert _contents(checkpoint._unpacked(ar_file, meta)) == want
    (first / "tokenizer.json").unlink()
    assert _contents(checkpoint._unpacked(ar_file, meta)) == want
    ar_file.write_bytes(b"weights, version 2")  # another version of the file: its own copy
    other = checkpoint._unpacked(ar_file, {**meta, "file/tokenizer.json": '{"v": 2}'})
    assert other != first and _contents(other) == {**want, "tokenizer.json": '{"v": 2}'} and _contents(first) == want


def _planted_private_root(kind, temp, tmp_path):
    """What another user (or a careless setup) can leave under the private folder's name in the shared temp."""
    root = temp / f"nexus-gen-{os.getuid()}"
    if kind == "link":  # a link to a folder the planter reads, holding a right-looking copy
        planted = tmp_path / "planted"
        planted.mkdir()
        root.symlink_to(planted, target_is_directory=True)
    elif kind == "file":
        root.write_text("x")
    elif kind == "open to others":
        root.mkdir()
        root.chmod(0o777)
    elif kind == "another user's":
        if os.geteuid() != 0:
            pytest.skip("making a folder owned by another user needs root")
        root.mkdir(mode=0o700)
        os.chown(root, 54321, 54321)
    return root


@pytest.mark.parametrize("kind", ["link", "file", "open to others", "another user's"])
def test_a_private_folder_name_taken_by_something_else_is_neither_used_nor_touched(tmp_path, temp, kind):
    from nexus_core.ar import checkpoint

    root = _planted_private_root(kind, temp, tmp_path)
    before = sorted(os.listdir(root)) if root.is_dir() else root.read_text()
    ar_file = tmp_path / "nexus_fp8.safetensors"
    ar_file.write_bytes(b"weights")
    meta = {"file/config.json": '{"model_type": "qwen2_5_vl"}'}
    used = checkpoint._unpacked(ar_file, meta)  # a throwaway copy of its own
    assert used.parent == temp and not used.is_symlink() and os.lstat(used).st_uid == os.getuid()
    assert os.lstat(used).st_mode & 0o077 == 0 and _contents(used) == {"config.json": meta["file/config.json"]}
    assert (sorted(os.listdir(root)) if root.is_dir() else root.read_text()) == before
    assert checkpoint._unpacked(ar_file, meta) == used  # one throwaway copy per file version and process, while intact
    (used / "config.json").write_text("{}")
    again = checkpoint._unpacked(ar_file, meta)
    assert again != used and _contents(again) == {"config.json": meta["file/config.json"]}


def test_a_throwaway_copy_is_removed_when_the_process_ends(tmp_path, temp):
    import subprocess
    import sys

    (temp / f"nexus-gen-{os.getuid()}").write_text("x")
    code = ("import tempfile, sys; tempfile.tempdir = sys.argv[1]\n"
            "from nexus_core.files.private_temp import unpacked_once\n"
            "print(unpacked_once('ar-0123', {'config.json': '{}'}, 'test files'))")
    out = subprocess.run([sys.executable, "-c", code, str(temp)], capture_output=True, text=True, check=True)
    made = out.stdout.strip()
    assert made.startswith(str(temp)) and "throwaway copy" in out.stderr
    assert sorted(os.listdir(temp)) == [f"nexus-gen-{os.getuid()}"]  # gone with its process


def test_a_copy_built_while_we_waited_for_the_lock_is_used_not_rebuilt(tmp_path, temp, monkeypatch):
    """The race CI once hit: a process finds no copy, another builds one, then the first takes the lock: it must
    use that copy (which the other process is using), not delete it and build its own."""
    from nexus_core.files import private_temp

    files = {"config.json": "{}", "tokenizer.json": '{"v": 1}'}
    real_exclusive, built = private_temp.exclusive, {}

    @__import__("contextlib").contextmanager
    def another_process_builds_first(lock_file):
        if not built:
            built["busy"] = True
            folder = private_temp.unpacked_once("ar-77", files, "test files")  # "the other process"
            built.update(folder=folder, inode=os.lstat(folder).st_ino)
        with real_exclusive(lock_file):
            yield

    monkeypatch.setattr(private_temp, "holds_exactly", _misses_once(private_temp.holds_exactly))
    monkeypatch.setattr(private_temp, "exclusive", another_process_builds_first)
    used = private_temp.unpacked_once("ar-77", files, "test files")
    assert used == built["folder"] and _contents(used) == files and os.lstat(used).st_ino == built["inode"]
    assert sorted(os.listdir(used.parent)) == ["ar-77", "ar-77.lock"]


def _misses_once(holds_exactly):
    """holds_exactly that answers False on its first call only: the first look finds no copy."""
    calls = []

    def check(folder, files):
        calls.append(folder)
        return False if len(calls) == 1 else holds_exactly(folder, files)
    return check


def test_unpacking_under_a_full_disk_leaves_nothing_and_says_so(tmp_path, temp, monkeypatch):
    from pathlib import Path

    from nexus_core.files import private_temp

    files = {"config.json": "{}", "tokenizer.json": '{"v": 1}' * 1000}
    real_write = Path.write_text

    def full_after_first(self, text, *a, **k):
        if self.name == "tokenizer.json":
            raise OSError(28, "No space left on device")
        return real_write(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full_after_first)
    with pytest.raises(NexusError, match="No space left on device.*TMPDIR"):
        private_temp.unpacked_once("ar-5", files, "test files")
    root = temp / f"nexus-gen-{os.getuid()}"
    assert sorted(os.listdir(root)) == ["ar-5.lock"]  # no half-written copy
    monkeypatch.setattr(Path, "write_text", real_write)
    assert _contents(private_temp.unpacked_once("ar-5", files, "test files")) == files


@pytest.mark.parametrize("meanwhile", ["a good copy", "nothing"])
def test_the_final_rename_failing_uses_a_good_copy_put_there_meanwhile_or_says_so(tmp_path, temp, monkeypatch,
                                                                                  meanwhile):
    """The rename into place fails when the name was taken meanwhile (a process that waited on another lock file
    inode, or any other tool): a right copy there is used; otherwise a clear error, and our part is gone."""
    import errno

    from nexus_core.files import private_temp

    files = {"config.json": "{}"}
    real_replace = os.replace

    def taken_meanwhile(src, dst):
        if meanwhile == "a good copy":
            real_replace(private_temp._write_copy(private_temp.private_root(), ".other-", files, "x"), dst)
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    monkeypatch.setattr(private_temp.os, "replace", taken_meanwhile)
    if meanwhile == "a good copy":
        used = private_temp.unpacked_once("ar-3", files, "test files")
        assert _contents(used) == files
    else:
        with pytest.raises(NexusError, match="could not unpack test files into .*ar-3: Directory not empty"):
            private_temp.unpacked_once("ar-3", files, "test files")
    root = temp / f"nexus-gen-{os.getuid()}"
    assert sorted(os.listdir(root)) == sorted(["ar-3.lock"] + (["ar-3"] if meanwhile == "a good copy" else []))


def test_a_lock_file_that_cannot_be_opened_is_a_clear_error_and_no_link_is_followed(tmp_path, temp):
    from nexus_core.files import private_temp

    root = private_temp.private_root()
    target = tmp_path / "not-to-be-created"
    (root / "ar-4.lock").symlink_to(target)  # a link under the lock's name is never followed
    with pytest.raises(NexusError, match="could not open the lock file .*ar-4.lock"):
        private_temp.unpacked_once("ar-4", {"config.json": "{}"}, "test files")
    assert not target.exists() and sorted(os.listdir(root)) == ["ar-4.lock"]


def _hold_the_lock_and_die(lock_file, held):
    import signal

    from nexus_core.files.private_temp import exclusive
    with exclusive(lock_file):
        held.put(True)
        os.kill(os.getpid(), signal.SIGKILL)  # killed while holding it: no cleanup runs


def test_a_process_killed_while_unpacking_does_not_block_the_next(tmp_path, temp):
    import multiprocessing

    from nexus_core.files import private_temp

    root = private_temp.private_root()
    ctx = multiprocessing.get_context("fork")
    held = ctx.SimpleQueue()
    p = ctx.Process(target=_hold_the_lock_and_die, args=(root / "ar-9.lock", held))
    p.start()
    p.join()
    assert held.get() is True and p.exitcode == -9
    assert _contents(private_temp.unpacked_once("ar-9", {"config.json": "{}"}, "test files")) == {"config.json": "{}"}


def _unpack_in_a_process(ar_file, meta, temp, start, results):
    import hashlib
    import tempfile
    from pathlib import Path

    try:
        from nexus_core.ar import checkpoint
        tempfile.tempdir = str(temp)
    except BaseException:
        start.abort()  # the others stop waiting (BrokenBarrierError) instead of waiting for good
        raise
    start.wait()  # every process unpacks at the same moment (an event, not a clock)
    folder = checkpoint._unpacked(Path(ar_file), meta)
    results.put((str(folder), {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir()}))


def test_several_processes_unpacking_the_same_file_at_once_each_get_it_whole(tmp_path, temp):
    """ComfyUI-Distributed's local workers (and any several ComfyUIs on one machine) share the temp folder: when
    they all load the same one-file AR at once, each gets a folder holding exactly its small files, and no
    half-written copy is left behind."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ar_file = tmp_path / "nexus_fp8.safetensors"
    ar_file.write_bytes(b"weights")
    meta = {"file/config.json": '{"model_type": "qwen2_5_vl"}' + " " * 200_000, "file/tokenizer.json": '{"v": 1}',
            "format": "nexus-gen-ar"}
    import hashlib
    from pathlib import Path

    want = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in
            (("config.json", meta["file/config.json"]), ("tokenizer.json", meta["file/tokenizer.json"]),
             (".complete", ""))}
    for round_ in range(3):  # the race is at its widest with no copy, and with a damaged one
        start, results = ctx.Barrier(6), ctx.SimpleQueue()  # put() writes at once: an ended process's answer is there
        procs = [ctx.Process(target=_unpack_in_a_process, args=(str(ar_file), meta, temp, start, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()  # each ends once it has put its small answer (or failed)
        assert [p.exitcode for p in procs] == [0] * 6
        got = [results.get() for _ in procs]
        assert all(files == want for _folder, files in got)
        assert len({folder for folder, _files in got}) == 1  # one shared copy
        folder = Path(got[0][0])
        assert [p.name for p in temp.iterdir()] == [folder.parent.name]
        assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, folder.name + ".lock"])
        if round_ == 0:
            (folder / "config.json").write_text("{}")  # damaged: every process finds it so at once
        else:
            shutil.rmtree(folder)


# --- events go to the client whose prompt it is -------------------------------------------------------------------

class RecordingServer:
    """The host's PromptServer as far as the pack's events use it: with no sid, the host sends to every client."""

    def __init__(self, client_id):
        self.client_id, self.sent = client_id, []

    def send_progress_text(self, text, node_id, sid=None):
        self.sent.append(("text", text, node_id, sid))

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))


@pytest.mark.parametrize("client_id", ["client-a", None])
def test_streamed_text_and_notices_reach_only_the_prompts_client(host, client_id):
    import sys

    nodes, _, _ = host
    server = RecordingServer(client_id)
    sys.modules["server"].PromptServer.instance = server
    nodes.host.progress.send_text("the model's reply to someone's prompt", "7")
    nodes.host.lora_notice._send_toast("5", "LoraLoaderModelOnly", "2 of 2 keys match nothing")
    if client_id is None:  # the host would broadcast: nobody gets it
        assert server.sent == []
    else:
        assert [s[-1] for s in server.sent] == [client_id, client_id] and server.sent[0][1].startswith("the model")


class Handle:
    """What the AR loader hands the nodes (nodes/host/ar_handle.ARHandle), around an AR already in memory."""

    def __init__(self, ar):
        self.ar = ar

    def running(self):
        import contextlib
        return contextlib.nullcontext(self.ar)


def test_nodes_follow_each_prompts_seed(host, tiny_ar, monkeypatch):
    """Through the nodes, with a sampling generation config: seeds 1, 2, 1 in turn give A, B, A with B != A (a
    result kept across prompts without the seed in its key, or a shared generator, fails one side)."""
    from nexus_core.ar.sampling import SamplingConfig

    nodes, _, _ = host
    monkeypatch.setattr(tiny_ar, "sampling", SamplingConfig(do_sample=True, temperature=5.0, top_k=0))
    handle = Handle(tiny_ar)
    embeds = [nodes.embeds.NexusGenPromptEmbeds.execute(handle, "a lighthouse at dusk", "en", False, "reference", s,
                                                        90) for s in (1, 2, 1)]
    assert embeds[0][1] == embeds[2][1] and torch.equal(embeds[0][0].target, embeds[2][0].target)
    assert embeds[0][1] != embeds[1][1]
    answers = [nodes.understand.NexusGenUnderstand.execute(handle, "what is this?", 12, s)[0] for s in (1, 2, 1)]
    assert answers[0] == answers[2] != answers[1]


def test_quoted_values_are_cut_at_their_limit():
    from nexus_core.settings.names import shown
    assert shown("a" * 80) == "a" * 80
    assert shown("a" * 81) == "a" * 80 + "... (81 characters)"
    assert shown("x\x00y") == "x\\x00y"  # escaped, never raw control characters


def test_the_placeholder_is_refused_like_any_unlisted_name_when_models_exist(host):
    """The '(put Nexus-GenV2 ...)' placeholder is what the list shows when the folders are empty; once models are
    listed, a client that still sends it gets the ordinary refusal, not the 'no model found' advice."""
    nodes, fp, root = host
    res = nodes.loaders.NexusGenARLoader.validate_inputs("(put Nexus-GenV2 in models/nexus_gen)")
    assert "is not one of the" in res and "no Nexus-Gen model folder found" not in res


def test_checkpoint_version_follows_the_prefill_table(tiny_root):
    from nexus_core.ar.checkpoint import inspect_ar_folder
    ckpt = inspect_ar_folder(tiny_root / "Nexus-GenV2")
    assert ckpt.version == 2
    ckpt.nexus_tensors.pop("image_prefill_embeds.weight")
    assert ckpt.version == 1


def test_a_gguf_is_pointed_to_the_gguf_route(host):
    """A Nexus-Gen GGUF is listed by the projector loader only; sent to the decoder loader it is refused with the
    route that loads it, not as an unknown name."""
    nodes, fp, root = host
    dm = root / "models" / "nexus_gen"  # the pack lists .gguf there (in diffusion_models ComfyUI-GGUF's list does)
    (dm / "nexus_gen_generation_decoder-Q8_0.gguf").write_bytes(b"GGUF" + bytes(60))
    name = "nexus_gen_generation_decoder-Q8_0.gguf"
    res = nodes.loaders.NexusGenDecoderLoader.validate_inputs(name)
    assert isinstance(res, str) and "Unet Loader (GGUF)" in res and "Projector Loader" in res
    assert nodes.loaders.NexusGenProjectorLoader.validate_inputs(name) is True
    (dm / name).write_bytes(b"NOPE" + bytes(60))
    assert "is not a GGUF file" in nodes.loaders.NexusGenProjectorLoader.validate_inputs(name)
