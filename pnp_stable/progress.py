"""A progress bar for long runs: counts denoiser tiles, predicts the iterations still to come.

A solver's iteration count is not known in advance: it stops when its residual reaches the
tolerance.  The bar of a tiled run therefore counts tiles (one denoiser evaluation per
iteration, ``tiles`` tiles each) and sets its total to the tiles done plus the tiles of the
iterations predicted from the residual's recent rate of decrease, so tqdm's time-left estimate
covers the whole run.
"""

from __future__ import annotations

import math

__all__ = ["TiledProgress", "predicted_iterations"]

#: Iterations assumed before any residual is seen (the median of the real-photograph benchmark, rounded up).
INITIAL_GUESS = 20


def predicted_iterations(history: list[float], tol: float, left: int) -> int:
    """Iterations still needed to bring the residual ``history`` below ``tol`` at its recent rate.

    The rate is the geometric mean of the last three ratios of consecutive residuals; the
    prediction is capped by the ``left`` iterations the run may still take.

    Examples
    --------
    >>> predicted_iterations([1e-1, 1e-2, 1e-3], 1e-5, 100)
    2
    >>> predicted_iterations([1e-1], 1e-5, 100)
    19
    >>> predicted_iterations([1e-2, 1e-2], 1e-5, 7)
    7
    """
    if len(history) < 2 or not all(h > 0 and math.isfinite(h) for h in history[-4:]):
        return max(0, min(left, INITIAL_GUESS - len(history)))
    recent = history[-4:]
    rate = (recent[-1] / recent[0]) ** (1 / (len(recent) - 1))
    if recent[-1] <= tol:
        return 0
    if not rate < 1:
        return left
    return max(1, min(left, math.ceil(math.log(tol / recent[-1]) / math.log(rate))))


class TiledProgress:
    """tqdm bar over the tiles of a tiled run, its total following the predicted iteration count.

    Parameters
    ----------
    tiles : int
        Tiles per denoiser evaluation.
    max_iter : int
        The run's cap on iterations.
    tol : float
        Its residual tolerance.
    desc : str
        Label.
    disable : bool
        Hide the bar (the bookkeeping still runs).

    Examples
    --------
    >>> p = TiledProgress(4, max_iter=50, tol=1e-4, disable=True)
    >>> p.total
    80
    >>> for _ in range(4): p.tile_done()
    >>> p.iteration_done(0, None, [1e-2])
    >>> p.done, p.total >= 8
    (4, True)
    """

    def __init__(self, tiles: int, max_iter: int, tol: float, desc: str = "", disable: bool = False):
        from tqdm.auto import tqdm

        self.tiles, self.max_iter, self.tol = int(tiles), int(max_iter), float(tol)
        self.history: list[float] = []
        #: Tiles done, and done plus predicted (tqdm keeps no count when disabled).
        self.done, self.total = 0, self.tiles * min(self.max_iter, INITIAL_GUESS)
        self.bar = tqdm(total=self.total, desc=desc, unit="tile", disable=disable)

    def tile_done(self, n: int = 1) -> None:
        """One more tile evaluated."""
        self.done += n
        self.bar.update(n)

    def iteration_done(self, k: int, x, rel) -> None:
        """After iteration ``k`` (a solver callback): re-predict the total from the residual."""
        try:
            value = float(max(float(r) for r in rel))
        except (TypeError, ValueError):
            value = float("nan")
        if math.isfinite(value):
            self.history.append(value)
            self.bar.set_postfix(residual=f"{value:.2e}", refresh=False)
        left = self.predicted_left(k)
        if k + 1 < self.max_iter:
            left = max(left, 1)  # still running: at least one more iteration
        self.total = self.done + self.tiles * left
        self.bar.total = self.total
        self.bar.refresh()

    def predicted_left(self, k: int) -> int:
        """Iterations predicted after iteration ``k``."""
        return predicted_iterations(self.history, self.tol, self.max_iter - k - 1)

    def chain(self, callback):
        """A solver callback that updates the bar, then calls ``callback`` (if any)."""
        def both(k, x, rel):
            self.iteration_done(k, x, rel)
            if callback is not None:
                callback(k, x, rel)
        return both

    def close(self) -> None:
        """End the bar at what was done."""
        self.total = self.done
        self.bar.total = self.done
        self.bar.close()
