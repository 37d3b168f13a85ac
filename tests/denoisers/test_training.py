"""Training (loss goes down, exact resume), data sampling, weight files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from denoisers import AveragedDenoiser, GradientFlowNet, NonexpansiveDenoiser
from denoisers.data import ImageFolder, NoiseSpec, PatchSampler
from denoisers.training import TrainConfig, train
from denoisers.weights import WeightsError, export_weights, load_weights


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Sixteen 40x48 crops of scikit-image photographs (no external data)."""
    from skimage import data, io

    d = tmp_path_factory.mktemp("images")
    cam = data.camera()
    for i in range(16):
        r, c = (i * 29) % 400, (i * 53) % 400
        io.imsave(d / f"img_{i:02d}.png", cam[r : r + 40, c : c + 48], check_contrast=False)
    return d


def _cfg(image_dir, out, **kw):
    base = dict(train_dir=str(image_dir), out_dir=str(out), channels=1, model="averaged",
                model_kwargs=dict(width=6, depth=2), patch=16, batch_size=4, steps=40, lr=5e-3,
                val_split=3, val_every=20, checkpoint_every=10, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_training_lowers_the_loss(image_dir, tmp_path):
    r = train(_cfg(image_dir, tmp_path / "run"), progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert r.finished and len(log) == 40 and log[-1]["step"] == 40
    first, last = np.mean([e["loss"] for e in log[:8]]), np.mean([e["loss"] for e in log[-8:]])
    assert last < 0.8 * first
    assert "val_psnr" in log[19] and r.last_val_psnr is not None


def test_resume_reproduces_the_uninterrupted_run(image_dir, tmp_path):
    cfg_a = _cfg(image_dir, tmp_path / "a", steps=24)
    cfg_b = _cfg(image_dir, tmp_path / "b", steps=24)
    train(cfg_a, progress=False)
    partial = train(cfg_b, progress=False, max_minutes=0.0)  # stops after one step
    assert partial.step == 1 and not partial.finished
    # simulate a kill after the checkpoint: a stray log line past it must be dropped
    with open(tmp_path / "b" / "log.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 99, "loss": 0.0}) + "\n")
    train(cfg_b, progress=False)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert la == lb


def test_resume_refuses_a_different_configuration(image_dir, tmp_path):
    train(_cfg(image_dir, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(_cfg(image_dir, tmp_path / "r", steps=2, lr=1.0), progress=False)
    with pytest.raises(FileExistsError):
        train(_cfg(image_dir, tmp_path / "r", steps=2), resume=False, progress=False)


def test_sampler_is_deterministic_and_augments(image_dir):
    data = ImageFolder(image_dir, channels=1)
    s = PatchSampler(data, patch=16, batch_size=8, noise=NoiseSpec(0.05, 0.2), seed=1)
    c1, n1, sig1 = s.batch(3)
    c2, n2, sig2 = s.batch(3)
    assert torch.equal(n1, n2) and torch.equal(sig1, sig2)
    assert not torch.equal(s.batch(4)[0], c1)
    assert float(sig1.min()) >= 0.05 and float(sig1.max()) <= 0.2
    assert c1.min() >= 0 and c1.max() <= 1


def test_data_errors(tmp_path, image_dir):
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "none", channels=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(tmp_path / "empty", channels=1)
    with pytest.raises(ValueError, match="gray but the model takes colour"):
        ImageFolder(image_dir, channels=3)
    with pytest.raises(ValueError, match="smaller than the patch"):
        ImageFolder(image_dir, channels=1, min_size=64)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        ImageFolder(tmp_path / "bad", channels=1)
    with pytest.raises(ValueError, match="noise levels"):
        NoiseSpec(0.2, 0.1)


# -- weight files -------------------------------------------------------------------------


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AveragedDenoiser(GradientFlowNet(1, width=6, depth=2), target_alpha=0.5)


def test_export_load_round_trip(model, tmp_path):
    p = export_weights(model, tmp_path / "m.pt", metadata={"sigma": 25 / 255, "steps": 10})
    loaded, rec = load_weights(p, return_record=True)
    assert isinstance(loaded, AveragedDenoiser) and not loaded.training
    assert rec["metadata"]["steps"] == 10 and rec["certificate"]["alpha"] <= 0.5 + 1e-12
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 0.1), model.eval()(x, 0.1), rtol=0, atol=0)
    assert "power_vectors" not in "".join(rec["state"])


def test_export_refuses_overwrite(model, tmp_path):
    export_weights(model, tmp_path / "m.pt")
    with pytest.raises(FileExistsError):
        export_weights(model, tmp_path / "m.pt")
    export_weights(model, tmp_path / "m.pt", overwrite=True)


def test_load_rejects_bad_files(model, tmp_path):
    p = export_weights(model, tmp_path / "m.pt")
    raw = p.read_bytes()
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(tmp_path / "text.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a pnp-stable weights file"):
        load_weights(tmp_path / "other.pt")
    rec = torch.load(p, weights_only=True)
    rec["state"]["net.blocks.0.weight"][0, 0, 0, 0] += 1.0
    torch.save(rec, tmp_path / "tampered.pt")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_weights(tmp_path / "tampered.pt")
    rec = torch.load(p, weights_only=True)
    rec["config"]["width"] = 7
    torch.save(rec, tmp_path / "arch.pt")
    with pytest.raises(WeightsError, match="do not match the architecture"):
        load_weights(tmp_path / "arch.pt")
    rec = torch.load(p, weights_only=True)
    rec["certificate"]["alpha"] = 0.01
    torch.save(rec, tmp_path / "cert.pt")
    with pytest.raises(WeightsError, match="recomputed certificate"):
        load_weights(tmp_path / "cert.pt")
    rec = torch.load(p, weights_only=True)
    rec["certificate"]["schedules"][0][0] += 1
    torch.save(rec, tmp_path / "sched.pt")
    with pytest.raises(WeightsError, match="sub-step schedules"):
        load_weights(tmp_path / "sched.pt")


def test_nonexpansive_round_trip(tmp_path):
    m = NonexpansiveDenoiser(GradientFlowNet(1, width=4, depth=1, integrator="rk4"))
    loaded = load_weights(export_weights(m, tmp_path / "n.pt"))
    assert type(loaded) is NonexpansiveDenoiser and loaded.certified_alpha() == 1.0


def test_dncnn_baseline_round_trip_without_a_certificate(tmp_path):
    from denoisers.baselines import DnCNN

    torch.manual_seed(0)
    m = DnCNN(1, width=6, depth=3).eval()
    loaded, rec = load_weights(export_weights(m, tmp_path / "b.pt", metadata={"sigma": 0.1}), return_record=True)
    assert type(loaded) is DnCNN and rec["certificate"] is None and rec["model"] == "dncnn"
    assert not hasattr(loaded, "certified_alpha")  # a baseline never passes for certified
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 0.1), m(x, 0.1), rtol=0, atol=0)
    # A baseline file that claims a certificate, or a certified one that lost it, is refused.
    rec["certificate"] = {"alpha": 0.5}
    torch.save(rec, tmp_path / "claims.pt")
    with pytest.raises(WeightsError, match="no certificate, yet the file claims one"):
        load_weights(tmp_path / "claims.pt")
    cert = torch.load(export_weights(AveragedDenoiser(GradientFlowNet(1, width=4, depth=1)), tmp_path / "c.pt"), weights_only=True)
    cert["certificate"] = None
    torch.save(cert, tmp_path / "lost.pt")
    with pytest.raises(WeightsError, match="must carry its certificate"):
        load_weights(tmp_path / "lost.pt")


@pytest.mark.parametrize("name, kwargs", [("dncnn", dict(width=6, depth=3)), ("spectral-resnet", dict(width=4, depth=2))])
def test_baselines_train_through_the_same_pipeline(image_dir, tmp_path, name, kwargs):
    r = train(_cfg(image_dir, tmp_path / name, model=name, model_kwargs=kwargs, steps=12, val_every=12), progress=False)
    assert r.finished and np.isfinite(r.last_loss) and r.last_val_psnr is not None


def test_export_with_strength_calibration_uses_held_out_training_images(image_dir, tmp_path):
    from denoisers.training import export_run

    train(_cfg(image_dir, tmp_path / "run", steps=4, val_every=4), progress=False)
    path = export_run(tmp_path / "run", tmp_path / "m.pt", strength_sigmas=[0.1, 0.05])
    model, rec = load_weights(path, return_record=True)
    sig, th = model.strength
    assert sig == (0.0, 0.05, 0.1) and th[0] == 0.0 and list(th) == sorted(th)
    cal = rec["metadata"]["strength_calibration"]
    assert [p.rsplit("/", 1)[-1] for p in cal["images"]] == ["img_13.png", "img_14.png", "img_15.png"]  # the val split
    baseline_run = tmp_path / "dn"
    train(_cfg(image_dir, baseline_run, steps=2, model="dncnn", model_kwargs=dict(width=4, depth=3)), progress=False)
    with pytest.raises(ValueError, match="needs an averaged model"):
        export_run(baseline_run, tmp_path / "d.pt", strength_sigmas=[0.1])


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory):
    """Eight 40x48 crops of scikit-image's astronaut (no external data)."""
    from skimage import data, io

    d = tmp_path_factory.mktemp("colour")
    img = data.astronaut()
    for i in range(8):
        r, c = (i * 61) % 460, (i * 37) % 460
        io.imsave(d / f"c_{i:02d}.png", img[r : r + 40, c : c + 48], check_contrast=False)
    return d


