"""The machinery of tools/mutate.py (the mutation pass itself is too slow for the suite: run it by hand)."""
import ast
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("nexus_mutate_tool", REPO / "tools" / "mutate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_curated_list_is_well_formed(mutate):
    ids = [c[0] for c in mutate.CURATED]
    assert len(ids) == len(set(ids))
    for mid, path, original, mutated, desc in mutate.CURATED:
        assert (REPO / path).is_file() and original != mutated and desc, mid
    live = [m for m in mutate.curated_mutants() if m.apply((REPO / m.path).read_text()) is not None]
    # the list follows the code: most snippets must still be found exactly once (stale ones are reported)
    assert len(live) >= 0.8 * len(mutate.CURATED)


def test_operator_mutants_compile_and_change_one_spot(mutate):
    ops = mutate.operator_mutants(["nexus_core/ar/sampling.py", "nexus_core/decoder/schedule.py"])
    assert len(ops) > 30 and len({m.id for m in ops}) == len(ops)
    for m in ops:
        src = (REPO / m.path).read_text()
        new = m.apply(src)
        assert new != src
        ast.parse(new)
        assert len(new.splitlines()) == len(src.splitlines())  # in place: other lines untouched
    texts = "\n".join(m.description for m in ops)
    assert "<=" in texts and ("True" in texts or "False" in texts)  # comparison swaps and boolean flips
    # nothing inside raise statements or messages
    for m in ops:
        line = (REPO / m.path).read_text().splitlines()[m.line - 1].strip()
        assert not line.startswith(("raise", "f\"", "log.")), (m.id, line)


def test_sampling_is_seeded_and_spread_over_files(mutate):
    ops = mutate.operator_mutants(["nexus_core/ar", "nexus_core/decoder"])
    a = mutate.sample_operator_mutants(list(ops), 20, seed=0)
    b = mutate.sample_operator_mutants(list(ops), 20, seed=0)
    assert [m.id for m in a] == [m.id for m in b] and len(a) == 20
    assert len({m.path for m in a}) >= 15
    assert mutate.sample_operator_mutants(list(ops), -1, 0) == ops


def test_every_scope_file_has_tests_mapped(mutate):
    for m in mutate.operator_mutants():
        tests = mutate.tests_for(m.path)
        assert tests != ["tests"] and all((REPO / t).exists() for t in tests), m.path
    for mid, path, *_ in mutate.CURATED:
        assert all((REPO / t).exists() for t in mutate.tests_for(path)), mid


def test_a_mutant_runs_in_a_copy_and_is_restored(mutate, tmp_path, monkeypatch):
    """A planted change is killed by a test that sees it, an inert one survives, the copy is restored after each,
    also when the run is interrupted, and the working tree is never written."""
    copy = tmp_path / "copy"
    mutate.copy_tree(copy)
    target = "nexus_core/errors.py"
    before = _digest(REPO / target)
    probe = copy / "tests" / "test_probe_selftest.py"
    probe.write_text("from pathlib import Path\n\ndef test_probe():\n"
                     "    assert 'PLANTED' not in Path('nexus_core/errors.py').read_text()\n")
    tests = ["tests/test_probe_selftest.py"]
    planted = mutate.Mutant("T1", target, "planted", "curated", original="class NexusError(Exception):",
                            mutated="class NexusError(Exception):  # PLANTED")
    inert = mutate.Mutant("T2", target, "inert", "curated", original="class NexusCancelled(Exception):",
                          mutated="class NexusCancelled(Exception):  # harmless")
    missing = mutate.Mutant("T3", target, "stale", "curated", original="no such text", mutated="x")
    for m in (planted, inert, missing):
        mutate.run_mutant(m, copy, timeout=1800, tests_override=tests)  # a bound, not a measure: loaded machines are slow
        assert _digest(copy / target) == before
    assert (planted.result, inert.result, missing.result) == ("killed", "survived", "stale")
    assert "test_probe" in planted.detail

    def interrupted(*a, **k):
        assert "PLANTED" in (copy / target).read_text()
        raise KeyboardInterrupt

    monkeypatch.setattr(mutate, "run_pytest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mutate.run_mutant(mutate.Mutant("T4", target, "", "curated", original="class NexusError(Exception):",
                                        mutated="class NexusError(Exception):  # PLANTED"), copy, 10, tests)
    assert _digest(copy / target) == before == _digest(REPO / target)


def test_report_counts(mutate, capsys):
    ms = [mutate.Mutant("a", "nexus_core/x.py", "", "curated", result="killed"),
          mutate.Mutant("b", "nexus_core/x.py", "", "operator", result="survived"),
          mutate.Mutant("c", "nodes/y.py", "", "operator", result="survived"),
          mutate.Mutant("d", "nexus_core/x.py", "", "curated", result="stale")]
    stats = mutate.report(ms)
    assert stats == {"core (nexus_core)": (1, 2), "nodes/": (0, 1)}
    out = capsys.readouterr().out
    assert "stale (not run): d" in out and "survivors: b" in out
