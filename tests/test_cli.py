"""The pnp-stable command line and the I/O it relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pnp_stable.cli import main
from pnp_stable.io import load_image, write_atomic



def _camera_crops(folder: Path, count: int) -> Path:
    """A training folder of ``count`` 40x40 crops of the cameraman."""
    from skimage import data, io

    folder.mkdir()
    for i in range(count):
        io.imsave(folder / f"{i}.png", data.camera()[i * 60 : i * 60 + 40, :40], check_contrast=False)
    return folder

def test_demo_writes_figure_and_improves_psnr(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["demo", "-o", str(out), "--kernel", "gaussian:1.6", "--size", "96", "--no-progress"]) == 0
    text = capsys.readouterr().out
    blurred, tikhonov, restored = (float(line.split("PSNR")[1].split("dB")[0]) for line in text.splitlines()[:3])
    assert restored > blurred + 1.0 and tikhonov > blurred
    assert "shipped certified denoiser" in text and ", guaranteed" in text
    from skimage import io

    img = io.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200


def test_demo_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "fig.png"
    out.write_bytes(b"precious")
    assert main(["demo", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert main(["demo", "-o", str(out), "--overwrite", "--kernel", "box:3", "--size", "48", "--no-progress"]) == 0
    assert out.read_bytes() != b"precious"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--kernel", "blob:3"], "unknown kernel family"),
        (["--noise", "-0.1"], "sigma must be"),
        (["--image", "no_such_file.png"], "image not found"),
    ],
)
def test_demo_bad_input_one_line(tmp_path, capsys, args, match):
    assert main(["demo", "-o", str(tmp_path / "f.png"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


def test_demo_missing_output_folder(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "nope" / "f.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "pnp-stable")
    if not os.path.exists(exe):
        exe = "pnp-stable"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pnp-stable ")


def test_load_image_errors(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_image(tmp_path / "missing.png")


def test_load_image_kinds(tmp_path):
    from skimage import io

    rgba = (np.random.default_rng(0).random((8, 9, 4)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "a.png", rgba, check_contrast=False)
    img = load_image(tmp_path / "a.png")
    assert img.shape == (8, 9, 3) and img.dtype == np.float64 and 0 <= img.min() and img.max() <= 1
    assert load_image("astronaut").shape == (512, 512, 3)


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"

    def broken(path):
        with open(path, "w") as fh:
            fh.write("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert list(tmp_path.iterdir()) == []


def test_train_then_certify_from_the_command_line(tmp_path, capsys):
    imgs = _camera_crops(tmp_path / "imgs", 5)
    out = tmp_path / "run"
    args = ["train", str(imgs), "-o", str(out), "--width", "4", "--depth", "1", "--patch", "16", "--batch-size", "2",
            "--steps", "3", "--val-split", "1", "--val-every", "3", "--sigma", "25/255", "--no-progress"]
    assert main(args) == 0
    assert "finished at step 3" in capsys.readouterr().out
    assert (out / "checkpoint.pt").exists() and (out / "config.json").exists()
    # certify a weights file exported from that run
    w = tmp_path / "m.pt"
    assert main(["export", str(out), "-o", str(w), "--note", "tiny"]) == 0
    from denoisers.weights import load_weights

    meta = load_weights(w, return_record=True)[1]["metadata"]
    assert meta["steps_done"] == 3 and meta["note"] == "tiny" and meta["training_config"]["train_dir"] == str(imgs)
    assert main(["export", str(out), "-o", str(w)]) == 2  # exists, no --overwrite
    # fine-tune from the exported weights
    tuned = tmp_path / "tuned"
    assert main(args[:3] + [str(tuned)] + args[4:] + ["--init", str(w)]) == 0
    assert json.loads((tuned / "config.json").read_text())["init"] == str(w)
    assert json.loads((tuned / "init.json").read_text())["steps_done"] == 3
    capsys.readouterr()
    assert main(["certify", str(w), "--json", str(tmp_path / "c.json")]) == 0
    text = capsys.readouterr().out
    assert "certified averagedness" in text and "empirical lower bounds" in text
    assert json.loads((tmp_path / "c.json").read_text())["alpha"] < 1


def test_lben_trains_exports_certifies_and_deblurs_from_the_command_line(tmp_path, capsys):
    """The equilibrium architecture goes through the same commands as the gradient-flow one."""
    from denoisers.lben import LBENDenoiser
    from denoisers.weights import load_weights

    imgs = _camera_crops(tmp_path / "imgs", 3)
    run = tmp_path / "run"
    assert main(["train", str(imgs), "-o", str(run), "--model", "lben", "--hidden", "3", "--kernel-size", "5", "--theta", "0.5", "--noise-knots",
                 "0,50/255", "--patch", "16", "--batch-size", "2", "--steps", "2", "--val-split", "1", "--val-every", "2",
                 "--no-progress"]) == 0
    kwargs = json.loads((run / "config.json").read_text())["model_kwargs"]
    assert kwargs["hidden"] == 3 and kwargs["kernel_size"] == 5 and kwargs["theta"] == 0.5 and kwargs["noise_knots"] == [0.0, 50 / 255]
    w = tmp_path / "lben.pt"
    assert main(["export", str(run), "-o", str(w)]) == 0
    model = load_weights(w)
    assert isinstance(model, LBENDenoiser) and model.certified_alpha() == 0.5 and model.net.kernel_size == 5
    capsys.readouterr()
    assert main(["certify", str(w), "--json", str(tmp_path / "c.json")]) == 0
    assert "schur_min_eig" in capsys.readouterr().out
    cert = json.loads((tmp_path / "c.json").read_text())
    assert cert["alpha"] == 0.5 and cert["empirical"]["pair_alpha"] <= 0.5
    out = tmp_path / "restored.png"
    assert main(["deblur", str(imgs / "0.png"), "-o", str(out), "--kernel", "box:3", "--noise", "0.01", "--denoiser", str(w),
                 "--solver", "pnp-admm", "--sigma", "0.02", "--step", "1", "--max-iter", "5", "--no-progress"]) == 0
    assert out.is_file()


def test_train_theta_trains_the_relaxed_denoiser_end_to_end(tmp_path, capsys):
    from denoisers.weights import load_weights

    imgs = _camera_crops(tmp_path / "imgs", 3)
    base = ["train", str(imgs), "--width", "4", "--depth", "1", "--patch", "16", "--batch-size", "2", "--steps", "2",
            "--val-split", "1", "--val-every", "2", "--no-progress"]
    assert main(base + ["-o", str(tmp_path / "half"), "--theta", "0.5", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "half" / "config.json").read_text())["model_kwargs"]["theta"] == 0.5
    assert main(["export", str(tmp_path / "half"), "-o", str(tmp_path / "half.pt")]) == 0
    model = load_weights(tmp_path / "half.pt")
    assert model.theta == 0.5 and model.certified_alpha() <= 0.5
    capsys.readouterr()
    assert main(base + ["-o", str(tmp_path / "d"), "--model", "dncnn", "--theta", "0.5"]) == 2
    assert "--theta relaxes an averaged or lben model" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "e"), "--device", "gpu0"]) == 2
    assert "torch device" in capsys.readouterr().err


def test_cli_bad_train_and_certify_inputs(tmp_path, capsys):
    assert main(["certify", str(tmp_path / "missing.pt")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("junk")
    assert main(["certify", str(tmp_path / "junk.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "image folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "-o", str(tmp_path / "o"), "--sigma", "-3"])
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "o"), "--model", "unet", "--no-progress"]) == 2
    assert "unknown model 'unet'" in capsys.readouterr().err


def test_baseline_run_exports_and_certify_refuses_it_clearly(tmp_path, capsys):
    imgs = _camera_crops(tmp_path / "imgs", 4)
    out, w = tmp_path / "run", tmp_path / "dncnn.pt"
    assert main(["train", str(imgs), "-o", str(out), "--model", "dncnn", "--width", "4", "--depth", "3", "--patch", "16",
                 "--batch-size", "2", "--steps", "2", "--val-split", "1", "--val-every", "2", "--no-progress"]) == 0
    assert main(["export", str(out), "-o", str(w)]) == 0
    capsys.readouterr()
    assert main(["certify", str(w)]) == 2
    assert "baselines carry no certificate" in capsys.readouterr().err


def test_solvers_command_lists_guarantees(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    assert "pnp-fbs" in out and "pnp-admm" in out and "alpha <= 1/2" in out


@pytest.fixture
def weights_file(tmp_path):
    import torch

    from denoisers import AveragedDenoiser, GradientFlowNet
    from denoisers.weights import export_weights

    torch.manual_seed(0)
    return export_weights(AveragedDenoiser(GradientFlowNet(1, width=4, depth=1), target_alpha=0.5), tmp_path / "d.pt")


def _photo(tmp_path, colour=False):
    from skimage import data, io

    img = data.astronaut()[100:164, 100:164] if colour else data.camera()[100:164, 100:164]
    p = tmp_path / ("in_rgb.png" if colour else "in.png")
    io.imsave(p, img, check_contrast=False)
    return p


def test_deblur_command_writes_image_report_and_plot(tmp_path, weights_file, capsys):
    src = _photo(tmp_path)
    out, rep, fig = tmp_path / "out.png", tmp_path / "r.json", tmp_path / "f.png"
    args = ["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.0", "--noise", "0.01", "--denoiser", str(weights_file),
            "--solver", "pnp-admm", "--step", "5", "--max-iter", "10", "--report", str(rep), "--plot", str(fig), "--no-progress"]
    assert main(args) == 0
    from skimage import io

    assert io.imread(out).shape == (64, 64) and fig.stat().st_size > 1000
    report = json.loads(rep.read_text())
    assert report["solver"] == "pnp-admm" and report["guaranteed"] and len(report["residual_history"][0]) == report["iterations"][0]
    assert "convergence guaranteed" in capsys.readouterr().out
    # outputs exist now: refused without --overwrite, before any work
    before = out.read_bytes()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--kernel", "blob:1"], "unknown kernel family"),
        (["--solver", "nope"], "unknown solver"),
        (["--denoiser", "missing.pt"], "neither a weights file nor a shipped model"),
        (["--denoiser", "unet"], "nor a shipped model (shipped: "),
    ],
)
def test_deblur_command_bad_input(tmp_path, weights_file, capsys, extra, match):
    src = _photo(tmp_path)
    args = ["deblur", str(src), "-o", str(tmp_path / "o.png"), "--kernel", "box:3", "--noise", "0.01",
            "--denoiser", str(weights_file), "--no-progress", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_deblur_command_not_an_image(tmp_path, weights_file, capsys):
    (tmp_path / "x.png").write_text("text")
    assert main(["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "o.png"), "--kernel", "box:3", "--noise", "0.01",
                 "--denoiser", str(weights_file)]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_deblur_command_colour_image_with_gray_model(tmp_path, weights_file, capsys):
    src = _photo(tmp_path, colour=True)
    assert main(["deblur", str(src), "-o", str(tmp_path / "o.png"), "--kernel", "box:3", "--noise", "0.01",
                 "--denoiser", str(weights_file), "--no-progress"]) == 2
    assert "1-channel images; got 3 channels" in capsys.readouterr().err


def test_write_atomic_gives_ordinary_permissions(tmp_path):
    import stat

    p = write_atomic(tmp_path / "a.txt", lambda t: open(t, "w").write("x"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_models_lists_shipped_certificates(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gray-averaged-s25" in out and "alpha = 0.99" in out and "Lipschitz <= 1.000000" in out
    assert main(["models", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["gray-averaged-s25"]
    assert info["channels"] == 1 and info["alpha"] < 1 and info["steps"] > 0


def test_deblur_cli_with_shipped_model_name(tmp_path, capsys):
    from skimage import data, io, transform, util

    img = util.img_as_ubyte(transform.resize(data.camera(), (48, 48), anti_aliasing=True))
    src = tmp_path / "in.png"
    io.imsave(src, img, check_contrast=False)
    out = tmp_path / "out.png"
    assert main(["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.0", "--noise", "0.02",
                 "--denoiser", "gray-averaged-s25", "--solver", "pnp-admm", "--step", "5", "--no-progress"]) == 0
    assert "guaranteed" in capsys.readouterr().out.lower() and io.imread(out).shape == (48, 48)
    assert main(["deblur", str(src), "-o", str(tmp_path / "o2.png"), "--kernel", "gaussian:1.0", "--noise", "0.02",
                 "--denoiser", "unet-v9"]) == 2
    assert "neither a weights file nor a shipped model" in capsys.readouterr().err


def test_export_calibrates_strength_levels_refused_cleanly(tmp_path, capsys):
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "m.pt"), "--calibrate-strength", "--strength-levels", "5/255,abc"]) == 2
    assert "strength-levels" in capsys.readouterr().err


def test_deblur_command_unknown_boundary_and_anderson_switch(tmp_path, weights_file, capsys):
    src = _photo(tmp_path)
    out = tmp_path / "u.png"
    args = ["deblur", str(src), "-o", str(out), "--kernel", "gaussian:1.0", "--noise", "0.01", "--denoiser", str(weights_file),
            "--boundary", "unknown", "--max-iter", "8", "--no-progress"]
    assert main(args) == 0
    from skimage import io

    assert io.imread(out).shape == (64, 64)  # the extension is cropped off
    text = capsys.readouterr().out
    assert "pnp-admm" in text and "Anderson" in text
    assert main(args + ["--anderson", "0", "--overwrite"]) == 0
    assert "Anderson" not in capsys.readouterr().out
    assert main(args + ["--anderson", "-1", "--overwrite"]) == 2
    assert "anderson must be a memory >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--boundary", "wrap", "--overwrite"])
    assert "invalid choice: 'wrap'" in capsys.readouterr().err


def test_deblur_help_states_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["deblur", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: pnp-admm" in text and "0.15 / noise" in text and "unknown" in text
