"""Weight files: a small, self-describing, checksummed format that loads only if it still certifies.

A file is ``torch.save`` of a plain dict (loaded with ``weights_only=True``, so no code runs):

``format``, ``version``
    ``"pnp-stable-weights"``, 1.
``model``, ``config``
    Registry name and constructor arguments (architecture).
``state``
    The weights (training-only buffers such as power-iteration vectors are dropped).
``certificate``
    The certified part of :func:`denoisers.certify` at export: alpha, per-layer norm bounds
    and the frozen schedules ``[substeps, h, rho]`` they imply.  ``None`` for an
    unconstrained baseline (``dncnn``), which has none and may not claim one.
``metadata``
    Free-form record: noise levels, data, steps, wall time, command...
``sha256``
    Digest of the state tensors (names, dtypes, shapes, bytes).

:func:`load_weights` refuses a file that is missing, unreadable, of another format, whose
checksum or architecture does not match, or whose recomputed certificate differs from the
stored one, and an unconstrained baseline file that claims a certificate.

Verify once
-----------
Recomputing the float64 certificate takes seconds, as long as a solve.  Once a file has been
verified, its per-layer bounds are kept in the user's cache (``$PNP_STABLE_CACHE_DIR``, else
``$XDG_CACHE_HOME/pnp-stable``, else ``~/.cache/pnp-stable``), keyed by the digest of the weights
and architecture together with the source of the certifying modules and the pnp-stable and
torch versions: a change of any of them verifies again.  The cached bounds then go through the same comparison with the certificate
the file stores as freshly computed ones, and the loaded model says how it was verified
(``model.verification``).  ``use_cache=False``, the
``pnp-stable certify`` command and ``PNP_STABLE_NO_CACHE=1`` always recompute.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from operators._io import check_output_path, write_atomic

from .certificate import certify
from .registry import MODELS, architecture_of, build_model

__all__ = ["export_weights", "load_weights", "state_digest", "WeightsError", "verification_cache_path"]

FORMAT, VERSION = "pnp-stable-weights", 1
_TRAINING_ONLY = ("power_vectors", "norm_estimate")


class WeightsError(ValueError):
    """A weights file is corrupt, of another format, or does not match its own record."""


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict, independent of pickling details.

    Examples
    --------
    >>> import torch
    >>> len(state_digest({"w": torch.zeros(2)}))
    64
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _spec(model) -> tuple[str, dict]:
    try:
        arch = architecture_of(model)
    except TypeError as exc:
        raise TypeError(f"export_weights takes a registered pnp-stable model; {exc}") from None
    return arch.name, arch.config(model)


def _certified_record(model) -> dict:
    cert = certify(model, empirical=False)
    return {"alpha": cert.alpha, "lipschitz_bound": cert.lipschitz_bound, "theta": cert.theta,
            "layer_norm_bounds": [lc.norm_bound for lc in cert.layers],
            "schedules": [[lc.substeps, lc.step, lc.scale] for lc in cert.layers], "method": cert.method,
            "details": cert.details}


def export_weights(model, path: str | os.PathLike, *, metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` with its certificate and metadata to ``path`` (atomically).

    Examples
    --------
    >>> import tempfile, os
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> _ = export_weights(AveragedDenoiser(GradientFlowNet(1, width=8, depth=2)), p, metadata={"sigma": 0.1})
    >>> type(load_weights(p)).__name__
    'AveragedDenoiser'
    """
    path = check_output_path(path, overwrite)
    name, config = _spec(model)
    certified = MODELS[name].certified
    if certified:
        model.verification_state()  # computes the certified quantities the state records (e.g. norm_bound buffers)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] not in _TRAINING_ONLY}
    record = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "config": config,
        "state": state,
        "certificate": _certified_record(model) if certified else None,
        "metadata": dict(metadata or {}),
        "sha256": state_digest(state),
    }
    write_atomic(path, lambda tmp: torch.save(record, tmp), overwrite=overwrite)
    return path


