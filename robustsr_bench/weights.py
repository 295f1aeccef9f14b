"""Pretrained files: the manifest, where each lies in the cache, checking, fetching, refusing early.

Compute nodes often have no internet, so nothing is ever downloaded inside a run. The cache is the
one torchvision, lpips and pyiqa already read, so a file fetched once serves all of them:

- torchvision backbones (AlexNet for LPIPS, VGG19 for the perceptual loss) in
  ``$TORCH_HOME/hub/checkpoints/<file>``, the path ``torch.hub.load_state_dict_from_url`` looks
  at before it would download (it never checks the hash of a file already there);
- pyiqa's NIQE/BRISQUE parameters in ``$TORCH_HOME/hub/pyiqa/<file>``, the folder pyiqa's
  ``load_file_from_url`` uses (we pass the path explicitly, so pyiqa's import-time copy of
  ``$TORCH_HOME`` does not matter);
- LPIPS's linear layers, which ship inside the ``lpips`` wheel (checked, never fetched);
- the model zoo's published SR checkpoints (``configs/zoo.yaml``: ``evaluate NAME``, ``--init``)
  in ``$TORCH_HOME/hub/robustsr_bench/`` (our choice: a folder of our own); they are fetched by
  name only, and their entries carry the whole published sha256 where one is known.

Source facts: torchvision's file names embed the first 8 hex digits of the file's SHA-256, and its
model docs give the sizes; LPIPS's ``alex.pth`` (lpips 0.1.4) hashes to ``df73285e...``, the prefix
pyiqa's copy of it is named after; pyiqa and Real-ESRGAN publish no hash, so those files are verified by
structure only. ``check`` says, per file: ``ok`` (loads with the expected structure and its hash
matches), ``unverified`` (loads, no published hash to compare), ``hash mismatch`` (loads, but is
not the published file: numbers are not comparable to papers), ``corrupt`` (truncated, unloadable
or wrong structure) or ``missing``. ``fetch`` writes to a temporary file next to the target,
verifies it and renames it into place, so an interrupted fetch never leaves a half file behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, MissingWeightsError, UserError
from .files import current_umask
from .files import file_sha256 as sha256
from .metric_specs import SPECS
from .zoo import CACHE_SUBDIR, load_zoo

log = logging.getLogger("robustsr_bench")

FETCH_TIMEOUT_S = 30.0  # our choice: a dead connection fails within half a minute
_CHUNK = 1 << 20
OK, UNVERIFIED, MISMATCH, CORRUPT, MISSING = "ok", "unverified", "hash mismatch", "corrupt", "missing"
_USABLE = (OK, UNVERIFIED, MISMATCH)


class WeightsFetchError(UserError):
    """A file could not be fetched or copied, or what arrived failed verification."""


# --------------------------------------------------------------------------------- structure


def _torch_load(path: Path, trusted_pickle: bool = False) -> Any:
    """``torch.load`` on CPU; memory-mapped where the file format allows (fast for big files)."""
    import torch  # here, not at the top: listing and checking the cache never need torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted_pickle, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # old (pre-zip) files cannot be mapped; anything else is real
            raise
    return torch.load(path, map_location="cpu", weights_only=not trusted_pickle)


def _expect_shapes(state: Any, expected: dict[str, tuple[int, ...]]) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    for key, shape in expected.items():
        if key not in state:
            raise ValueError(f"lacks key {key!r}")
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, expected {shape}")


def _torchvision_shapes(arch: str, prefix: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of torchvision's ``arch`` (built on the meta device: no memory, no init)."""
    import torch
    import torchvision.models

    with torch.device("meta"):
        net = getattr(torchvision.models, arch)(weights=None)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith(prefix)}


def _torchvision_validator(arch: str, prefix: str) -> Callable[[Path], None]:
    """Every ``prefix*`` tensor of torchvision's ``arch`` must be there with its shape.

    AlexNet needs the classifier too (lpips loads the full state dict strictly); the perceptual
    loss reads only VGG19's ``features.*``.
    """
    return lambda path: _expect_shapes(_torch_load(path), _torchvision_shapes(arch, prefix))