def _weights_and_biases(state):
    return {k: v for k, v in state.items() if k.endswith((".weight", ".bias"))}


def test_init_starts_a_run_from_given_weights(image_dir, tmp_path):
    from denoisers.training import export_run

    train(_cfg(image_dir, tmp_path / "a", steps=6, val_every=6), progress=False)
    src = export_run(tmp_path / "a", tmp_path / "a.pt")
    # lr = 0: Adam moves nothing, so the run's parameters must be the init's exactly.
    train(_cfg(image_dir, tmp_path / "b", steps=2, lr=0.0, val_every=2, init=str(src)), progress=False)
    got = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    want = _weights_and_biases(load_weights(src).state_dict())
    fresh = train(_cfg(image_dir, tmp_path / "c", steps=2, lr=0.0, val_every=2), progress=False)
    assert fresh.finished
    other = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(got[k], v) for k, v in want.items())
    assert not all(torch.equal(other[k], v) for k, v in want.items())  # the test can fail: init changed something
    assert json.loads((tmp_path / "b" / "config.json").read_text())["init"] == str(src)


def test_a_leaky_relu_model_initialises_a_spline_run(image_dir, tmp_path):
    from denoisers.training import export_run

    train(_cfg(image_dir, tmp_path / "leaky", steps=2, val_every=2), progress=False)
    src = export_run(tmp_path / "leaky", tmp_path / "leaky.pt")
    spline_kw = dict(width=6, depth=2, activation="spline:8")
    r = train(_cfg(image_dir, tmp_path / "spline", steps=2, lr=0.0, val_every=2, init=str(src), model_kwargs=spline_kw), progress=False)
    got = torch.load(tmp_path / "spline" / "checkpoint.pt", weights_only=True)["model"]
    want = _weights_and_biases(load_weights(src).state_dict())
    assert r.finished and all(torch.equal(got[k], v) for k, v in want.items())
    assert sum(k.endswith("act.raw_slopes") for k in got) == 2
    with pytest.raises(ValueError, match="different architecture"):  # other additions are still refused
        train(_cfg(image_dir, tmp_path / "deeper", steps=1, init=str(src), model_kwargs=dict(width=6, depth=3)), progress=False)


