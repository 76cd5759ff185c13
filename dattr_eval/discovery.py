"""Import every module of a package so that its classes register themselves."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(
    package_name: str, package_path: list[str], skip: tuple[str, ...] = ()
) -> None:
    """Import ``package_name.<module>`` for each module in ``package_path``.

    Skips private modules (leading underscore), subpackages (imported lazily where they hold
    optional backends) and names in ``skip``.
    """
    for info in pkgutil.iter_modules(package_path):
        if info.ispkg or info.name.startswith("_") or info.name in skip:
            continue
        importlib.import_module(f"{package_name}.{info.name}")
