"""Denoising demo: the shipped certified denoisers against tuned-by-rule TV at several noise levels.

For each noise level the figure shows the noisy image, TV (scikit-image), the certified
averaged denoiser PnP-FBS uses and the certified firmly non-expansive one PnP-ADMM uses (one
noise-conditioned model each, for every level), with PSNRs::

    python demos/denoise.py [IMAGE] [--levels 15,25,50] [--size 256] [-o denoise.png] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from denoisers import default_pretrained
from operators._io import check_output_path, write_atomic
from pnp_stable.demo import fit_size, psnr
from pnp_stable.io import load_image

#: TV weight per noise level (x/255), the best of a grid on 12 held-out BSD400 training images
#: (benchmarks/quality_denoise.py prints the tuned values).
TV_WEIGHT = {15: 0.07, 25: 0.1, 50: 0.2}


def run(image: str = "camera", levels=(15, 25, 50), size: int | None = 256, seed: int = 0) -> dict:
    """Denoise ``image`` at each level (/255) with the shipped model and with TV; images and PSNRs.

    Examples
    --------
    >>> res = run("camera", levels=(25,), size=48)
    >>> row = res["rows"][0]
    >>> row["psnr_averaged"] > row["psnr_noisy"], res["alpha"] < 1, res["alpha_firm"] <= 0.5
    (True, True, True)
    """
    from skimage.restoration import denoise_tv_chambolle

    truth = fit_size(load_image(image), size)
    channels = 1 if truth.ndim == 2 else 3
    t = torch.from_numpy(truth).float()
    t = t[None, None] if channels == 1 else t.permute(2, 0, 1)[None]
    # The models deblur() uses: PnP-FBS's (averaged) and PnP-ADMM's (firmly non-expansive); each
    # is noise-conditioned, so the same model serves every level.
    averaged, firm = default_pretrained(channels), default_pretrained(channels, target_alpha=0.5)
    rows = []
    for i, lv in enumerate(levels):
        sig = lv / 255
        g = torch.Generator().manual_seed(seed + i)
        y = t + sig * torch.randn(t.shape, generator=g)
        with torch.no_grad():
            avg, fne = averaged(y, sig), firm(y, sig)

        def img(u):
            a = u[0].double().numpy()
            return a[0] if channels == 1 else a.transpose(1, 2, 0)

        tv = denoise_tv_chambolle(img(y), weight=TV_WEIGHT.get(int(lv), sig * 2), channel_axis=-1 if channels == 3 else None)
        rows.append(dict(level=lv, noisy=img(y), tv=tv, averaged=img(avg), firm=img(fne)))
        for k in ("noisy", "tv", "averaged", "firm"):
            rows[-1][f"psnr_{k}"] = psnr(np.clip(rows[-1][k], 0, 1), truth)
    return dict(truth=truth, rows=rows, alpha=averaged.certified_alpha(), alpha_firm=firm.certified_alpha())


def plot(res: dict, path: str, overwrite: bool) -> None:
    """Draw one row per level (noisy, TV, both certified models, truth) to ``path``.

    An existing file is kept unless ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "denoise.png"
    >>> plot(run("camera", levels=(25,), size=32), str(out), overwrite=False)
    >>> out.stat().st_size > 1000
    True
    """
    def draw(tmp: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = res["rows"]
        cmap = "gray" if res["truth"].ndim == 2 else None
        fig, ax = plt.subplots(len(rows), 5, figsize=(17, 3.6 * len(rows)), constrained_layout=True, squeeze=False)
        for r, row in enumerate(rows):
            panels = [(row["noisy"], f"noise {row['level']:g}/255: {row['psnr_noisy']:.2f} dB"), (row["tv"], f"TV: {row['psnr_tv']:.2f} dB"),
                      (row["averaged"], f"certified averaged (PnP-FBS's): {row['psnr_averaged']:.2f} dB"),
                      (row["firm"], f"certified firmly non-expansive (PnP-ADMM's): {row['psnr_firm']:.2f} dB"),
                      (res["truth"], "ground truth")]
            for a, (img, title) in zip(ax[r], panels):
                a.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
                a.set_title(title, fontsize=9)
                a.axis("off")
        fig.suptitle(f"Shipped certified denoisers (network alpha <= {res['alpha']:.4f}, certified) against TV")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)

    write_atomic(path, draw, overwrite=overwrite)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default="camera")
    parser.add_argument("--levels", default="15,25,50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("-o", "--output", default="denoise.png")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        check_output_path(args.output, args.overwrite)
        levels = [float(v) for v in args.levels.split(",")]
        if any(not (v > 0) for v in levels):
            raise ValueError(f"noise levels must be > 0; got {args.levels}")
        res = run(args.image, levels, args.size or None)
        plot(res, args.output, args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"denoise: error: {exc}", file=sys.stderr)
        return 2
    for row in res["rows"]:
        print(f"noise {row['level']:g}/255: noisy {row['psnr_noisy']:.2f}, TV {row['psnr_tv']:.2f}, certified averaged "
              f"{row['psnr_averaged']:.2f}, certified firmly non-expansive {row['psnr_firm']:.2f} dB")
    print(f"figure written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