def test_a_gray_model_initialises_a_colour_run(image_dir, colour_dir, tmp_path):
    from denoisers.training import export_run

    train(_cfg(image_dir, tmp_path / "gray", steps=4, val_every=4), progress=False)
    src = export_run(tmp_path / "gray", tmp_path / "gray.pt")
    r = train(_cfg(colour_dir, tmp_path / "rgb", channels=3, steps=4, val_every=4, val_split=2, init=str(src)), progress=False)
    assert r.finished and np.isfinite(r.last_loss)
    model, rec = load_weights(export_run(tmp_path / "rgb", tmp_path / "rgb.pt"), return_record=True)
    init = rec["metadata"]["init"]
    assert model.net.channels == 3 and rec["metadata"]["training_config"]["init"] == str(src)
    assert init["source"] == str(src) and init["steps_done"] == 4 and init["training_config"]["channels"] == 1


def test_init_errors(image_dir, tmp_path):
    from denoisers.training import export_run

    train(_cfg(image_dir, tmp_path / "a", steps=2, val_every=2), progress=False)
    src = export_run(tmp_path / "a", tmp_path / "a.pt")
    with pytest.raises(ValueError, match="other shapes"):
        train(_cfg(image_dir, tmp_path / "wide", model_kwargs=dict(width=8, depth=2), init=str(src)), progress=False)
    with pytest.raises(ValueError, match="different architecture"):
        train(_cfg(image_dir, tmp_path / "deep", model_kwargs=dict(width=6, depth=3), init=str(src)), progress=False)
    with pytest.raises(FileNotFoundError, match="neither a weights file nor a shipped model"):
        train(_cfg(image_dir, tmp_path / "none", init=str(tmp_path / "missing.pt")), progress=False)


