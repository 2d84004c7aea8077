"""Numbers said in words a person reads: colour names, region names, similarity, and why a result ranks where it does.

Everything here works on plain arrays from :meth:`cbir.Index.explain`; nothing reads the index.
"""

from dataclasses import dataclass

import numpy as np

from ..core.colour import srgb_to_lab

# Plain names a person uses for a colour, each with a typical sRGB value; a codebook colour is called by the name
# whose value is nearest in CIELAB.
COLOUR_NAMES = {
    "black": (20, 20, 20), "dark grey": (75, 75, 75), "grey": (128, 128, 128), "light grey": (190, 190, 190),
    "white": (245, 245, 245), "blue grey": (100, 120, 140), "red": (200, 30, 35), "dark red": (115, 20, 25),
    "pink": (240, 150, 175), "orange": (240, 135, 30), "brown": (135, 85, 45), "dark brown": (70, 45, 30),
    "tan": (195, 155, 110), "beige": (225, 210, 175), "yellow": (240, 215, 40), "olive": (120, 120, 45),
    "green": (60, 150, 55), "dark green": (30, 75, 35), "light green": (160, 210, 125), "teal": (20, 125, 125),
    "turquoise": (70, 205, 195), "sky blue": (135, 190, 235), "blue": (40, 85, 200), "navy": (20, 30, 90),
    "purple": (110, 45, 130), "lilac": (180, 150, 210), "magenta": (205, 45, 160), "skin": (225, 175, 145),
}


def colour_names(rgb):
    """The plain name of each of ``rgb (K, 3) uint8`` sRGB colours: a list of K str."""
    names = list(COLOUR_NAMES)
    table = srgb_to_lab(np.array(list(COLOUR_NAMES.values()), np.uint8))
    lab = srgb_to_lab(np.asarray(rgb, np.uint8).reshape(-1, 3))
    return [names[i] for i in np.argmin(((lab[:, None] - table[None]) ** 2).sum(-1), axis=1)]


def region_names(layout):
    """Where each block of a layout lies, in words ("overall" for a "global+" layout's whole-picture block)."""
    base = layout.removeprefix("global+")
    regions = {
        "global": ["overall"],
        "2x2": ["in the top left", "in the top right", "in the bottom left", "in the bottom right"],
        "3x3": ["in the top left", "at the top", "in the top right", "on the left", "in the centre", "on the right",
                "in the bottom left", "at the bottom", "in the bottom right"],
        "center": ["in the top-left corner", "in the top-right corner", "in the bottom-left corner",
                   "in the bottom-right corner", "in the middle"],
    }[base]
    return (["overall"] if layout.startswith("global+") and base != "global" else []) + regions


# Groups of 3x3 regions with a name of their own, so "sky blue at the top" reads as "in the top row".
GRID_GROUPS = {
    "in the top row": (0, 1, 2), "across the middle": (3, 4, 5), "in the bottom row": (6, 7, 8),
    "down the left side": (0, 3, 6), "down the middle": (1, 4, 7), "down the right side": (2, 5, 8),
}


def similarity(distance, typical):
    """How near a distance is in this collection: the share of random pairs of its photos that are further apart
    (1.0 for the same colours in the same places; 0.5 for as alike as two photos picked at random).

    Parameters
    ----------
    distance : float
    typical : (P,) float, sorted distances of random pairs (:meth:`cbir.Index.typical_distances`)
    """
    if len(typical) == 0:
        return 1.0 if distance == 0 else 0.0
    return float(1.0 - np.searchsorted(typical, distance, side="left") / len(typical))


@dataclass(frozen=True)
class Reason:
    """One part of a distance: ``share`` of d^2 that comes from the image holding ``more`` (or less) of a named
    colour ``where`` (a region, a group of regions, or overall)."""

    share: float
    colour: str
    hex: str
    more: bool
    where: str

    def __str__(self):
        return f"{'more' if self.more else 'less'} {self.colour} {self.where}"


