"""Reading an mmdet-style config: ``_base_`` inheritance, ``--cfg-options`` and top-level variable
substitution."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError, one_line
from mnc_bench.registration import register_all

# What reading a broken config raises, besides mmengine's ConfigParsingError: Python that does not parse or
# run (a name, an import, a `_base_` file or variable that is missing, a value of the wrong kind) and the
# rules mmengine asserts. Anything else (a RuntimeError, say) is a bug and keeps its traceback.
CONFIG_PROBLEMS = (SyntaxError, NameError, ImportError, OSError, KeyError, AttributeError, IndexError,
                   TypeError, ValueError, AssertionError)


def parse_cfg_options(options: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` (CLI form, values parsed as mmengine's ``--cfg-options`` does) or a
    mapping."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    from mmengine.config import DictAction

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--cfg-options: expected KEY=VALUE, got {item!r}")
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def load_config(config: str | os.PathLike[str], cfg_options: Mapping[str, Any] | Sequence[str] | None = None):
    """Read an mmdet-style config (``_base_`` inheritance) and apply ``cfg_options``; registers every module
    the configs name first (:func:`~mnc_bench.registration.register_all`), so the result builds.

    A top-level string variable overridden here (``data_root``, ``backbone_checkpoint``) is also replaced
    where the config used it: in values equal to the old value and, for directory values ending in '/', in
    paths starting with it (``data_root + 'annotations/...'``).
    """
    from mmengine.config import Config
    from mmengine.config.utils import ConfigParsingError

    path = Path(config)
    if not path.is_file():
        raise UserError(f"config {path} not found")
    if path.suffix != ".py":
        raise UserError(f"config {path}: expected an mmdet-style Python config (.py)")
    register_all()
    try:
        # format_python_code=False: yapf-formatting the config text costs seconds at every checkpoint save.
        cfg = Config.fromfile(str(path), format_python_code=False)
        # mmengine 0.10.7 drops that argument for non-lazy .py configs; set it on the object (as its own
        # lazy-import branch does).
        object.__setattr__(cfg, "_format_python_code", False)
    except (*CONFIG_PROBLEMS, ConfigParsingError) as exc:
        raise UserError(f"config {path}: {type(exc).__name__}: {one_line(exc)}") from exc
    # A copy: mmengine's merge pops `_delete_` from the dict values it is given, and callers apply their
    # options more than once (a suite's worker loads its run's config for training and again for testing).
    options = copy.deepcopy(parse_cfg_options(cfg_options))
    renamed = {key: (cfg[key], value) for key, value in options.items()
               if "." not in key and isinstance(cfg.get(key), str) and cfg[key] != value}
    try:
        cfg.merge_from_dict(options)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"--cfg-options: {one_line(exc)}") from exc
    for key, (old, new) in renamed.items():
        _replace_variable(cfg._cfg_dict, old, new, skip=key)
    if not isinstance(cfg.get("model"), Mapping) or "type" not in cfg.model:
        raise UserError(f"config {path}: needs a `model` dict with a `type`")
    if "data_preprocessor" in cfg and cfg.model.get("data_preprocessor") != cfg.data_preprocessor:
        raise UserError(f"config {path}: model.data_preprocessor differs from the dataset's "
                        "data_preprocessor (normalisation and padding must be identical across compared "
                        "models; set `model = dict(data_preprocessor=_base_.data_preprocessor)` and override "
                        "both)")
    return cfg


def _replace_variable(node: Any, old: str, new: Any, skip: str) -> None:
    """Replace ``old`` by ``new`` in the string values of a nested config (in place)."""
    prefix_old = old if old.endswith("/") else None
    prefix_new = None if new is None or prefix_old is None else str(new).rstrip("/") + "/"

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            if value == old:
                return new
            if prefix_old and prefix_new is not None and value.startswith(prefix_old):
                return prefix_new + value[len(prefix_old):]
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(convert(item) for item in value)
        if isinstance(value, dict):
            for key in list(value):
                value[key] = convert(value[key])
        return value

    for key in list(node):
        if key != skip:
            node[key] = convert(node[key])
