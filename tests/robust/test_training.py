"""Training, resume, files and command line of the certified classifiers (synthetic data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from pnp_stable.cli import main
from pnp_stable.robust.data import load_image_folder
from pnp_stable.robust.training import RobustTrainConfig, load_classifier, robust_train


def _two_class_folder(root, n=8, side=16):
    """Images with a bright top half against images with a bright bottom half (the training
    augmentation flips left and right and shifts by up to 4 pixels: neither changes the class)."""
    rng = np.random.default_rng(0)
    for cls in ("bottom", "top"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (side, side, 3)).astype(np.uint8)
            half = slice(0, side // 2) if cls == "top" else slice(side // 2, side)
            img[half] += 150
            imsave(root / cls / f"{i}.png", img, check_contrast=False)
    return root


def _cfg(tmp_path, name, **kw):
    base = dict(widths=[4, 8], blocks=[1, 1], epochs=3, batch_size=4, val_per_class=2, val_every=3, checkpoint_every=2, lr=5e-3)
    base.update(kw)
    return RobustTrainConfig(str(tmp_path / "data"), str(tmp_path / name), **base)


def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    _two_class_folder(tmp_path / "data")
    straight = robust_train(_cfg(tmp_path, "a"), progress=False)
    part = robust_train(_cfg(tmp_path, "b"), stop_after=4, progress=False)
    assert not part["finished"] and part["step"] == 4
    resumed = robust_train(_cfg(tmp_path, "b"), progress=False)
    assert straight["finished"] and resumed["finished"] and resumed["step"] == straight["step"]
    a = torch.load(tmp_path / "a" / "classifier.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "classifier.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, straight["step"] + 1))
    with pytest.raises(ValueError, match="another configuration"):
        robust_train(_cfg(tmp_path, "b", lr=1e-2), progress=False)


def test_command_line_trains_and_evaluates_with_a_certificate_the_attack_respects(tmp_path, capsys):
    data = _two_class_folder(tmp_path / "data", n=12)
    run = tmp_path / "run"
    assert main(["robust-train", str(data), "-o", str(run), "--widths", "4,8", "--blocks", "1,1", "--epochs", "8", "--batch-size", "4",
                 "--val-per-class", "2", "--lr", "1e-2", "--no-progress"]) == 0
    assert "certified" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert main(["robust-eval", str(run), str(data), "--pgd-images", "24", "--json", str(out), "--no-progress", "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert r["clean_accuracy"] > 0.9  # the two classes are easy
    assert r["empirical_lipschitz"] <= r["lipschitz_bound"] <= 1 + 1e-6
    for key, certified in r["certified_accuracy_pgd_subset"].items():
        assert r["pgd_accuracy"][key] >= certified
    model = load_classifier(run / "classifier.pt")
    assert model.record["steps_done"] > 0 and model.record["classes"] == ["bottom", "top"]
    assert main(["robust-eval", str(run), str(data), "--json", str(out), "--no-progress"]) == 2  # no overwrite
    assert "exists" in capsys.readouterr().err


def test_bad_folders_and_files_get_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="class subfolders"):
        load_image_folder(tmp_path / "empty", progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_folder(tmp_path / "nowhere", progress=False)
    bad = _two_class_folder(tmp_path / "bad")
    (bad / "top" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read .*broken.png"):
        load_image_folder(bad, progress=False)
    mixed = _two_class_folder(tmp_path / "mixed")
    imsave(mixed / "top" / "big.png", np.zeros((32, 32, 3), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match="same size"):
        load_image_folder(mixed, progress=False)
    fake = tmp_path / "fake.pt"
    torch.save({"model": "averaged"}, fake)
    assert main(["robust-eval", str(fake), str(tmp_path / "bad")]) == 2
    assert "not a pnp-stable robust classifier" in capsys.readouterr().err
    assert main(["robust-train", str(tmp_path / "bad"), "-o", str(tmp_path / "r"), "--widths", "4,x"]) == 2
    assert "--widths must be" in capsys.readouterr().err


def test_equilibrium_classifier_trains_from_the_command_line(tmp_path, capsys):
    _two_class_folder(tmp_path / "data")
    assert main(["robust-train", str(tmp_path / "data"), "-o", str(tmp_path / "run"), "--model", "lben", "--widths", "4,8",
                 "--blocks", "1,1", "--epochs", "1", "--batch-size", "4", "--val-per-class", "2", "--no-progress"]) == 0
    model = load_classifier(tmp_path / "run" / "classifier.pt")
    assert model.config["block"] == "lben" and "certified" in capsys.readouterr().out