@dataclass(frozen=True)
class Why:
    """A distance in parts: by region (``regions`` shares of d^2, in block order), by colour name (``colours``:
    name -> share of d^2) and the largest few :class:`Reason` s."""

    regions: list
    colours: dict
    reasons: list


class Words:
    """Names for one index's codebook and layout, made once: ``names`` and ``hexes`` of the K codebook colours,
    ``where`` each block lies; :meth:`explain` splits distances into parts in these words."""

    def __init__(self, rgb, layout):
        rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
        self.layout = layout
        self.names = colour_names(rgb)
        self.hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb]
        self.unique = sorted(set(self.names), key=self.names.index)
        self.member = np.array([[n == u for n in self.names] for u in self.unique], np.float64)  # (U, K)
        self.unique_hexes = [self.hexes[self.names.index(u)] for u in self.unique]
        self.where = region_names(layout)
        self.groups = []  # (label, blocks) of whole rows and columns of a 3x3 grid
        if layout.removeprefix("global+") == "3x3":
            offset = 1 if layout.startswith("global+") else 0
            self.groups = [(label, [offset + g for g in group]) for label, group in GRID_GROUPS.items()]

    def named_shares(self, shares):
        """Shares ``(K,)`` summed by colour name: [{"name", "hex", "share"}], largest first."""
        totals = self.member @ np.asarray(shares, np.float64)
        return [{"name": self.unique[u], "hex": self.unique_hexes[u], "share": float(totals[u])}
                for u in np.argsort(-totals, kind="stable")]

    def explain(self, terms, signed, top=3, smallest=0.02):
        """Split one image's squared distance into parts a person reads.

        Parameters
        ----------
        terms : (B, K) float, non-negative, summing to d^2 (one image of :class:`cbir.index.Explanation`)
        signed : (B, K) float, > 0 where the image holds more of a colour than the query
        top : int, how many reasons to give at most
        smallest : float, share of d^2 below which a part is not worth a reason

        Returns
        -------
        Why; all shares 0 when the distance is 0
        """
        terms = np.asarray(terms, np.float64)
        total = terms.sum()
        if total <= 0:
            return Why([0.0] * len(terms), {}, [])
        parts = terms @ self.member.T / total  # (B, U): share of d^2 per block and colour name
        more = (np.asarray(signed) * np.sqrt(terms)) @ self.member.T > 0  # more or less of that colour there
        colours = dict(sorted(((u, float(s)) for u, s in zip(self.unique, parts.sum(axis=0))), key=lambda p: -p[1]))
        # Candidates: each (block, colour), and each (row or column, colour) whose blocks all differ the same way.
        shares, labels, colour, signs = [parts.ravel()], [], [], [more.ravel()]
        labels += [b for b in range(len(terms)) for _ in self.unique]
        colour += list(range(len(self.unique))) * len(terms)
        for g, (label, blocks) in enumerate(self.groups):
            same = more[blocks].all(axis=0) | ~more[blocks].any(axis=0)
            shares.append(np.where(same, parts[blocks].sum(axis=0), 0.0))
            signs.append(more[blocks[0]])
            labels += [label] * len(self.unique)
            colour += list(range(len(self.unique)))
        shares, signs = np.concatenate(shares), np.concatenate(signs)
        reasons, used = [], set()
        for i in np.argsort(-shares, kind="stable"):
            if shares[i] < smallest or len(reasons) == top:
                break
            u, is_more = colour[i], bool(signs[i])
            if (u, is_more) in used:
                continue
            used.add((u, is_more))
            where = labels[i] if isinstance(labels[i], str) else self.where[labels[i]]
            reasons.append(Reason(float(shares[i]), self.unique[u], self.unique_hexes[u], is_more, where))
        return Why([float(s) for s in terms.sum(axis=1) / total], colours, reasons)
