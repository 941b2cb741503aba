"""Headless ``neuroglia5d train`` and ``neuroglia5d apply`` (batch use on a cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError

__all__ = ["run_apply", "run_train"]


def _stem_of_annotations(p: Path) -> str:
    return p.name.removesuffix(".json").removesuffix("_auto_annotations")


def _array(path: str | Path, role: str) -> tuple[np.ndarray | Any, Any]:
    """``(array, outputs)`` of ``role`` (labels / intensity) in one of our output files."""
    from ..io.convert import load_outputs

    o = load_outputs(path)
    if role not in o.arrays:
        raise InputError(f"{path}: holds no {role}")
    return o.arrays[role], o


def _load_all(a: Any) -> np.ndarray:
    return np.stack([np.asarray(a[t]) for t in range(a.shape[0])])


def _header_file(doc: dict[str, Any], *roles: str) -> str | None:
    files = doc.get("header", {}).get("files", {})
    for r in roles:
        if r in files and files[r].get("path"):
            return str(files[r]["path"])
    return None


def run_train(annotations: str | Path, *, labels: str | None = None,
              intensity: str | None = None, weights: str | None = None,
              name: str | None = None, min_examples: int = 5, schedule: str = "meta",
              max_steps: int | None = None, log: Any = print) -> Path:
    """Train (incrementally) on an annotations file; returns the weights path."""
    from ..annotation import load_annotations
    from .session import Learner

    ann = Path(annotations)
    doc = load_annotations(ann)
    lab_path = labels or _header_file(doc, "labels", "original_labels")
    if lab_path is None:
        raise ParameterError("--labels: the annotations header names no labels file; give one")
    lab_arr, outs = _array(lab_path, "labels")
    int_path = intensity or _header_file(doc, "fused", "intensity")
    if int_path is not None:
        inten = _load_all(_array(int_path, "intensity")[0])
    elif "intensity" in outs.arrays:
        inten = _load_all(outs.arrays["intensity"])
    else:
        inten = None
    lab = _load_all(lab_arr)
    out = Path(weights) if weights else ann.with_name(f"{_stem_of_annotations(ann)}_learning.pt")
    if out.exists():
        le = Learner.load(out)
        le.min_examples = int(min_examples)
        log(f"continuing from {out}")
    else:
        le = Learner(min_examples=min_examples, schedule=schedule)
    if max_steps is not None:
        if max_steps < 1:
            raise ParameterError(f"--max-steps {max_steps}: must be at least 1")
        le.cap_steps(max_steps)
    _corr, rep = le.train_from_annotations(doc, lab, inten)
    log(rep.summary())
    for d in rep.decisions:
        log(f"meta: {d['network']} round {d['round']}: lr {d['lr']:.2g}, {d['steps']} steps "
            f"({d['reason']})")
    le.save(out)
    log(f"wrote {out} (weights {le.weights_id}, {rep.seconds:.1f} s)")
    if name:
        log(f"saved weight set {le.save_named(name)}")
    return out


def run_apply(weights: str | Path, input_path: str | Path, *, intensity: str | None = None,
              out: str | None = None, t_range: Sequence[int] | None = None,
              ctc: str | None = None, geff_path: str | None = None,
              divisions: bool = False, log: Any = print) -> Path:
    """Apply saved networks to a labels file; write corrected labels and the machine ops
    (``divisions``: the cells divide, the linker may propose divisions)."""
    from ..annotation import WorkingCopy, make_header, save_annotations
    from ..io.convert import Outputs, format_of, write_outputs
    from .session import Learner
    from .tracking import write_ctc, write_geff

    wpath = Path(weights)
    le = Learner.load(wpath) if wpath.suffix == ".pt" or wpath.exists() else \
        Learner.load_named(str(weights))
    lab_arr, outs = _array(input_path, "labels")
    lab = _load_all(lab_arr).astype(np.uint32)
    if intensity is not None:
        inten = _load_all(_array(intensity, "intensity")[0])
    elif "intensity" in outs.arrays:
        inten = _load_all(outs.arrays["intensity"])
    else:
        inten = None
    wc = WorkingCopy(lab.copy(), original=lab, intensity=inten, spacing_um=outs.spacing_um,
                     offset_zyx=outs.offset_zyx)
    if t_range is not None and (t_range[0] < 0 or t_range[1] >= lab.shape[0]
                                or t_range[0] > t_range[1]):
        raise ParameterError(f"--t-range {t_range[0]} {t_range[1]}: outside 0..{lab.shape[0]-1}")
    rep = le.apply(wc, t_range=tuple(t_range) if t_range is not None else None,
                   divisions=divisions)
    log(rep.summary())
    inp = Path(input_path)
    stem = outs.stem or inp.stem
    dest = Path(out) if out else inp.with_name(f"{stem}_model_labels.ome.tif")
    fmt = format_of(dest)
    if fmt not in ("tif", "ng5d"):
        raise ParameterError(f"--out {dest}: labels alone are written as .tif or .ng5d")
    write_outputs(Outputs({"labels": wc.labels}, tuple(outs.spacing_um),
                          tuple(outs.offset_zyx), {"model_weights": le.weights_id}, stem),
                  dest, fmt)
    out_stem = dest.name
    for suf in (".ng5d", ".ome.tif", ".ome.tiff", ".tif", ".tiff"):
        out_stem = out_stem.removesuffix(suf)
    out_stem = out_stem.removesuffix("_labels")
    ann = dest.with_name(f"{out_stem}_auto_annotations.json")
    save_annotations(ann, wc, make_header(wc, files={"labels": inp}, stem=stem))
    log(f"wrote {dest} and {ann} ({len(rep.ops)} machine operations)")
    if ctc:
        log(f"wrote {write_ctc(ctc, wc.labels, rep.parents)}")
    if geff_path:
        log(f"wrote {write_geff(geff_path, wc.labels, outs.spacing_um, rep.parents)}")
    return dest