LPIPS_ALEX_CHANNELS = (64, 192, 384, 256, 256)


def _lpips_linear(path: Path) -> None:
    _expect_shapes(_torch_load(path), {f"lin{i}.model.1.weight": (1, c, 1, 1)
                                       for i, c in enumerate(LPIPS_ALEX_CHANNELS)})


NIQE_FEATURES = 36
BRISQUE_FEATURES = 36


def _niqe_mat(path: Path) -> None:
    """pyiqa reads ``mu_prisparam`` (36 values) and ``cov_prisparam`` (36x36)."""
    import numpy as np
    import scipy.io

    params = scipy.io.loadmat(path)
    for key, size in (("mu_prisparam", NIQE_FEATURES), ("cov_prisparam", NIQE_FEATURES ** 2)):
        if key not in params or np.size(params[key]) != size:
            raise ValueError(f"{key} missing or not of {size} values")


def _brisque_svm(path: Path) -> None:
    """pyiqa reads ``sv_coef, sv = torch.load(...)``: (n,) coefficients and (n, 36) vectors."""
    obj = _torch_load(path, trusted_pickle=True)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError("expected a pair (sv_coef, sv)")
    coef, sv = obj
    if coef.ndim != 1 or sv.ndim != 2 or sv.shape != (coef.shape[0], BRISQUE_FEATURES):
        raise ValueError(f"sv_coef {tuple(coef.shape)} and sv {tuple(sv.shape)} do not fit "
                         f"(expected (n,) and (n, {BRISQUE_FEATURES}))")


def _zoo_checkpoint(architecture: str, file_name: str) -> Callable[[Path], None]:
    """A model-zoo file must load (weights-only) as spandrel's ``architecture``."""
    def validate(path: Path) -> None:
        import spandrel
        import torch

        # weights-only: a zoo file never runs code (validated under a temporary name, so
        # the loader is chosen by the entry's declared file name, not by ``path``'s suffix)
        if file_name.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        found = str(spandrel.ModelLoader().load_from_state_dict(state).architecture.id)
        if found != architecture:
            raise ValueError(f"loads as {found}, expected {architecture}")
    return validate


# --------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: where it must lie, where it comes from, how to tell it is intact.

    ``package`` set means the file ships inside that pip package (``subdir`` is relative to the
    package folder) and is never fetched.
    """

    name: str
    filename: str
    subdir: str
    url: str
    used_by: str
    validate: Callable[[Path], None] = field(repr=False)
    size: int | None = None
    sha256_prefix: str | None = None
    package: str = ""

    @property
    def path(self) -> Path:
        if self.package:
            return _package_dir(self.package) / self.subdir / self.filename
        return hub_dir() / self.subdir / self.filename

    @property
    def fetchable(self) -> bool:
        return not self.package


_TV = "https://download.pytorch.org/models/"
_PYIQA = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"

MANIFEST: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("vgg19", "vgg19-dcbb9e9d.pth", "checkpoints", _TV + "vgg19-dcbb9e9d.pth",
               "perceptual loss (GAN profile, RSR/AND attack losses)",
               _torchvision_validator("vgg19", "features."), 574673361, "dcbb9e9d"),
    WeightFile("alexnet", "alexnet-owt-7be5be79.pth", "checkpoints",
               _TV + "alexnet-owt-7be5be79.pth", "lpips_alex (AlexNet backbone)",
               _torchvision_validator("alexnet", ""), 244408911, "7be5be79"),
    WeightFile("lpips_alex_lin", "alex.pth", "weights/v0.1",
               "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/"
               "alex.pth", "lpips_alex (linear layers, v0.1)", _lpips_linear, 6009, "df73285e",
               package="lpips"),
    WeightFile("niqe", "niqe_modelparameters.mat", "pyiqa", _PYIQA + "niqe_modelparameters.mat",
               "niqe (pyiqa, pristine-model Gaussian)", _niqe_mat),
    WeightFile("brisque", "brisque_svm_weights.pth", "pyiqa", _PYIQA + "brisque_svm_weights.pth",
               "brisque (pyiqa, SVR)", _brisque_svm),
)}


def hub_dir() -> Path:
    """``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), as torch.hub computes it now.

    Once torch.hub is imported it answers (a ``torch.hub.set_dir`` is honoured); before, the
    same rule is read from the environment, so ``list zoo`` and ``weights check`` start without
    importing torch (2-4 s)."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir())
    return _hub_dir_from_env()


