"""Pipeline parameters: names, units, defaults, validation and ``parameters.json``.

The key names are the original suite's (``px_um``, ``ch1_minDist_um``, ``sparsity_ch1``,
...), so a ``parameters.json`` written by it loads here. Per-channel parameters exist for
every channel ``N`` (``chN_minDist_um``, ``sparsity_chN``, ...); a channel without its own
values takes channel 1's. Keys this version does not know give a warning naming them, or
an error with ``strict=True``. Wrong types and out-of-range values raise a one-line
:class:`~neuroglia5d.errors.ParameterError`.

A saved ``parameters.json`` also carries a ``provenance`` block (software version, the
algorithm calibration chose, the XY crop offset, checksums of the inputs); it is read
back as :attr:`Parameters.provenance` and never changes processing.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ParameterError

ALGORITHMS = ("auto", "watershed", "branching", "stitch2d")


@dataclass(frozen=True)
class ParamSpec:
    """Description of one parameter as the user sees it.

    Attributes
    ----------
    key : str
        JSON key; per-channel keys contain ``{c}`` for the 1-based channel number.
    attr : str
        Attribute name on :class:`Parameters` or :class:`ChannelParams`.
    kind : type
        ``float``, ``int`` or ``str``.
    unit : str
        Physical unit shown next to the value (empty when dimensionless).
    help : str
        Meaning, in the words of the manual where it has them.
    lo, hi : float or None
        Inclusive bounds (``lo_open`` makes the lower one exclusive).
    choices : tuple of str, optional
        Allowed values of a string parameter.
    """

    key: str
    attr: str
    kind: type
    unit: str
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def per_channel(self) -> bool:
        """Whether the key is repeated for every channel."""
        return "{c}" in self.key

    def key_for(self, channel: int) -> str:
        """JSON key for a 1-based channel number (or the global key)."""
        return self.key.format(c=channel)

    def check(self, value: Any, key: str) -> Any:
        """Return ``value`` converted to ``kind``, or raise a one-line ParameterError."""
        if self.kind is str:
            if not isinstance(value, str):
                raise ParameterError(f"parameter {key!r} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ParameterError(
                    f"parameter {key!r} must be one of {', '.join(self.choices)}; got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(
                f"parameter {key!r} must be a number ({self.unit or 'no unit'}), got {value!r}"
            )
        if not _finite(value):  # NaN/Infinity parse from JSON; int() would crash
            raise ParameterError(f"parameter {key!r} must be finite, got {value!r}")
        if self.kind is int:
            if float(value) != int(value):
                raise ParameterError(f"parameter {key!r} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        unit = f" {self.unit}" if self.unit else ""
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            op = ">" if self.lo_open else ">="
            raise ParameterError(f"parameter {key!r} must be {op} {self.lo:g}{unit}, got {value!r}")
        if self.hi is not None and value > self.hi:
            raise ParameterError(f"parameter {key!r} must be <= {self.hi:g}{unit}, got {value!r}")
        return value


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


GLOBAL_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("px_um", "px_um", float, "µm",
              "Voxel size in XY; calibrates all object size and distance thresholds to "
              "physical units.", lo=0, lo_open=True),
    ParamSpec("dz_um", "dz_um", float, "µm",
              "Voxel size in Z (distance between z-planes).", lo=0, lo_open=True),
    ParamSpec("seed_merge_tol", "seed_merge_tol", float, "",
              "Controls how readily adjacent regions are merged into one object "
              "(higher = fewer, larger objects).", lo=0, hi=1),
    ParamSpec("Taccum", "Taccum", int, "frames",
              "Number of raw timepoints to combine into each output frame.", lo=1),
    ParamSpec("maxT", "maxT", int, "frames",
              "Maximum intensity frames buffered before flushing to disk (0 = automatic).",
              lo=0),
    ParamSpec("winXYZum", "winXYZum", float, "µm",
              "Spatial search radius used when filtering isolated or spurious labels: a "
              "label with no neighbour within it is discarded as isolated noise (0 = off).",
              lo=0),
    ParamSpec("algorithm", "algorithm", str, "",
              "Segmentation algorithm: auto (chosen by calibration at the first timepoint), "
              "watershed (compact cells, nuclei), branching (microglia, neurons: keeps thin "
              "processes on their cell body) or stitch2d (per-plane 2D, stitched across z).",
              choices=ALGORITHMS),
    ParamSpec("stitch_threshold", "stitch_threshold", float, "",
              "stitch2d only: minimum IoU between masks of neighbouring z-planes to stitch "
              "them into one 3D object (as Cellpose's stitch_threshold).", lo=0, hi=1),
    ParamSpec("ram_budget_gb", "ram_budget_gb", float, "GiB",
              "Memory the run may use for buffers (0 = half of the memory available at "
              "start).", lo=0),
)

CHANNEL_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("ch{c}_minDist_um", "minDist_um", float, "µm",
              "Expected minimum object diameter: seeds closer than half of it are one object, "
              "fragments smaller than a sphere of half of it are discarded; set it to "
              "roughly the cell or nucleus diameter.", lo=0, lo_open=True),
    ParamSpec("ch{c}_maxSize_um", "maxSize_um", float, "µm",
              "Expected maximum object diameter: larger objects are discarded as oversize.",
              lo=0, lo_open=True),
    ParamSpec("sparsity_ch{c}", "sparsity", float, "%",
              "Target percentage of background voxels after background subtraction "
              "(higher % = more aggressive removal).", lo=0, hi=99.9),
    ParamSpec("bilat_ch{c}", "bilat", float, "",
              "Edge-preserving smoothing strength applied per z-plane (0 = off; 1 = about "
              "one voxel of spatial smoothing).", lo=0, hi=5),
    ParamSpec("CED_ch{c}", "CED", int, "",
              "Structure enhancement (coherence-enhancing diffusion) for filamentous or "
              "branching morphologies: 0 off, 1 gentle, 2 normal, 3 aggressive.", lo=0, hi=3),
)

_CHANNEL_KEY_RES = tuple(
    (re.compile("^" + re.escape(s.key).replace(r"\{c\}", r"(\d+)") + "$"), s)
    for s in CHANNEL_SPECS
)
_GLOBAL_BY_KEY = {s.key: s for s in GLOBAL_SPECS}
META_KEYS = ("provenance", "software", "version")


@dataclass(frozen=True)
class ChannelParams:
    """Per-channel parameters (JSON keys ``chN_minDist_um``, ``sparsity_chN``, ...)."""

    minDist_um: float = 8.0
    maxSize_um: float = 40.0
    sparsity: float = 75.0
    bilat: float = 0.0
    CED: int = 0


@dataclass(frozen=True)
class Parameters:
    """All parameters of a segmentation run.

    Attributes mirror the JSON keys; per-channel values live in :attr:`channels`
    (index 0 is channel 1). ``explicit`` holds the JSON keys that were set by the user
    (from a file or the command line), so metadata read from the input (voxel size)
    only fills in what the user did not state.
    """

    px_um: float = 0.5
    dz_um: float = 1.5
    seed_merge_tol: float = 0.3
    Taccum: int = 1
    maxT: int = 0
    winXYZum: float = 100.0
    algorithm: str = "auto"
    stitch_threshold: float = 0.25
    ram_budget_gb: float = 0.0
    channels: tuple[ChannelParams, ...] = (ChannelParams(),)
    explicit: frozenset[str] = field(default_factory=frozenset, compare=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ access
    def channel(self, c: int) -> ChannelParams:
        """Parameters of 1-based channel ``c`` (channel 1's when it has none of its own)."""
        if c < 1:
            raise ParameterError(f"channel numbers start at 1, got {c}")
        return self.channels[c - 1] if c <= len(self.channels) else self.channels[0]

    def with_channels(self, n: int) -> Parameters:
        """Return a copy with exactly ``n`` channel entries (extra ones copy channel 1)."""
        chans = tuple(self.channel(c) for c in range(1, n + 1))
        return replace(self, channels=chans)

    def updated(self, values: Mapping[str, Any], *, strict: bool = False,
                source: str = "parameters") -> Parameters:
        """Return a copy with JSON-style ``values`` applied (validated, marked explicit)."""
        return _apply(self, values, strict=strict, source=source)

    @property
    def anisotropy(self) -> float:
        """Ratio ``dz_um / px_um`` (3.0 means z is sampled three times more coarsely)."""
        return self.dz_um / self.px_um

    @property
    def spacing_um(self) -> tuple[float, float, float]:
        """Voxel size as ``(z, y, x)`` in µm."""
        return (self.dz_um, self.px_um, self.px_um)

    def ram_budget_bytes(self) -> int:
        """Memory budget in bytes (half the available memory when ``ram_budget_gb`` is 0)."""
        if self.ram_budget_gb > 0:
            return int(self.ram_budget_gb * 2**30)
        import psutil

        return int(psutil.virtual_memory().available * 0.5)

    # ------------------------------------------------------------------ JSON
    def to_dict(self, *, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Flat JSON dict with the suite's key names (and a ``provenance`` block)."""
        out: dict[str, Any] = {s.key: getattr(self, s.attr) for s in GLOBAL_SPECS}
        for c, ch in enumerate(self.channels, start=1):
            for s in CHANNEL_SPECS:
                out[s.key_for(c)] = getattr(ch, s.attr)
        prov = dict(self.provenance if provenance is None else provenance)
        if prov:
            out["provenance"] = prov
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, strict: bool = False,
                  source: str = "parameters") -> Parameters:
        """Build parameters from a JSON dict, validating every value."""
        if not isinstance(values, Mapping):
            raise ParameterError(f"{source}: expected a JSON object of parameters")
        return _apply(cls(), values, strict=strict, source=source)

    def save(self, path: str | Path, *, provenance: Mapping[str, Any] | None = None) -> Path:
        """Write ``parameters.json`` (atomically: ``.partial`` then rename)."""
        from .io.atomic import atomic_write_text

        text = json.dumps(self.to_dict(provenance=provenance), indent=2, ensure_ascii=False)
        return atomic_write_text(Path(path), text + "\n")


def load_parameters(path: str | Path, *, strict: bool = False) -> Parameters:
    """Load ``parameters.json``.

    Parameters
    ----------
    path : str or Path
        JSON file with the suite's key names.
    strict : bool
        Raise on keys this version does not know instead of warning.

    Raises
    ------
    ParameterError
        When the file is missing, is not JSON, or holds a bad value.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParameterError(f"{p}: parameter file not found") from None
    except OSError as e:
        raise ParameterError(f"{p}: cannot read parameter file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ParameterError(f"{p}: not a text (UTF-8 JSON) parameter file") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParameterError(f"{p}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return Parameters.from_dict(values, strict=strict, source=str(p))


def _apply(base: Parameters, values: Mapping[str, Any], *, strict: bool,
           source: str) -> Parameters:
    glob: dict[str, Any] = {}
    chans: dict[int, dict[str, Any]] = {}
    unknown: list[str] = []
    explicit = set(base.explicit)
    provenance = base.provenance
    for key, value in values.items():
        if key in META_KEYS:
            if key == "provenance" and isinstance(value, Mapping):
                provenance = dict(value)
            continue
        spec = _GLOBAL_BY_KEY.get(key)
        if spec is not None:
            glob[spec.attr] = _checked(spec, value, key, source)
            explicit.add(key)
            continue
        for rx, cspec in _CHANNEL_KEY_RES:
            m = rx.match(key)
            if m:
                c = int(m.group(1))
                if c < 1:
                    raise ParameterError(f"{source}: {key!r}: channel numbers start at 1")
                chans.setdefault(c, {})[cspec.attr] = _checked(cspec, value, key, source)
                explicit.add(key)
                break
        else:
            unknown.append(key)
    if unknown:
        msg = f"{source}: unknown parameter(s) {', '.join(map(repr, sorted(unknown)))}"
        if strict:
            raise ParameterError(msg + " (not allowed with --strict)")
        warnings.warn(msg + " ignored", UserWarning, stacklevel=3)
    n = max([len(base.channels), *chans.keys()])
    channel_list = []
    for c in range(1, n + 1):
        # channels without values of their own start from channel 1's
        start = base.channel(c) if c <= len(base.channels) else _merged(base.channel(1),
                                                                         chans.get(1, {}))
        channel_list.append(_merged(start, chans.get(c, {})))
    new = replace(base, **glob, channels=tuple(channel_list), explicit=frozenset(explicit),
                  provenance=provenance)
    _check_consistency(new, source)
    return new


def _checked(spec: ParamSpec, value: Any, key: str, source: str) -> Any:
    """``spec.check`` with the parameter file (or ``--set``) named in the message."""
    try:
        return spec.check(value, key)
    except ParameterError as e:
        if source == "parameters":  # no file behind the values
            raise
        raise ParameterError(f"{source}: {e}") from None


def _merged(ch: ChannelParams, values: Mapping[str, Any]) -> ChannelParams:
    return replace(ch, **values) if values else ch


def _check_consistency(p: Parameters, source: str) -> None:
    for c, ch in enumerate(p.channels, start=1):
        if ch.maxSize_um < ch.minDist_um:
            raise ParameterError(
                f"{source}: 'ch{c}_maxSize_um' ({ch.maxSize_um:g} µm) must be >= "
                f"'ch{c}_minDist_um' ({ch.minDist_um:g} µm)"
            )


def parameter_table(n_channels: int = 1) -> list[tuple[str, str, str, Any]]:
    """Rows ``(key, unit, help, default)`` for every parameter (docs, CLI, napari widget)."""
    d = Parameters().with_channels(n_channels)
    rows = [(s.key, s.unit, s.help, getattr(d, s.attr)) for s in GLOBAL_SPECS]
    for c in range(1, n_channels + 1):
        rows += [(s.key_for(c), s.unit, s.help, getattr(d.channel(c), s.attr))
                 for s in CHANNEL_SPECS]
    return rows


def spec_for(key: str) -> ParamSpec:
    """Return the :class:`ParamSpec` of a JSON key (global or per-channel)."""
    if key in _GLOBAL_BY_KEY:
        return _GLOBAL_BY_KEY[key]
    for rx, spec in _CHANNEL_KEY_RES:
        if rx.match(key):
            return spec
    raise ParameterError(f"unknown parameter {key!r}")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings from the command line (values as JSON when they parse)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        k = k.strip()
        spec_for(k)  # unknown keys on the command line are always an error
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


__all__ = [
    "ALGORITHMS",
    "CHANNEL_SPECS",
    "GLOBAL_SPECS",
    "ChannelParams",
    "ParamSpec",
    "Parameters",
    "load_parameters",
    "parameter_table",
    "parse_overrides",
    "spec_for",
]

