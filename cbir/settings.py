"""Every choice that shapes a histogram or a ranking, kept together and stored with each index."""

from dataclasses import asdict, dataclass, fields, replace

from .errors import CbirError
from .features import LAYOUTS
from .qfd import KERNELS


class SettingsError(CbirError):
    """A setting has a value cbir cannot use."""


@dataclass(frozen=True)
class Settings:
    """Index settings.

    colors : codebook size K
    space : colour space of the codebook k-means and of the nearest-colour lookup ("lab" or "rgb")
    layout : spatial layout of the histogram blocks (see cbir.features.LAYOUTS)
    min_side : decode JPEGs at 1/2, 1/4 or 1/8 scale while the short side keeps at least this many pixels
    sample : images sampled from the collection to learn the codebook
    seed : seed of the codebook k-means
    power : shares are raised to this power before the quadratic form (0.5: square root; 1: raw shares)
    kernel : similarity kernel of A ("qbic": 1 - d/d_max, or "gaussian": exp(-sigma (d/d_max)^2))
    sigma : sharpness of the gaussian kernel (400: similarity 1/e at d = d_max / 20, about 6 CIELAB units)
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

    def __post_init__(self):
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
        if not self.sigma > 0:
            problems.append(f"sigma must be positive, got {self.sigma}")
        if problems:
            raise SettingsError("; ".join(problems))

    # Settings that change the stored histograms; the others only change how they are compared.
    HISTOGRAM_FIELDS = ("colors", "space", "layout", "min_side", "sample", "seed")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
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

    def with_changes(self, **changes):
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
