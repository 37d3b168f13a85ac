"""Denoisers that are averaged operators by construction, with certified bounds.

The constrained architecture, certificates and training arrive with issue #3; this package
already exists so that the import order ``operators`` <- ``denoisers`` <- ``pnp_stable``
is fixed (and tested) from the start.
"""

__all__: list[str] = []
