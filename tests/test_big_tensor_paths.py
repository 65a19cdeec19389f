"""Paths only big tensors take (issue 29, class 1): the streamed reader works in row blocks (2048 rows) and read
chunks (64 MiB), so the fixtures' largest Linear (576 rows) never reaches a second block or chunk. Here both are
made small, and a streamed fp8 quantization is compared bit for bit with the in-memory one made in a single block
(the oracle: each row's scale depends on that row alone), for bf16, fp16 and fp32 sources, rows of small
magnitude, and tensors that end exactly on, and one row past, a block and a chunk edge."""
import pytest
import torch
from safetensors.torch import save_file

from nexus_core.files import safetensors_read
from nexus_core.files.safetensors_read import iter_stored
from nexus_core.memory import fp8
from nexus_core.memory.fp8 import ScaledFp8Linear

WIDTH = 12
BLOCK = 4  # rows per block here
# 12 columns: 24 bytes a row in bf16/fp16, 48 in fp32; a 48-byte chunk is 2 rows / 1 row, so chunks end on rows,
# and a 40-byte chunk splits rows
CHUNKS = (48, 40)


def weights(rows: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, WIDTH, generator=g, dtype=torch.float64)
    w *= torch.logspace(-6, 3, rows, dtype=torch.float64)[:, None]  # small and large rows: scales far apart
    if rows > 2:
        w[1] = 0  # an all-zero row (scale 1)
    return w.to(dtype)


def quantized(layer: ScaledFp8Linear):
    return layer.weight.view(torch.uint8).clone(), layer.weight_scale.clone()


@pytest.mark.parametrize("src", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("rows", [1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 1, 3 * BLOCK + 2])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_streamed_blocks_and_chunks_equal_one_in_memory_block(tmp_path, monkeypatch, src, rows, chunk):
    w = weights(rows, src, seed=rows)
    path = tmp_path / "w.safetensors"
    save_file({"pad": torch.zeros(3, dtype=torch.float16), "w": w}, str(path))  # data not at offset 0
    for compute in (torch.float32, torch.bfloat16, torch.float16):
        for storage in (torch.float8_e4m3fn, torch.float8_e5m2):
            oracle = ScaledFp8Linear.shell(WIDTH, rows, False)
            oracle.take_weight(w, storage, compute)  # one block: 2048 rows at once
            want = quantized(oracle)
            with monkeypatch.context() as m:
                m.setattr(fp8, "ROWS_AT_ONCE", BLOCK)
                m.setattr(safetensors_read, "CHUNK", chunk)
                tensors = iter_stored(path)  # valid while the iteration is alive
                stored = next(s for s in tensors if s.name == "w")
                streamed = ScaledFp8Linear.shell(WIDTH, rows, False)
                streamed.take_weight(stored, storage, compute)
                in_memory = ScaledFp8Linear.shell(WIDTH, rows, False)
                in_memory.take_weight(w, storage, compute)
            for got in (quantized(streamed), quantized(in_memory)):
                assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (compute, storage)


@pytest.mark.parametrize("chunk", [1, 7, 48, 40, 10**6])
def test_whole_reads_in_chunks_equal_the_file(tmp_path, monkeypatch, chunk):
    w = weights(2 * BLOCK + 1, torch.bfloat16, seed=3)
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(5, dtype=torch.int32), "w": w}, str(path))
    monkeypatch.setattr(safetensors_read, "CHUNK", chunk)
    stored = {s.name: s.read() for s in iter_stored(path)}
    assert torch.equal(stored["w"], w) and torch.equal(stored["a"], torch.arange(5, dtype=torch.int32))


def test_row_blocks_read_from_the_file_equal_slices(tmp_path, monkeypatch):
    w = weights(3 * BLOCK + 2, torch.float32, seed=5)
    path = tmp_path / "w.safetensors"
    save_file({"w": w}, str(path))
    monkeypatch.setattr(safetensors_read, "CHUNK", 40)
    tensors = iter_stored(path)
    stored = next(tensors)
    buf = torch.empty(BLOCK, WIDTH, dtype=torch.float32)
    for i in range(0, w.shape[0], BLOCK):
        j = min(i + BLOCK, w.shape[0])
        assert torch.equal(stored.read_rows(i, j, buf), w[i:j])
        assert torch.equal(stored.read_rows(i, j), w[i:j])