def _hub_dir_from_env() -> Path:
    """torch.hub's documented default: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``,
    else ``~/.cache/torch/hub``."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def _package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return Path(f"<{package} not installed>")
    return Path(spec.origin).parent


def zoo_files() -> dict[str, WeightFile]:
    """The published SR checkpoints of ``configs/zoo.yaml`` as cache entries (fetched by name
    only: a bare ``weights fetch`` gets the metric and loss files, not hundreds of MB of
    models)."""
    return {e.name: WeightFile(e.name, e.file, CACHE_SUBDIR, e.url,
                               f"evaluate {e.name} ({e.architecture} x{e.scale}, {e.licence})",
                               _zoo_checkpoint(e.architecture, e.file), e.size, e.sha256)
            for e in load_zoo().values()}


def manifest() -> dict[str, WeightFile]:
    """:data:`MANIFEST` plus the model zoo."""
    return {**MANIFEST, **zoo_files()}


def weight_file(name: str) -> WeightFile:
    files = manifest()
    if name not in files:
        raise ConfigError(f"unknown weight file '{name}'; valid: {', '.join(sorted(files))}")
    return files[name]


def fetch_command(names: Iterable[str]) -> str:
    return "python -m robustsr_bench weights fetch " + " ".join(names)


def require(names: Iterable[str]) -> dict[str, Path]:
    """Paths of the named files; one error listing every missing path and the fetch command.

    Only existence is checked (instant); a present but broken file fails when it is loaded, with
    its own one-line error. Runs call this before anything else, so they never download.
    """
    files = [weight_file(n) for n in dict.fromkeys(names)]
    missing = [w for w in files if not w.path.is_file()]
    if missing:
        paths = ", ".join(str(w.path) for w in missing)
        cmd = fetch_command(w.name for w in missing)
        raise MissingWeightsError(f"missing pretrained file(s): {paths}; run `{cmd}` where there "
                                  f"is internet (or with --from DIR), or copy the file(s) to that "
                                  f"path")
    return {w.name: w.path for w in files}


def resolve(names: Iterable[str]) -> list[WeightFile]:
    """Manifest entries for file names and/or metric names (a metric means all its files);
    nothing means the whole manifest."""
    names = list(names)
    files = manifest()
    if not names:
        return list(files.values())
    out: dict[str, WeightFile] = {}
    for name in names:
        if name in files:
            out[name] = files[name]
        elif name in SPECS:
            out.update((n, MANIFEST[n]) for n in SPECS[name].weights)
        else:
            raise ConfigError(f"unknown weight file or metric '{name}'; valid files: "
                              f"{', '.join(files)}; metrics: {', '.join(SPECS)}")
    return list(out.values())


# --------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class FileStatus:
    """What ``check`` found for one file."""

    file: WeightFile
    status: str
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.status in _USABLE


def inspect(w: WeightFile, path: Path | None = None, verify_hash: bool = True) -> FileStatus:
    """Status of ``w`` at ``path`` (default: its cache path): structure first, then the hash
    (``verify_hash=False`` skips hashing and reports ``unverified``: loading a model already
    reads the file, hashing it again on every run would double that)."""
    path = path or w.path
    if not path.is_file():
        return FileStatus(w, MISSING, str(path))
    try:
        w.validate(path)
    except Exception as exc:  # noqa: BLE001 - loaders raise many types for a broken file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return FileStatus(w, CORRUPT, f"{path}: {reason}")
    size = path.stat().st_size
    if not w.sha256_prefix or not verify_hash:
        return FileStatus(w, UNVERIFIED, f"{path} ({size} bytes; no published hash)")
    digest = sha256(path)
    if digest.startswith(w.sha256_prefix):
        return FileStatus(w, OK, str(path))
    full = len(w.sha256_prefix) == len(digest)  # a whole published hash: show both whole
    found, published = (digest, w.sha256_prefix) if full else (digest[:8] + "...",
                                                                 w.sha256_prefix + "...")
    return FileStatus(w, MISMATCH, f"{path}: sha256 {found}, published {published} "
                                   f"({size} bytes, published {w.size})")


def check(names: Iterable[str] = ()) -> list[FileStatus]:
    return [inspect(w) for w in resolve(names)]


def status_table(statuses: Iterable[FileStatus]) -> str:
    from tabulate import tabulate

    rows = [(s.file.name, s.status, s.file.used_by, s.detail) for s in statuses]
    return tabulate(rows, headers=["file", "status", "used by", "path / detail"], tablefmt="plain")


# --------------------------------------------------------------------------------- fetch


def _download(url: str, dest: Path, expected_size: int | None, progress: bool) -> None:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp, open(dest, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0) or expected_size
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.split(".part")[0],
                      disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    fh.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsFetchError(f"cannot download {url} ({reason}); on a machine without "
                                f"internet, fetch there and use `weights fetch --from DIR`") from exc


def _find_in(source: Path, w: WeightFile) -> Path | None:
    """The file in a folder the user brought: flat, or laid out like the cache or $TORCH_HOME."""
    for candidate in (source / w.filename, source / w.subdir / w.filename,
                      source / "hub" / w.subdir / w.filename):
        if candidate.is_file():
            return candidate
    return None


def _install(w: WeightFile, obtain: Callable[[Path], None]) -> FileStatus:
    """``obtain`` writes a temp file next to the target; it is verified, then renamed in place."""
    w.path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=w.filename + ".", suffix=".part", dir=w.path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it 0600 whatever the umask
    os.close(fd)
    tmp = Path(name)
    try:
        obtain(tmp)
        status = inspect(w, tmp)
        if status.status in (CORRUPT, MISMATCH):
            raise WeightsFetchError(f"{w.name}: what arrived is not the published file "
                                    f"({status.status}: {status.detail}); nothing was installed")
        os.replace(tmp, w.path)
    finally:
        tmp.unlink(missing_ok=True)
    return inspect(w)


def fetch(names: Iterable[str] = (), source: Path | None = None, progress: bool = True,
          force: bool = False) -> list[FileStatus]:
    """Download (or copy from ``source``) every named file that is not already intact."""
    results = []
    for w in resolve(names) if names else MANIFEST.values():
        current = inspect(w)
        if not w.fetchable:
            log.info("%s: ships with the %s package (%s)", w.name, w.package, current.status)
            results.append(current)
            continue
        if current.status in (OK, UNVERIFIED) and not force:
            log.info("%s: already in the cache (%s)", w.name, current.status)
            results.append(current)
            continue
        if source is not None:
            found = _find_in(Path(source), w)
            if found is None:
                raise WeightsFetchError(f"{w.filename} not found in {source} (looked for "
                                        f"{w.filename}, {w.subdir}/{w.filename}, "
                                        f"hub/{w.subdir}/{w.filename})")
            results.append(_install(w, lambda tmp, f=found: shutil.copyfile(f, tmp)))
        elif "drive.google.com" in w.url:  # an HTML page, not the file, comes back
            raise WeightsFetchError(f"{w.name}: released on Google Drive, which cannot be fetched "
                                    f"by URL; download {w.url} by hand, then run `weights fetch "
                                    f"{w.name} --from DIR` (the sha256 is still checked)")
        else:
            results.append(_install(w, lambda tmp, w=w: _download(w.url, tmp, w.size, progress)))
        log.info("%s -> %s (%s)", w.name, w.path, results[-1].status)
        if results[-1].status == UNVERIFIED:  # no published hash: say what was installed
            log.info("%s: sha256 of the installed file %s", w.name, sha256(w.path))
    return results
