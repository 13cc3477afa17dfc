"""References to Python objects in user code: ``path/file.py:name`` or ``pkg.module:name``.

:func:`load_object` imports the module (a ``.py`` path is imported under a private module
name, with its folder on ``sys.path`` during the import so its sibling imports work) and
returns the named attribute (dots allowed: ``file.py:Class.method``). :func:`source_files`
lists the files whose content decides what the reference means, for cache keys, without
importing anything heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolchain.errors import EdgeDeployError
from toolchain.fsutil import sha256_file


def split(spec: str) -> tuple[str, str] | None:
    """``("path/file.py" | "pkg.module", "name")`` or None when ``spec`` is not a reference.

    A Windows drive letter (``C:\\...``) is not mistaken for the separator.
    """
    target, sep, name = str(spec).rpartition(":")
    if not sep or not target or not name or "/" in name or "\\" in name:
        return None
    if target.endswith(".py") or _is_dotted(target):
        return target, name
    return None


def _is_dotted(s: str) -> bool:
    return all(part.isidentifier() for part in s.split("."))


@contextlib.contextmanager
def user_code(what: str, error: type[EdgeDeployError]) -> Iterator[None]:
    """Run the user's code (a factory, a data function, a model's forward) in this block:
    a ``sys.exit()`` in it is ``error`` naming ``what``, not the program's (successful) end.
    (``KeyboardInterrupt`` is left alone: it means Ctrl-C, and the CLI exits 130 on it.)"""
    try:
        yield
    except SystemExit as exc:
        raise error(
            f"{what} called sys.exit({exc.code!r}) instead of returning; nothing was produced",
            hint="return the result (or raise an exception) instead of exiting",
        ) from exc


def load_object(spec: str, *, what: str, error: type[EdgeDeployError]) -> Any:
    """The object named by ``spec``; raises ``error`` with ``what`` in the message.

    Raised when the spec is malformed, the file is missing, importing raises (the message
    names the exception), or the attribute is missing.
    """
    parts = split(spec)
    if parts is None:
        raise error(
            f"{what}: {spec!r} is not a reference to Python code",
            hint="use path/file.py:name or package.module:name",
        )
    target, name = parts
    module = _import(target, what=what, error=error)
    obj: Any = module
    for attr in name.split("."):
        if not hasattr(obj, attr):
            raise error(
                f"{what}: {target} has no attribute {name!r}",
                hint=f"names defined there: {', '.join(_public_names(module)) or '(none)'}",
            )
        obj = getattr(obj, attr)
    return obj


def _import(target: str, *, what: str, error: type[EdgeDeployError]) -> Any:
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise error(f"{what}: file not found: {target}", hint="check the path")
        mod_name = "_edgedeploy_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        mspec = importlib.util.spec_from_file_location(mod_name, path)
        if mspec is None or mspec.loader is None:
            raise error(f"{what}: cannot import {target}")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[mod_name] = module
        folder = str(path.parent)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            with user_code(f"{what}: importing {target}", error):
                mspec.loader.exec_module(module)
        except EdgeDeployError:
            sys.modules.pop(mod_name, None)
            raise
        except Exception as exc:  # user code: report whatever it raised
            sys.modules.pop(mod_name, None)
            raise error(
                f"{what}: importing {target} raised {type(exc).__name__}: {exc}",
                hint="fix the error in that file (run it with python to see the traceback)",
            ) from exc
        finally:
            if added and folder in sys.path:
                sys.path.remove(folder)
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise error(
            f"{what}: no module named {exc.name or target!r}",
            hint="is it installed or on PYTHONPATH? a file path must end in .py",
        ) from exc
    except Exception as exc:  # user code: report whatever it raised
        raise error(f"{what}: importing {target} raised {type(exc).__name__}: {exc}") from exc


def _public_names(module: Any) -> list[str]:
    return sorted(n for n in vars(module) if not n.startswith("_"))[:20]


def source_files(spec: str) -> list[Path] | None:
    """Files whose content defines ``spec``'s code: the module and the ``.py`` files beside it.

    None when they cannot be found without running user code (then the caller must hash
    what the code produces instead). Nothing is imported except parent packages of a
    dotted module (Python's finder needs them).
    """
    parts = split(spec)
    if parts is None:
        return None
    target, _ = parts
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            return None
    else:
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            return None
        if found is None or not found.origin or not Path(found.origin).is_file():
            return None
        path = Path(found.origin).resolve()
    return sorted({path, *path.parent.glob("*.py")})


def source_fingerprint(spec: str) -> dict[str, Any] | None:
    """``spec``'s attribute name and the SHA-256 of each of its :func:`source_files` (a
    cache-key part that runs no user code); None when the files cannot be found."""
    files = source_files(spec)
    if files is None:
        return None
    return {"ref": spec.rsplit(":", 1)[1], "files": [[f.name, sha256_file(f)] for f in files]}
