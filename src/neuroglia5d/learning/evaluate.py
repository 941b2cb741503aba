"""Tracking accuracy against ground truth with the Cell Tracking Challenge TRA measure,
computed by ``py-ctcmetrics`` (the challenge's measure re-implemented and validated
against the official binaries) on temporary CTC folders."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .tracking import ctc_tracks, write_ctc

__all__ = ["tra_score"]


def tra_score(gt: np.ndarray, pred: np.ndarray, parents: dict[int, int] | None = None,
              gt_parents: dict[int, int] | None = None) -> float:
    """TRA of the predicted (T, Z, Y, X) track labels against ground-truth track labels.

    Needs the ``py-ctcmetrics`` package (``pip install py-ctcmetrics``).
    """
    import tifffile
    from ctc_metrics import evaluate_sequence

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        res = write_ctc(root / "RES", pred, parents)
        tra = root / "GT" / "TRA"
        tra.mkdir(parents=True)
        seg = root / "GT" / "SEG"
        seg.mkdir()
        lab, table = ctc_tracks(gt, gt_parents)
        for t in range(lab.shape[0]):
            for name, d in ((f"man_track{t:03d}.tif", tra), (f"man_seg{t:03d}.tif", seg)):
                tifffile.imwrite(d / name, lab[t].astype(np.uint16), photometric="minisblack")
        (tra / "man_track.txt").write_text("".join(f"{a} {b} {c} {p}\n" for a, b, c, p in
                                                   table))
        import contextlib
        import io
        import warnings

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it prints its results and warns per track
            out = evaluate_sequence(str(res), str(root / "GT"), metrics=["TRA"], threads=1)
    if out.get("TRA") is None:
        raise ValueError("py-ctcmetrics rejected the result folder (invalid tracks)")
    return float(out["TRA"])
