"""Every choice that shapes a histogram or a ranking, kept together and stored with each index."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from .core.histogram import LAYOUTS
from .core.qfd import KERNELS
from .errors import SettingsError


@dataclass(frozen=True)
class Settings:
    """Index settings: validated when made (a SettingsError names every value that is wrong).

    colors : codebook size K
    space : colour space of the codebook k-means and of the nearest-colour lookup ("lab" or "rgb")
    layout : spatial layout of the histogram blocks (see cbir.features.LAYOUTS)
    min_side : decode JPEGs at 1/2, 1/4 or 1/8 scale while the short side keeps at least this many pixels
    sample : images sampled from the collection to learn the codebook
    seed : seed of the codebook k-means
    power : shares are raised to this power before the quadratic form (0.5: square root; 1: raw shares)
    kernel : similarity kernel of A ("qbic": 1 - d/d_max, or "gaussian": exp(-sigma (d/d_max)^2))
    sigma : sharpness of the gaussian kernel (400: similarity 1/e at d = d_max / 20, about 6 CIELAB units)

    Examples
    --------
    >>> from cbir import Settings
    >>> Settings().colors, Settings().layout
    (128, 'global+3x3')
    >>> Settings().with_changes(colors=64, kernel=None).colors
    64
    >>> Settings(colors=1)
    Traceback (most recent call last):
    ...
    cbir.errors.SettingsError: colors must be in 2..1024, got 1
    """

    # Defaults measured on Corel/Wang 1000 (docs/evaluation.md; tests/benchmarks/bench_retrieval.py): each is
    # the middle of a plateau rather than a sharp optimum, so that it carries over to other collections.
    colors: int = 128
    space: str = "lab"
    layout: str = "global+3x3"
    min_side: int = 384  # reduced JPEG decode that keeps rankings (tests/benchmarks/measure_histograms.py)
    sample: int = 1000
    seed: int = 0
    power: float = 1 / 3
    kernel: str = "gaussian"
    sigma: float = 400.0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.colors <= 1024:
            problems.append(f"colors must be in 2..1024, got {self.colors}")
        if self.space not in ("lab", "rgb"):
            problems.append(f"space must be lab or rgb, got {self.space!r}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.min_side < 0:
            problems.append(f"min_side must be 0 (full decode) or positive, got {self.min_side}")
        if self.sample < 1:
            problems.append(f"sample must be positive, got {self.sample}")
        if not 0 < self.power <= 1:
            problems.append(f"power must be in (0, 1], got {self.power}")
        if self.kernel not in KERNELS:
            problems.append(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if not 0 < self.sigma < math.inf:
            problems.append(f"sigma must be positive and finite, got {self.sigma}")
        if not 0 <= self.seed < 1 << 63:
            problems.append(f"seed must be in 0..2**63-1, got {self.seed}")
        if problems:
            raise SettingsError("; ".join(problems))

    # Settings that change the stored histograms; the others only change how they are compared.
    HISTOGRAM_FIELDS: ClassVar[tuple[str, ...]] = ("colors", "space", "layout", "min_side", "sample", "seed")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a dict of plain values (what an index stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> Settings:
        """Settings from a stored dict, refusing unknown names and values of the wrong type."""
        if not isinstance(values, dict):
            raise SettingsError(f"stored settings are a {type(values).__name__}, not a mapping: damaged database?")
        known = {f.name: type(f.default) for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise SettingsError(f"unknown settings {', '.join(sorted(unknown))}: made by a newer cbir?")
        accepted = {float: (int, float), int: int, str: str}
        wrong = [name for name, value in values.items()
                 if isinstance(value, bool) or not isinstance(value, accepted[known[name]])]
        if wrong:
            raise SettingsError(f"settings of the wrong type: {', '.join(f'{n}={values[n]!r}' for n in sorted(wrong))}")
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields changed; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