def test_checkpoints_written_before_a_config_field_existed_still_resume(image_dir, tmp_path):
    cfg = _cfg(image_dir, tmp_path / "old", steps=4, val_every=4)
    assert train(cfg, progress=False, max_minutes=0.0).step == 1
    ck_path = tmp_path / "old" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    del ck["config"]["init"]  # as written by an older pnp-stable
    torch.save(ck, ck_path)
    assert train(cfg, progress=False).finished


def test_device_is_a_call_option_recorded_per_step_and_a_run_resumes_across_it(image_dir, tmp_path):
    # Training on an explicit device gives the run the default gives (batches come from the
    # CPU) and logs the device of every step.
    a = train(_cfg(image_dir, tmp_path / "a", steps=6), progress=False)
    b = train(_cfg(image_dir, tmp_path / "b", steps=6), progress=False, device="cpu")
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"]) and a.last_loss == b.last_loss
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert {e["device"] for e in log} == {"cpu"}


def test_device_errors_are_clear(image_dir, tmp_path):
    with pytest.raises(ValueError, match="torch device"):
        train(_cfg(image_dir, tmp_path / "x", steps=1), progress=False, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train(_cfg(image_dir, tmp_path / "y", steps=1), progress=False, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the lent GPU machine)")
def test_cuda_training_matches_the_cpu_run_to_float32_accuracy(image_dir, tmp_path):
    train(_cfg(image_dir, tmp_path / "cpu", steps=3), progress=False)
    train(_cfg(image_dir, tmp_path / "gpu", steps=3), progress=False, device="cuda")
    sc = torch.load(tmp_path / "cpu" / "checkpoint.pt", weights_only=True)
    sg = torch.load(tmp_path / "gpu" / "checkpoint.pt", map_location="cpu", weights_only=True)
    for k in sc["model"]:
        assert torch.allclose(sc["model"][k].to(torch.complex128), sg["model"][k].to(torch.complex128), rtol=1e-2, atol=1e-3), k


def test_validation_runs_on_the_models_device_and_dtype(image_dir):
    from denoisers.training import validation_psnr

    net = AveragedDenoiser(GradientFlowNet(1, width=4, depth=1)).to(torch.float64)
    img = [np.full((8, 8, 1), 100, np.uint8)]
    assert np.isfinite(validation_psnr(net, img, 0.1))
    assert net.training  # restored