def verification_cache_path() -> Path:
    """Where verified certificates are remembered (see the module notes).

    Examples
    --------
    >>> verification_cache_path().name
    'verified-certificates.json'
    """
    root = os.environ.get("PNP_STABLE_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "pnp-stable")
    return Path(root) / "verified-certificates.json"


def _cache_key(rec: dict) -> str:
    """Digest of what a certificate depends on: the weights and architecture, and the code that
    certifies them (the source of the certifying modules, the pnp-stable and torch versions)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        version = dist_version("pnp-stable")
    except PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve().parent
    code = hashlib.sha256()
    for name in ("spectral.py", "blocks.py", "certificate.py", "averaged.py", "integrators.py", "activations.py", "models.py",
                 "lben.py", "registry.py"):
        code.update((here / name).read_bytes())
    text = json.dumps([rec["sha256"], rec["model"], rec["config"], version, torch.__version__, code.hexdigest()],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache() -> dict:
    try:
        data = json.loads(verification_cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache, or a damaged one: verify in full


def _remember(key: str, bounds: list, alpha: float) -> None:
    """Add a verified entry; a cache that cannot be written only means verifying again later."""
    path = verification_cache_path()
    data = _read_cache()
    data[key] = {"bounds": bounds, "alpha": alpha, "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def _adopt_cached(model, rec: dict, key: str) -> dict | None:
    """Install the cached certified state of a verified file, if the cache has one that fits."""
    if os.environ.get("PNP_STABLE_NO_CACHE"):
        return None
    entry = _read_cache().get(key)
    if not isinstance(entry, dict) or not model.adopt_verification_state(entry.get("bounds")):
        return None
    return entry


def _check_certificate(model, stored: dict, path) -> dict:
    """The certificate of ``model`` as it stands, if it agrees with the one the file stores."""
    now = _certified_record(model)
    if abs(now["alpha"] - stored.get("alpha", float("nan"))) > 1e-9 or not now["alpha"] <= 1:
        raise WeightsError(f"{path}: recomputed certificate alpha {now['alpha']:.9f} differs from the stored {stored.get('alpha')}")
    # Files written before the Lipschitz bound was compared stored 1.0 for every model.
    if abs(now["lipschitz_bound"] - stored.get("lipschitz_bound", now["lipschitz_bound"])) > 1e-9:
        raise WeightsError(f"{path}: recomputed Lipschitz bound {now['lipschitz_bound']:.9f} differs from the stored "
                           f"{stored.get('lipschitz_bound')}")
    if [s[0] for s in now["schedules"]] != [s[0] for s in stored.get("schedules", [])] or any(
        abs(a - b) > 1e-12 * b for s, s0 in zip(now["schedules"], stored["schedules"]) for a, b in zip(s[1:], s0[1:])
    ):
        raise WeightsError(f"{path}: sub-step schedules {now['schedules']} differ from the exported {stored.get('schedules')}")
    return now


def load_weights(path: str | os.PathLike, *, return_record: bool = False, use_cache: bool = True):
    """Load a weights file, verify it, and return the model in eval mode (and the record).

    The certificate of a file verified before on this machine (same weights, architecture,
    pnp-stable and torch versions) is taken from the verification cache (module notes);
    ``use_cache=False`` recomputes it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    WeightsError
        Corrupt file, wrong format, checksum or architecture mismatch, or a certificate that
        no longer matches.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "junk.pt"); _ = open(p, "w").write("junk")
    >>> load_weights(p)
    Traceback (most recent call last):
    ...
    denoisers.weights.WeightsError: ... is corrupt or not a weights file ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise WeightsError(f"{path} is corrupt or not a weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a pnp-stable weights file")
    if rec.get("version") != VERSION:
        raise WeightsError(f"{path} has format version {rec.get('version')!r}; this pnp-stable reads version {VERSION}")
    missing = {"model", "config", "state", "certificate", "metadata", "sha256"} - set(rec)
    if missing:
        raise WeightsError(f"{path} lacks the fields {sorted(missing)}")
    if state_digest(rec["state"]) != rec["sha256"]:
        raise WeightsError(f"{path}: checksum mismatch, the weights were corrupted or modified")
    try:
        from .blocks import weights_to_be_loaded

        with weights_to_be_loaded():  # the state dict replaces the initial weights
            model = build_model(rec["model"], **rec["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot rebuild the architecture ({exc})") from None
    expected = {k for k in model.state_dict() if k.rsplit(".", 1)[-1] not in _TRAINING_ONLY}
    if set(rec["state"]) != expected:
        raise WeightsError(f"{path}: the weights do not match the architecture (missing {sorted(expected - set(rec['state']))[:3]}, "
                           f"unexpected {sorted(set(rec['state']) - expected)[:3]})")
    try:
        model.load_state_dict(rec["state"], strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: the weights do not match the architecture ({exc})") from None
    model.eval()
    stored = rec["certificate"]
    if not MODELS[rec["model"]].certified:
        if stored is not None:
            raise WeightsError(f"{path}: a {rec['model']!r} model has no certificate, yet the file claims one")
        return (model, rec) if return_record else model
    if not isinstance(stored, dict):
        raise WeightsError(f"{path}: a {rec['model']!r} model must carry its certificate; the file has none")
    key = _cache_key(rec)
    cached = _adopt_cached(model, rec, key) if use_cache else None
    if cached is not None:
        try:
            _check_certificate(model, stored, path)
        except WeightsError:
            cached = None  # a damaged or foreign cache entry: verify in full below
            model.forget_verification()
    if cached is None:
        state = model.verification_state()  # certify this instance, so copies (including certify's own) reuse it
        now = _check_certificate(model, stored, path)
        if state is not None:
            _remember(key, state, now["alpha"])
        model.verification = {"source": "computed in float64 now", "key": key}
    else:
        model.verification = {"source": f"verification cache ({verification_cache_path()}), computed in float64 on "
                                        f"{cached.get('verified_at', '?')}", "key": key}
    return (model, rec) if return_record else model
