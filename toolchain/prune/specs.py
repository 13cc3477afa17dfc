"""``module:fn`` and ``path/file.py:fn`` specs: import the module, return the named object."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from toolchain.errors import EdgeDeployError


def load_object(spec: str, *, what: str, error: type[EdgeDeployError]) -> Any:
    """The object ``fn`` named by ``module:fn`` or ``path/file.py:fn``.

    Raises ``error`` (with ``what`` in the message) when the spec is malformed, the file is
    missing, the import raises, or the name is not there.
    """
    target, sep, name = str(spec).rpartition(":")
    if not sep or not target or not name:
        raise error(f"{what}: {spec!r} is not module:function", hint="e.g. mydata.py:load")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            if not path.is_file():
                raise error(f"{what}: file not found: {target}")
            mod_name = "_edgedeploy_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            mspec = importlib.util.spec_from_file_location(mod_name, path)
            if mspec is None or mspec.loader is None:
                raise error(f"{what}: cannot import {target}")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mod_name] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except EdgeDeployError:
        raise
    except Exception as exc:  # user code: report whatever it raised
        raise error(f"{what}: importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise error(f"{what}: {target!r} has no attribute {name!r}")
    return getattr(module, name)
