"""A Linear split into blocks of output rows (nexus_core/memory/row_blocks.py, issue 33 item 2 under a host that
casts each layer whole): the same outputs as the whole layer (bit for bit in bfloat16; in float32 within the bound
of another summation order), a block never larger than asked once cast, the split made only above the threshold,
no copy of the weight, and tied weights left whole. The oracle is the unsplit layer."""
import pytest
import torch

from graded_layers import graded_linear, within_summation_bound
from nexus_core.memory.fp8 import ScaledFp8Linear
from nexus_core.memory.row_blocks import RowBlockEmbedding, RowBlocks, split_large_layers


def split_one(layer, dtype, rows):
    root = torch.nn.Sequential(layer)
    size = torch.empty(0, dtype=dtype).element_size()
    names = split_large_layers(root, dtype, whole_up_to=0, block_bytes=layer.in_features * size * rows)
    assert names == ["0"] and isinstance(root[0], RowBlocks)
    return root[0]


@pytest.mark.parametrize("kind", ["linear", "fp8"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 37, 250, 999, 1000, 5000])
def test_blocks_give_the_whole_layers_outputs(kind, dtype, bias, rows):
    base = graded_linear(1000, 96, bias)
    whole = ScaledFp8Linear.from_linear(base, torch.float8_e4m3fn) if kind == "fp8" else base.to(dtype)
    x = torch.randn(2, 5, 96, generator=torch.Generator().manual_seed(1)).to(dtype)
    want = whole(x)
    blocks = split_one(whole, dtype, rows)
    assert len(blocks.blocks) == -(-1000 // rows)
    assert [b.out_features for b in blocks.blocks][:-1] == [rows] * (len(blocks.blocks) - 1)
    got = blocks(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    if dtype == torch.bfloat16:
        assert torch.equal(got, want)
    else:
        w = whole.dequantized_weight() if kind == "fp8" else whole.weight
        assert within_summation_bound(got, want, x, w)


def test_blocks_are_views_of_the_weight_not_copies():
    layer = ScaledFp8Linear.from_linear(graded_linear(100, 32, True), torch.float8_e4m3fn)
    start, end = layer.weight.data_ptr(), layer.weight.data_ptr() + layer.weight.numel()
    blocks = split_one(layer, torch.bfloat16, 30)
    for b in blocks.blocks:
        assert start <= b.weight.data_ptr() < end
        assert b.weight.untyped_storage().data_ptr() == layer.weight.untyped_storage().data_ptr()
    joined = torch.cat([b.weight_scale for b in blocks.blocks])
    assert torch.equal(joined, layer.weight_scale)  # each block keeps its rows' scales


def test_only_layers_above_the_threshold_are_split_and_blocks_stay_under_the_block_size():
    size = 2  # bf16
    root = torch.nn.ModuleDict({"at": torch.nn.Linear(10, 50, bias=False), "above": torch.nn.Linear(10, 51, bias=False)})
    limit = 50 * 10 * size
    names = split_large_layers(root, torch.bfloat16, whole_up_to=limit, block_bytes=7 * 10 * size)
    assert names == ["above"]
    assert type(root["at"]) is torch.nn.Linear
    assert all(b.weight.numel() * size <= 7 * 10 * size for b in root["above"].blocks)
    assert sum(b.out_features for b in root["above"].blocks) == 51


def test_a_tied_weight_is_left_whole():
    emb = torch.nn.Embedding(300, 16)
    head = torch.nn.Linear(16, 300, bias=False)
    head.weight = emb.weight
    root = torch.nn.ModuleDict({"emb": emb, "head": head})
    assert split_large_layers(root, torch.float32, whole_up_to=0, block_bytes=16 * 4 * 10) == []
    assert root["head"].weight is root["emb"].weight


def test_the_real_head_is_split_into_blocks_of_at_most_64_mb():
    """The thresholds at the real widths, on the meta device: the output head (152,064 x 3,584) is split in bf16,
    the MLP layers (18,944 x 3,584) are not."""
    with torch.device("meta"):
        root = torch.nn.ModuleDict({"lm_head": torch.nn.Linear(3584, 152064, bias=False),
                                    "mlp": torch.nn.Linear(3584, 18944, bias=False)})
    assert split_large_layers(root, torch.bfloat16) == ["lm_head"]
    sizes = [b.weight.numel() * 2 for b in root["lm_head"].blocks]
    assert max(sizes) <= 64 << 20 and len(sizes) == 17


# --- the input embedding table, split the same way ---------------------------------------------------------------

def split_table(table, dtype, rows):
    root = torch.nn.ModuleDict({"emb": table})
    size = torch.empty(0, dtype=dtype).element_size()
    names = split_large_layers(root, dtype, whole_up_to=0, block_bytes=table.embedding_dim * size * rows)
    assert names == ["emb"] and isinstance(root["emb"], RowBlockEmbedding)
    return root["emb"]


def graded_table(n=1000, width=24):
    table = torch.nn.Embedding(n, width)
    with torch.no_grad():  # every row different (row r starts at r): a row from the wrong block shows
        table.weight.copy_(torch.arange(n * width, dtype=torch.float32).reshape(n, width) / width)
    return table.to(torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 37, 250, 999, 1000, 5000])
def test_a_split_table_looks_up_the_same_rows(rows):
    whole = graded_table()
    ids = torch.tensor([[0, 1, 36, 37, 38, 249, 250, 251], [499, 500, 998, 999, 0, 999, 37, 37]])
    ids = torch.cat([ids, torch.randint(0, 1000, (2, 50), generator=torch.Generator().manual_seed(3))], dim=1)
    want = whole(ids)
    blocks = split_table(whole, torch.bfloat16, rows)
    assert len(blocks.blocks) == -(-1000 // rows) and blocks.num_embeddings == 1000 and blocks.embedding_dim == 24
    got = blocks(ids)
    assert got.shape == want.shape and got.dtype == want.dtype and torch.equal(got, want)
    assert torch.equal(blocks(ids[0, 3]), want[0, 3])  # a single id, as while generating (a 0-d tensor)
    assert blocks(ids[:, :0]).shape == (2, 0, 24)


def test_a_lookup_calls_only_the_blocks_holding_its_ids():
    """So the host casts only those: one block per generated token, not the table."""
    blocks = split_table(graded_table(), torch.bfloat16, 100)
    called = []
    for k, b in enumerate(blocks.blocks):
        b.register_forward_hook(lambda m, a, out, k=k: called.append((k, a[0].tolist())))
    blocks(torch.tensor([[250]]))
    assert called == [(2, [50])]
    called.clear()
    blocks(torch.tensor([99, 100, 999, 100]))
    assert called == [(0, [99]), (1, [0, 0]), (9, [99])]


@pytest.mark.parametrize("bad", [-1, 1000, 5000])
def test_an_id_outside_the_table_is_refused_like_the_whole_tables(bad):
    whole, blocks = graded_table(), split_table(graded_table(), torch.bfloat16, 300)
    assert torch.equal(blocks(torch.tensor([999, 0])), whole(torch.tensor([999, 0])))  # the edges inside: fine
    with pytest.raises(IndexError):
        whole(torch.tensor([5, bad]))
    with pytest.raises(IndexError, match="0..999"):
        blocks(torch.tensor([5, bad]))


def test_table_blocks_are_views_and_tables_that_must_stay_whole_do():
    table = graded_table()
    start = table.weight.data_ptr()
    blocks = split_table(table, torch.bfloat16, 300)
    assert [b.weight.data_ptr() for b in blocks.blocks] == [start + r * 24 * 2 for r in (0, 300, 600, 900)]
    normed = torch.nn.Embedding(1000, 24, max_norm=1.0)  # renormalises the rows it looks up, in place: left whole
    padded = torch.nn.Embedding(1000, 24, padding_idx=0)  # as transformers makes Qwen's table (pad_token_id)
    root = torch.nn.ModuleDict({"padded": padded, "normed": normed, "small": torch.nn.Embedding(10, 24)})
    want = padded(torch.tensor([0, 1, 999]))
    assert split_large_layers(root, torch.float32, whole_up_to=10 * 24 * 4, block_bytes=24 * 4 * 7) == ["padded"]
    assert root["normed"] is normed and torch.equal(root["padded"](torch.tensor([0, 1, 999])), want)


def test_the_real_table_is_split_like_the_head():
    with torch.device("meta"):
        root = torch.nn.ModuleDict({"embed_tokens": torch.nn.Embedding(152064, 3584),
                                    "prefill": torch.nn.Embedding(81, 3584)})
    assert split_large_layers(root, torch.bfloat16) == ["embed_tokens"]
    sizes = [b.weight.numel() * 2 for b in root["embed_tokens"].blocks]
    assert max(sizes) <= 64 << 20 and len(sizes) == 17 and root["embed_tokens"].num_embeddings == 152064
