"""make-full-size checks sizes and the disk from the plan alone, before building or writing anything (issue 30,
class 7): an impossible depth is refused at once, leaves nothing behind, and digits mean ASCII digits."""
import shutil
from collections import namedtuple

import pytest

from nexus_core.cli import main
from nexus_core.errors import NexusError
from nexus_core.synthetic import full_size


def test_the_planned_bytes_equal_the_plan(monkeypatch):
    """The per-layer arithmetic gives exactly the bytes of the tensor list built at that depth."""
    for parts, depths in ((("ar",), (3, 2, (1, 0))), (("generation",), (1, 1, (2, 3))),
                          (("ar", "generation", "editing"), (2, 3, (3, 1)))):
        t, v, blocks = depths
        assert full_size.bytes_planned(parts, t, v, blocks) == full_size.plan(parts, t, v, blocks).bytes_needed()


def test_an_impossible_depth_is_refused_before_anything_is_built_or_written(tmp_path, monkeypatch):
    built = []
    real = full_size.ar_spec
    monkeypatch.setattr(full_size, "ar_spec", lambda cfg, *a: built.append(cfg["num_hidden_layers"]) or real(cfg, *a))
    root = tmp_path / "big"
    with pytest.raises(NexusError, match=r"needs [\d.]+ GB in .*only [\d.]+ GB are free"):
        full_size.make_full_size(root, ("ar", "generation"), ar_layers=10**9)
    assert max(built) <= 2 and not root.exists()  # no skeleton at that depth, no tokenizer left behind


def test_a_plan_larger_than_the_disk_leaves_nothing_so_the_rerun_is_not_refused(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    root = tmp_path / "out"
    root.mkdir()
    assert main(["make-full-size", str(root), "--ar-layers", "1", "--vision-layers", "1", "--parts", "ar"]) == 2
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("flag,value", [("--ar-layers", "١٢"), ("--vision-layers", "２"), ("--dit-blocks", "١,٢"),
                                        ("--dit-blocks", "1,²")])
def test_digits_mean_ascii_digits(tmp_path, capsys, flag, value):
    try:
        rc = main(["make-full-size", str(tmp_path / "x"), flag, value])
    except SystemExit as e:  # argparse's refusal (the flag's type)
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "ASCII digits" in err or "DOUBLE,SINGLE" in err, err
    assert not (tmp_path / "x").exists()
