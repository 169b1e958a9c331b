"""`sg3probe toy ...`: the embedded toy world (render, train, evaluate)."""
from __future__ import annotations

import click


@click.group()
def toy() -> None:
    """The embedded toy world: procedural faces, and the models and scorers trained on them."""
