"""Folder restoration: batches, resume, failures, summaries, shards; the single-file commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pnp_stable.cli import main
from pnp_stable.distributed import ProcessGroup, rank_device, shard
from pnp_stable.folder import list_images, output_names, restore_folder
from pnp_stable.restore import RestoreTask, read_image, run_task, save_image
from pnp_stable.tasks import denoise, super_resolve


def _photos(rng, n=3, size=(24, 24), colour=False):
    from skimage import data, transform

    base = data.astronaut() / 255.0 if colour else data.camera() / 255.0
    out = []
    for i in range(n):
        crop = base[40 * i:40 * i + 96, 60:156]
        small = transform.resize(crop, size + ((3,) if colour else ()), anti_aliasing=True)
        out.append(np.clip(small + 0.02 * rng.standard_normal(small.shape), 0, 1))
    return out


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    for i, im in enumerate(_photos(rng, 3)):
        save_image(src / f"g{i}.png", im)
    save_image(src / "c0.png", _photos(rng, 1, colour=True)[0])
    save_image(src / "big.png", _photos(rng, 1, size=(32, 28))[0])
    (src / "notes.txt").write_text("not an image")
    return src


DEBLUR = RestoreTask("deblur", 0.02, kernel="gaussian:1.0", max_iter=30)


def test_batch_gives_what_each_image_gives_alone():
    images = _photos(np.random.default_rng(1), 3)
    task = RestoreTask("deblur", 0.02, kernel="gaussian:1.0", max_iter=40, anderson=0)
    together = run_task(task, images)
    for im, res in zip(images, together):
        [alone] = run_task(task, [im])
        assert res.record["iterations"] == alone.record["iterations"] and res.record["batch_size"] == 3
        np.testing.assert_allclose(res.image, alone.image, atol=1e-4)


def test_run_task_checks_shapes_and_leaves_inputs_alone():
    a, b = np.full((16, 16), 0.5), np.full((16, 18), 0.5)
    before = a.copy()
    with pytest.raises(ValueError, match="one shape"):
        run_task(RestoreTask("denoise", 0.1), [a, b])
    run_task(RestoreTask("denoise", 0.1), [a])
    assert np.array_equal(a, before)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="sharpen", noise=0.1), "task must be one of"),
    (dict(kind="deblur", noise=0.1), "needs a kernel"),
    (dict(kind="denoise", noise=-0.1), "noise must be a finite number >= 0"),
    (dict(kind="super-resolve", noise=0.1, factor=0), "needs a factor"),
    (dict(kind="super-resolve", noise=0.1, factor=2.5), "positive integer"),
    (dict(kind="denoise", noise=0.1, kernel="box:3"), "neither a kernel nor a factor"),
])
def test_restore_task_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RestoreTask(**kwargs)


def test_folder_restores_batches_mixed_channels_and_writes_reports(folder, tmp_path):
    out = tmp_path / "out"
    ref = tmp_path / "ref"
    ref.mkdir()
    save_image(ref / "g0.png", read_image(folder / "g0.png"))
    s = restore_folder(folder, out, DEBLUR, reference_dir=ref, progress=False, batch_size=2)
    assert sorted(s.restored) == ["big.png", "c0.png", "g0.png", "g1.png", "g2.png"] and not s.failed and not s.missing
    assert read_image(out / "c0.png").shape == (24, 24, 3) and read_image(out / "big.png").shape == (32, 28)
    g0 = json.loads((out / "reports" / "g0.json").read_text())
    assert g0["guaranteed"] and g0["task"]["boundary"] == "unknown" and g0["batch_size"] == 2
    assert np.isfinite(g0["psnr"]) and len(g0["residual_history"]) >= 1
    assert json.loads((out / "reports" / "c0.json").read_text())["batch_size"] == 1  # colour runs with its own model
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["file"] for r in rows] == ["big.png", "c0.png", "g0.png", "g1.png", "g2.png"]
    assert {r["status"] for r in rows} == {"done"} and rows[2]["psnr"] and rows[1]["channels"] == "3"


def test_folder_resumes_and_overwrites_only_when_asked(folder, tmp_path):
    out = tmp_path / "out"
    task = RestoreTask("denoise", 0.05)
    restore_folder(folder, out, task, progress=False)
    stamp = (out / "g1.png").stat().st_mtime_ns
    (out / "g2.png").unlink()  # as if the run had been interrupted before it
    s = restore_folder(folder, out, task, progress=False)
    assert s.restored == ["g2.png"] and len(s.skipped) == 4 and (out / "g1.png").stat().st_mtime_ns == stamp
    s = restore_folder(folder, out, task, progress=False, overwrite=True)
    assert len(s.restored) == 5 and not s.skipped


def test_unreadable_and_failing_images_are_reported_and_the_rest_go_on(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    s = restore_folder(folder, out, DEBLUR, progress=False)
    assert s.failed == ["broken.png"] and "not a readable image" in s.errors["broken.png"] and len(s.restored) == 5
    assert not (out / "broken.png").exists() and json.loads((out / "reports" / "broken.failed.json").read_text())["error"]
    rows = {r["file"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["broken.png"]["status"] == "failed" and "readable" in rows["broken.png"]["error"]
    # A kernel larger than one image fails that image only (its batch falls back to one by one).
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    save_image(tiny / "a.png", np.full((24, 24), 0.5))
    save_image(tiny / "b.png", np.full((4, 4), 0.5))
    s = restore_folder(tiny, tmp_path / "tiny_out", RestoreTask("deblur", 0.02, kernel="box:9", max_iter=5), progress=False)
    assert s.restored == ["a.png"] and s.failed == ["b.png"] and "kernel" in s.errors["b.png"]
    # Fixed, the rerun restores it and drops the failure record.
    (tiny / "b.png").unlink()
    save_image(tiny / "b.png", np.full((24, 24), 0.5))
    s = restore_folder(tiny, tmp_path / "tiny_out", RestoreTask("deblur", 0.02, kernel="box:9", max_iter=5), progress=False)
    assert s.restored == ["b.png"] and not (tmp_path / "tiny_out" / "reports" / "b.failed.json").exists()


def test_folder_bad_input(folder, tmp_path):
    task = RestoreTask("denoise", 0.05)
    with pytest.raises(ValueError, match="inside the input folder"):
        restore_folder(folder, folder / "out", task)
    with pytest.raises(ValueError, match="inside the input folder"):
        restore_folder(folder, folder, task)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is empty"):
        restore_folder(empty, tmp_path / "o", task)
    (empty / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="has no image files"):
        restore_folder(empty, tmp_path / "o", task)
    with pytest.raises(FileNotFoundError, match="input folder not found"):
        restore_folder(tmp_path / "nope", tmp_path / "o", task)
    with pytest.raises(FileNotFoundError, match="reference folder not found"):
        restore_folder(folder, tmp_path / "o", task, reference_dir=tmp_path / "nope")


def test_a_dead_rank_leaves_its_shard_missing_and_a_rerun_completes_it(folder, tmp_path):
    out = tmp_path / "out"
    task = RestoreTask("denoise", 0.05)
    # Rank 0 of 2 runs; rank 1 never does (no process group: the barrier is a no-op here).
    s = restore_folder(folder, out, task, progress=False, group=ProcessGroup(rank=0, world_size=2))
    files = [p.name for p in list_images(folder)]
    assert s.restored == files[0::2] and s.missing == files[1::2]
    assert {r["status"] for r in csv.DictReader((out / "summary.csv").open()) if r["file"] in s.missing} == {"missing"}
    s = restore_folder(folder, out, task, progress=False)
    assert s.restored == files[1::2] and not s.missing


def test_output_names_keep_files_with_one_stem_apart(tmp_path):
    save_image(tmp_path / "a.png", np.zeros((8, 8)))
    save_image(tmp_path / "a.tif", np.ones((8, 8)))
    names = output_names(list_images(tmp_path))
    assert sorted(names.values()) == ["a_png", "a_tif"]


@given(st.integers(0, 40), st.integers(1, 5))
def test_shards_are_disjoint_and_cover_every_item(n, world):
    items = list(range(n))
    parts = [shard(items, ProcessGroup(rank=r, world_size=world)) for r in range(world)]
    assert sorted(sum(parts, [])) == items


def test_rank_device_gives_each_rank_its_gpu():
    assert rank_device("cuda", ProcessGroup(1, 2, 1)) == torch.device("cuda", 1)
    assert rank_device("cuda:0", ProcessGroup(1, 2, 1)) == torch.device("cuda", 0)
    assert rank_device("cpu", ProcessGroup(1, 2, 1)) == torch.device("cpu")


def test_denoise_and_super_resolve_functions():
    rng = np.random.default_rng(3)
    clean = _photos(rng, 1, size=(32, 32))[0]
    noisy = np.clip(clean + 0.08 * rng.standard_normal(clean.shape), 0, 1)
    keep = noisy.copy()
    out = denoise(noisy, 0.08).image
    assert np.array_equal(noisy, keep) and out.shape == noisy.shape
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    u8 = denoise((noisy * 255).astype(np.uint8), 0.08).image
    assert u8.dtype == np.uint8
    low = clean[::2, ::2]
    r = super_resolve(low, 2, 0.01, progress=False, max_iter=30)
    assert r.image.shape == (32, 32) and r.report.guaranteed
    with pytest.raises(ValueError, match="noise_level is 0"):
        super_resolve(low, 2, 0.0)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        super_resolve(low, 0, 0.01)
    with pytest.raises(ValueError, match="boundaries"):
        super_resolve(low, 2, 0.01, boundary="unknown")
    with pytest.raises(ValueError, match="NaN"):
        denoise(np.full((8, 8), np.nan), 0.1)


def test_single_file_commands_share_the_folder_path(tmp_path, capsys):
    rng = np.random.default_rng(4)
    src = tmp_path / "in.png"
    save_image(src, _photos(rng, 1, size=(24, 24))[0])
    out, rep = tmp_path / "d.png", tmp_path / "d.json"
    assert main(["denoise", str(src), "-o", str(out), "--noise", "0.05", "--report", str(rep), "--no-progress"]) == 0
    assert read_image(out).shape == (24, 24) and json.loads(rep.read_text())["task"]["kind"] == "denoise"
    assert "denoised" in capsys.readouterr().out
    assert main(["denoise", str(src), "-o", str(out), "--noise", "0.05"]) == 2
    assert "exists" in capsys.readouterr().err
    # the single-file result equals the folder's
    folder_out = tmp_path / "f"
    restore_folder_dir = tmp_path / "src"
    restore_folder_dir.mkdir()
    save_image(restore_folder_dir / "in.png", read_image(src))
    assert main(["restore", str(restore_folder_dir), "-o", str(folder_out), "--noise", "0.05", "--no-progress"]) == 0
    assert np.array_equal(read_image(folder_out / "in.png"), read_image(out))
    sr = tmp_path / "sr.png"
    assert main(["super-resolve", str(src), "-o", str(sr), "--factor", "2", "--noise", "0.01", "--max-iter", "20",
                 "--no-progress"]) == 0
    assert read_image(sr).shape == (48, 48) and "guaranteed" in capsys.readouterr().out
    assert main(["super-resolve", str(src), "-o", str(tmp_path / "x.png"), "--factor", "2", "--noise", "0"]) == 2
    assert "noise_level is 0" in capsys.readouterr().err


def test_restore_command_infers_the_task_and_exits_1_on_failures(folder, tmp_path, capsys):
    (folder / "broken.jpg").write_text("nope")
    out = tmp_path / "o"
    assert main(["restore", str(folder), "-o", str(out), "--factor", "2", "--noise", "0.01", "--max-iter", "10",
                 "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "5 restored" in text and "1 failed" in text and "broken.jpg" in text
    assert read_image(out / "g0.png").shape == (48, 48)
    assert json.loads((out / "reports" / "g0.json").read_text())["task"]["kind"] == "super-resolve"
    assert main(["restore", str(folder), "-o", str(folder / "x"), "--noise", "0.01"]) == 2
    assert "inside the input folder" in capsys.readouterr().err
