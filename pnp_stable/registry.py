"""Solver registry: built-ins, the ``register_solver`` decorator, and entry-point plugins.

Everything that runs a solver by name (``reconstruct``, ``deblur``, the command line) looks it
up here, so a solver registered by a user works everywhere.  Plugins are declared in the
entry-point group ``pnp_stable.solvers`` of an installed distribution, for example in its
``setup.cfg``::

    [options.entry_points]
    pnp_stable.solvers =
        my-solver = my_package.solvers:my_solver

and loaded lazily, once, on the first lookup that needs them.  Each solver states what it
guarantees (shown by ``pnp-stable solvers``); a plugin without a ``guarantee`` attribute is
listed as "unstated".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .solvers import pnp_admm, pnp_fbs

__all__ = ["SolverInfo", "register_solver", "get_solver", "solver_info", "available_solvers", "ENTRY_POINT_GROUP",
           "DEFAULT_SOLVER"]

ENTRY_POINT_GROUP = "pnp_stable.solvers"

#: The solver that ``deblur()``, ``reconstruct()``, the command line and the demos use unless
#: told otherwise.  PnP-ADMM measured above PnP-FBS in quality and time on every benchmark
#: problem (benchmarks/RESULTS.md, sections "deblurring-*" and "speed").
DEFAULT_SOLVER = "pnp-admm"


@dataclass(frozen=True)
class SolverInfo:
    """A registered solver: its function ``(y, operator, denoiser, **options) -> (x, report)``
    and what it guarantees, in words."""

    name: str
    fn: Callable
    guarantee: str
    source: str = "built-in"
    #: Largest certified denoiser averagedness its guarantee accepts (None: any alpha < 1).
    denoiser_alpha: float | None = None


_REGISTRY: dict[str, SolverInfo] = {
    "pnp-fbs": SolverInfo("pnp-fbs", pnp_fbs, "converges (Krasnosel'skii-Mann) when the denoiser is certified averaged "
                          "(alpha < 1) and tau < 2 / ||A||^2 with a certified norm, also relaxed (relaxation < 1 / alpha_T); residual "
                          "non-increasing"),
    "pnp-admm": SolverInfo("pnp-admm", pnp_admm, "converges (Douglas-Rachford) for every tau > 0 when the denoiser is "
                           "certified firmly non-expansive (alpha <= 1/2), also relaxed (relaxation in (0, 2)); residual of z "
                           "non-increasing", denoiser_alpha=0.5),
}
_plugins_loaded = False


def register_solver(name: str, *, guarantee: str = "unstated", denoiser_alpha: float | None = None, replace: bool = False):
    """Decorator registering a solver function under ``name``.

    ``denoiser_alpha`` is the largest certified averagedness of the denoiser under which the
    guarantee holds (e.g. 0.5 for Douglas-Rachford); the shipped default denoiser is relaxed
    to it when the solver is used with ``denoiser="default"``.

    Examples
    --------
    >>> @register_solver("identity-demo", guarantee="none: returns A^T y", replace=True)
    ... def identity(y, operator, denoiser, **options):
    ...     return operator.A_adjoint(y), None
    >>> get_solver("identity-demo") is identity
    True
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a solver name must be a non-empty string; got {name!r}")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"register_solver decorates a callable; got {type(fn).__name__}")
        if name in _REGISTRY and not replace:
            raise ValueError(f"a solver named {name!r} is already registered ({_REGISTRY[name].source}); pass replace=True")
        if denoiser_alpha is not None and not 0 < denoiser_alpha < 1:
            raise ValueError(f"denoiser_alpha must lie in (0, 1); got {denoiser_alpha!r}")
        _REGISTRY[name] = SolverInfo(name, fn, guarantee, source=getattr(fn, "__module__", "user"), denoiser_alpha=denoiser_alpha)
        return fn

    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in _REGISTRY:
            continue  # built-ins and explicit registrations win
        try:
            fn = ep.load()
        except Exception as exc:  # a broken plugin must not break the toolbox
            import warnings

            warnings.warn(f"solver plugin {ep.name!r} ({ep.value}) failed to load: {exc}", RuntimeWarning, stacklevel=3)
            continue
        _REGISTRY[ep.name] = SolverInfo(ep.name, fn, getattr(fn, "guarantee", "unstated"), source=f"plugin {ep.value}",
                                        denoiser_alpha=getattr(fn, "denoiser_alpha", None))


def _reset_plugins() -> None:
    """Forget loaded plugins (tests install one at run time)."""
    global _plugins_loaded
    _plugins_loaded = False
    for name in [n for n, info in _REGISTRY.items() if info.source.startswith("plugin ")]:
        del _REGISTRY[name]


def solver_info(name: str) -> SolverInfo:
    """The registry entry of ``name`` (function, guarantee, source, ``denoiser_alpha``).

    Examples
    --------
    >>> solver_info("pnp-admm").denoiser_alpha
    0.5
    """
    get_solver(name)  # loads plugins and raises the helpful error for unknown names
    return _REGISTRY[name]


def get_solver(name: str) -> Callable:
    """The solver function registered as ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the available solvers.

    Examples
    --------
    >>> get_solver("pnp-fbs").__name__
    'pnp_fbs'
    >>> get_solver("pnp-fsb")
    Traceback (most recent call last):
    ...
    ValueError: unknown solver 'pnp-fsb'; available: ...
    """
    if name not in _REGISTRY:
        _load_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown solver {name!r}; available: {', '.join(available_solvers())}")
    return _REGISTRY[name].fn


def available_solvers() -> dict[str, str]:
    """Registered solvers (built-in, user, plugins), sorted by name, with their guarantees.

    Examples
    --------
    >>> "pnp-admm" in available_solvers()
    True
    """
    _load_plugins()
    return {name: _REGISTRY[name].guarantee for name in sorted(_REGISTRY)}
