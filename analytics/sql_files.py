"""The SQL files ticklake ships: the schema, its migrations, the views and the examples.

They sit in ``analytics/sql/``, the package ``analytics.sql`` (``pyproject.toml``:
``package-data``), so a wheel carries them and they are found the same way from a wheel, an
editable install or the checkout: through :mod:`importlib.resources`, never by a path
relative to this file.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final

__all__ = ["EXAMPLES_DIR", "SQL_PACKAGE", "example_names", "example_text", "sql_text"]

SQL_PACKAGE: Final = "analytics.sql"
EXAMPLES_DIR: Final = "examples"


def _root() -> Traversable:
    return files(SQL_PACKAGE)


def sql_text(name: str) -> str:
    """The text of the shipped SQL file ``name`` (``views.sql``, ``schema.sql``, ...)."""
    return _root().joinpath(name).read_text(encoding="utf-8")


def example_names() -> list[str]:
    """The examples' names (``latest_bar``, ...: the file names without ``.sql``), sorted."""
    folder = _root().joinpath(EXAMPLES_DIR)
    return sorted(p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql"))


def example_text(name: str) -> str:
    """The SQL of the example ``name``; KeyError naming the examples for an unknown one."""
    if name not in example_names():
        raise KeyError(f"no example {name!r}; examples: {', '.join(example_names())}")
    return _root().joinpath(EXAMPLES_DIR).joinpath(f"{name}.sql").read_text(encoding="utf-8")
