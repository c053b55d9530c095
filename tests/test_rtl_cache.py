"""sim/rtl_cache.py: generated Verilog reused by the hash of its sources."""

from __future__ import annotations

import json

import pytest

import hw.rtl
from hw.config import preset
from sim import rtl_cache
from sim.rtl_cache import REPO_ROOT, cached_rtl, generator_sources, rtl_key

TINY = preset("tiny")


def test_generator_sources_are_the_import_closure():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in generator_sources("accelerator")}
    # the top, its blocks, the generator, and what hw reaches outside hw (status codes)
    for must in ("hw/rtl.py", "hw/accelerator.py", "hw/systolic_array.py", "hw/load_unit.py",
                 "hw/config.py", "sim/golden.py"):
        assert must in names
    assert not any(n.startswith(("compiler/", "nmx/", "tb/", "tests/")) for n in names)
    array = {p.relative_to(REPO_ROOT).as_posix() for p in generator_sources("array")}
    assert {"hw/rtl.py", "hw/systolic_array.py", "hw/processing_element.py"} <= array
    with pytest.raises(ValueError, match="unknown top"):
        generator_sources("nope")


def test_key_depends_on_config_top_and_sources(monkeypatch, tmp_path):
    k = rtl_key(TINY)
    assert k == rtl_key(TINY)
    assert k != rtl_key(TINY.replace(pwl_functions=16))
    assert k != rtl_key(TINY, "array")
    src = tmp_path / "extra.py"
    src.write_text("x = 1\n")
    real = generator_sources("accelerator")
    monkeypatch.setattr(rtl_cache, "generator_sources", lambda top: (*real, src))
    k1 = rtl_key(TINY)
    src.write_text("x = 2\n")
    assert rtl_key(TINY) != k1


@pytest.fixture
def counting_writer(monkeypatch):
    """hw.rtl.write_rtl replaced by a fast fake that counts its calls."""
    calls = []

    def fake(config, out_dir, top="accelerator"):
        calls.append(top)
        path = out_dir / f"{config.artifact_stem(hw.rtl.TOPS[top])}.v"
        path.write_text(f"// generated {len(calls)}\n")
        return path

    monkeypatch.setattr(hw.rtl, "write_rtl", fake)
    return calls


def test_hit_miss_and_tamper(tmp_path, counting_writer, monkeypatch):
    v = cached_rtl(TINY, tmp_path)
    assert counting_writer == ["accelerator"] and v.read_text() == "// generated 1\n"
    assert cached_rtl(TINY, tmp_path) == v and len(counting_writer) == 1  # hit
    record = json.loads(v.with_suffix(".rtlkey").read_text())
    assert record["key"] == rtl_key(TINY)
    v.write_text("// edited by hand\n")  # content no longer the one recorded: regenerate
    cached_rtl(TINY, tmp_path)
    assert len(counting_writer) == 2 and v.read_text() == "// generated 2\n"
    monkeypatch.setattr(rtl_cache, "rtl_key", lambda config, top="accelerator": "other")
    cached_rtl(TINY, tmp_path)  # sources changed: regenerate
    assert len(counting_writer) == 3
    v.unlink()
    cached_rtl(TINY, tmp_path)  # file gone: regenerate
    assert len(counting_writer) == 4


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        cached_rtl("tiny", tmp_path)
    with pytest.raises(ValueError, match="unknown top"):
        cached_rtl(TINY, tmp_path, "nope")


def test_real_generation_is_reused(tmp_path):
    v = cached_rtl(TINY, tmp_path, "array")
    assert v == hw.rtl.write_rtl(TINY, tmp_path / "direct", "array").parent.parent / v.name
    assert v.read_bytes() == (tmp_path / "direct" / v.name).read_bytes()
    mtime = v.stat().st_mtime_ns
    assert cached_rtl(TINY, tmp_path, "array") == v and v.stat().st_mtime_ns == mtime
