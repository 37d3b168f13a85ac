"""The noise level estimated when not given: accuracy, the report, the commands, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data, io, transform, util

from operators import Blur
from pnp_stable import deblur, denoise, super_resolve
from pnp_stable.cli import main
from pnp_stable.noise_level import MIN_ESTIMATE, estimate_noise_level


def _blurred_photo(level: float, seed: int = 0, size: int = 160) -> np.ndarray:
    scene = transform.resize(data.camera() / 255.0, (size + 8, size + 8), anti_aliasing=True)
    y = Blur("gaussian:1.2", boundary="unknown").A(torch.from_numpy(scene)[None, None])[0, 0].numpy()
    return y + level * np.random.default_rng(seed).standard_normal(y.shape)


@pytest.mark.parametrize("level", [2.55 / 255, 7.65 / 255, 12.75 / 255])
def test_estimate_is_within_ten_percent_on_a_blurred_photo(level):
    y = torch.from_numpy(_blurred_photo(level, size=300))[None, None].float()
    assert abs(estimate_noise_level(y) / level - 1) < 0.1


def test_colour_and_batches_pool_their_estimates():
    y = np.stack([_blurred_photo(0.03, seed=s) for s in range(3)], -1)
    t = torch.from_numpy(np.moveaxis(y, -1, 0))[None].float()
    assert abs(estimate_noise_level(t) / 0.03 - 1) < 0.15
    assert abs(estimate_noise_level(torch.cat([t, t])) - estimate_noise_level(t)) < 1e-6


def test_clean_image_reads_as_nearly_noise_free_but_not_zero():
    y = torch.from_numpy(_blurred_photo(0.0))[None, None].float()
    assert MIN_ESTIMATE <= estimate_noise_level(y) < 2 / 255


@pytest.mark.parametrize("image, match", [
    (torch.full((1, 1, 64, 64), 0.5), "flat"),
    (torch.rand(1, 1, 20, 64), "too small"),
    (torch.full((1, 1, 64, 64), float("nan")), "NaN or Inf"),
])
def test_bad_images_are_refused_with_a_reason(image, match):
    with pytest.raises(ValueError, match=match):
        estimate_noise_level(image)


def test_deblur_without_a_level_estimates_and_says_so():
    level = 0.03
    y = _blurred_photo(level).astype(np.float32)
    r = deblur(y, "gaussian:1.2", progress=False, max_iter=5)
    assert r.noise_estimated and abs(r.noise_level / level - 1) < 0.15
    assert r.report.notes[0].startswith("noise level") and "estimated" in r.report.notes[0]
    given = deblur(y, "gaussian:1.2", level, progress=False, max_iter=5)
    assert not given.noise_estimated and given.noise_level == level
    assert not any(n.startswith("noise level") for n in given.report.notes)


def test_denoise_and_super_resolve_estimate_too():
    y = _blurred_photo(0.05).astype(np.float32)
    d = denoise(y)
    assert d.noise_estimated and abs(d.noise_level / 0.05 - 1) < 0.15
    s = super_resolve(y[:64, :64], 2, progress=False, max_iter=3)
    assert s.noise_estimated and s.report.notes[0].startswith("noise level")


def test_a_flat_image_is_refused_before_any_work():
    with pytest.raises(ValueError, match="flat"):
        deblur(np.full((64, 64), 0.5), "gaussian:1.0", progress=False)


def _png(tmp_path, name="in.png", level=0.03):
    path = tmp_path / name
    io.imsave(path, util.img_as_ubyte(np.clip(_blurred_photo(level, size=96), 0, 1)), check_contrast=False)
    return path


def test_cli_noise_defaults_to_auto_and_reports_the_estimate(tmp_path, capsys):
    src = _png(tmp_path)
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    assert main(["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.2", "--max-iter", "4", "--no-progress",
                 "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "estimated from the image" in text and out.exists()
    rec = json.loads(report.read_text())
    assert rec["noise_estimated"] is True and abs(rec["noise_level"] / 0.03 - 1) < 0.2
    assert main(["denoise", str(src), "-o", str(tmp_path / "d.png"), "--noise", "auto"]) == 0
    assert "(estimated)" in capsys.readouterr().out


def test_cli_max_memory_is_checked_before_any_work(tmp_path, capsys):
    src = _png(tmp_path)
    out = tmp_path / "o.png"
    assert main(["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.2", "--noise", "0.03",
                 "--max-memory", "lots"]) == 2
    assert "max_memory must be" in capsys.readouterr().err and not out.exists()
    assert main(["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.2", "--noise", "0.03",
                 "--max-memory", "1M"]) == 2
    assert "too small" in capsys.readouterr().err and not out.exists()


def test_restore_folder_estimates_each_image(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder, "a.png", 0.02)
    _png(folder, "b.png", 0.06)
    assert main(["restore", str(folder), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    reports = {p.stem.split(".")[0]: json.loads(p.read_text()) for p in (tmp_path / "out").rglob("*.json")}
    levels = {k: v["noise_level"] for k, v in reports.items() if "noise_level" in v}
    assert len(levels) == 2 and all(v["noise_estimated"] for v in reports.values() if "noise_level" in v)
    assert levels["a"] < levels["b"]
