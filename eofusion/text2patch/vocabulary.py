"""Label texts for text-to-patch training: catalogue names and descriptions mapped onto archive classes.

Every archive class (here EuroSAT's ten) is described by several short texts:

* its readable class name (``"SeaLake"`` -> ``"Sea Lake"``), optional so that class-name queries can be
  evaluated as unseen text;
* a one-line description written for the class;
* the names of the catalogue's level-2 classes (CORINE level 3) it corresponds to;
* its catalogue level-1 class as ``"<name>: <description>"``. A level-1 class may cover several archive
  classes (Agriculture covers AnnualCrop, Pasture and PermanentCrop), so this text is multi-labelled: it is a
  positive of every patch of every class it covers.

The level-1 and level-2 names follow ``catalog/ground_truth.json`` and are checked against
``catalog/labels.json``, so a renamed catalogue entry fails loudly instead of training on stale text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "EUROSAT_CLASS_TEXTS",
    "ClassText",
    "Vocabulary",
    "build_vocabulary",
    "load_catalogue",
    "readable_name",
]


@dataclass(frozen=True)
class ClassText:
    """How one archive class maps onto the label catalogue.

    Attributes:
        level1: Catalogue level-1 class name.
        level2: Catalogue level-2 names (CORINE level 3) the class corresponds to.
        description: A short description of what the patches show.
    """

    level1: str
    level2: tuple[str, ...]
    description: str


EUROSAT_CLASS_TEXTS: dict[str, ClassText] = {
    "AnnualCrop": ClassText("Agriculture", ("Non-irrigated arable land",),
                            "Annual crop fields: arable land ploughed and sown every year."),
    "Forest": ClassText("Forest", ("Broad-leaved forest", "Coniferous forest", "Mixed forest"),
                        "Dense forest with a closed canopy of trees."),
    "HerbaceousVegetation": ClassText("Forest", ("Natural grassland", "Moors and heathland"),
                                      "Herbaceous vegetation: natural grassland, heath and low shrubs."),
    "Highway": ClassText("Transportation", ("Road and rail networks and associated land",),
                         "A highway or major road crossing the landscape."),
    "Industrial": ClassText("Urban Area", ("Industrial or commercial units",),
                            "Industrial buildings, warehouses, factories and commercial areas."),
    "Pasture": ClassText("Agriculture", ("Pastures",), "Pasture: grassland grazed by livestock or mown for hay."),
    "PermanentCrop": ClassText("Agriculture", ("Vineyards", "Fruit trees and berry plantations", "Olive groves"),
                               "Permanent crops: orchards, vineyards and olive groves."),
    "Residential": ClassText("Urban Area", ("Continuous urban fabric", "Discontinuous urban fabric"),
                             "Residential area: houses, gardens and streets of a town."),
    "River": ClassText("Water Bodies", ("Water courses",), "A river flowing through the land."),
    "SeaLake": ClassText("Water Bodies", ("Water bodies", "Sea and ocean"), "Open water of a sea or a lake."),
}
"""EuroSAT classes on the catalogue; the level-1 classes and first level-2 names agree with ground_truth.json."""


def readable_name(class_name: str) -> str:
    """Split a CamelCase class name into words: ``"HerbaceousVegetation"`` -> ``"Herbaceous Vegetation"``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", class_name)


def load_catalogue(path: str | Path | None = None) -> dict[str, Any]:
    """Read the label catalogue.

    Args:
        path: A ``labels.json``; defaults to the one shipped in the ``catalog`` package (read as package data,
            no database involved).

    Returns:
        The parsed catalogue (``{"classes": [{"name", "description", "children": [{"name", ...}]}]}``).
    """
    if path is None:
        return json.loads((resources.files("catalog") / "labels.json").read_text())
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class Vocabulary:
    """Training texts with their (possibly several) archive classes.

    Attributes:
        texts: Distinct texts.
        labels: For each text, the archive classes it describes.
        classes: The archive classes, in a fixed order.
    """

    texts: tuple[str, ...]
    labels: tuple[frozenset[str], ...]
    classes: tuple[str, ...]

    def for_class(self, name: str) -> list[str]:
        """Texts that describe class ``name``."""
        return [t for t, labs in zip(self.texts, self.labels, strict=True) if name in labs]


def build_vocabulary(
    class_texts: dict[str, ClassText] | None = None,
    catalogue: dict[str, Any] | None = None,
    *,
    include_class_names: bool = True,
    classes: list[str] | None = None,
) -> Vocabulary:
    """Assemble the training texts of the given archive classes.

    Args:
        class_texts: Mapping of archive classes onto the catalogue; defaults to :data:`EUROSAT_CLASS_TEXTS`.
        catalogue: Parsed ``labels.json``; defaults to :func:`load_catalogue`.
        include_class_names: Add the readable class names as texts (off: they stay unseen for evaluation).
        classes: Restrict to these classes (default: all of ``class_texts``).

    Returns:
        The vocabulary; identical strings from several sources are merged and keep the union of their labels.

    Raises:
        ValueError: If a level-1 or level-2 name is not in the catalogue.
    """
    mapping = class_texts if class_texts is not None else EUROSAT_CLASS_TEXTS
    cat = catalogue if catalogue is not None else load_catalogue()
    level1 = {c["name"]: c for c in cat["classes"]}
    names = list(classes) if classes is not None else sorted(mapping)
    entries: dict[str, set[str]] = {}

    def add(text: str, label: str) -> None:
        entries.setdefault(text, set()).add(label)

    for name in names:
        ct = mapping[name]
        if ct.level1 not in level1:
            raise ValueError(f"{name}: level-1 class {ct.level1!r} is not in the catalogue")
        children = {child["name"] for child in level1[ct.level1]["children"]}
        for l2 in ct.level2:
            if l2 not in children:
                raise ValueError(f"{name}: {l2!r} is not a level-2 class of {ct.level1!r} in the catalogue")
        if include_class_names:
            add(readable_name(name), name)
        add(ct.description, name)
        for l2 in ct.level2:
            add(l2, name)
        # "Name: description" keeps the bare level-1 name (e.g. "Forest") free for the class of that name.
        add(f"{ct.level1}: {level1[ct.level1]['description']}", name)
    texts = tuple(entries)
    return Vocabulary(texts=texts, labels=tuple(frozenset(entries[t]) for t in texts), classes=tuple(names))
