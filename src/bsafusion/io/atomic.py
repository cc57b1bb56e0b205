"""Write files atomically: to a temporary file beside the target, then rename.

:func:`atomic_write` writes one file; :class:`OutputGroup` writes several as one (every file
to a temporary name first, all renamed at the end), so a failure part-way (a full disk)
leaves none of them. :func:`check_out_dir` checks an output folder without creating it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bsafusion.errors import InputError, OutputError

__all__ = ["OutputGroup", "atomic_write", "check_out_dir", "refuse_overwrite", "temp_path"]

_MULTI_SUFFIXES = (".nii.gz",)
_FILE_MODE = 0o666  # what open() asks for: 0644 under the usual umask


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise :class:`InputError` naming ``path`` if it exists and ``overwrite`` is False."""
    if Path(path).is_dir():
        raise InputError(path, "is a folder; give a file name")
    if not overwrite and Path(path).exists():
        raise InputError(path, "exists (pass --overwrite to replace it)")


def temp_path(path: str | os.PathLike, tag: str = "partial") -> Path:
    """A hidden temporary name beside ``path`` that keeps its suffix (``.nii.gz`` too)."""
    path = Path(path)
    suffix = next((s for s in _MULTI_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{os.getpid()}.{tag}{suffix}")


def check_out_dir(out_dir: str | os.PathLike, where: object = "out") -> Path:
    """Check that ``out_dir`` is, or can become, a writable folder; create nothing.

    Raises:
        InputError: naming ``where`` for an empty name, else the folder: a file, a folder
            under a file, or a folder that cannot be written.
    """
    if not str(out_dir).strip():
        raise InputError(where, "is empty; give an output folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "is a file, not an output folder")
    existing = out
    while not existing.exists():
        if existing.is_symlink():
            raise InputError(out, f"{existing} is a broken symbolic link")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(out, f"cannot write the output folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(out, f"cannot write the output folder ({existing} is not writable)")
    return out


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary file keeps ``path``'s suffix (so format detection by suffix works) and is
    removed if ``writer`` raises, so a failed write never leaves a half-written output. The
    file gets the usual permissions (0666 less the umask), whatever the writer chose.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        OutputError: the writer failed with an ``OSError`` (disk full, permission...).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(tmp)
        os.chmod(tmp, _FILE_MODE & ~_umask())  # some writers (safetensors) create 0600 files
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError.from_os_error(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class OutputGroup:
    """Several outputs written as one: all or none.

    Use :meth:`path` for each target's temporary name and write the file there; leaving the
    ``with`` block renames every file into place, and an exception removes them (and the
    folders the group created). Renames within a folder need no space, so a full disk
    during the writes leaves nothing behind.

    Example:
        >>> with OutputGroup() as group:  # doctest: +SKIP
        ...     np.save(group.path(out / "flow" / "a.npy"), flow)
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []

    def path(self, target: str | os.PathLike) -> Path:
        """The temporary path to write ``target`` to (its folders are created)."""
        target = Path(target)
        missing = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError.from_os_error(target.parent, exc) from None
        self._made.extend(missing)
        tmp = temp_path(target, "staged")
        self._staged.append((tmp, target))
        return tmp

    def __enter__(self) -> OutputGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for tmp, target in self._staged:
                    os.replace(tmp, target)
                return
            except OSError as err:
                self._discard()
                raise OutputError.from_os_error(target, err) from None
        self._discard()
        names = {str(tmp): target for tmp, target in self._staged}
        if isinstance(exc, OutputError) and exc.where in names:  # name the output, not its tmp
            raise OutputError(names[exc.where], exc.problem, fatal=exc.fatal) from None
        if isinstance(exc, OSError):
            last = self._staged[-1][1] if self._staged else "output"
            where = names.get(str(exc.filename), exc.filename or last)
            raise OutputError.from_os_error(where, exc) from None

    def _discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        for folder in sorted(self._made, key=lambda p: -len(p.parts)):  # the empty ones we made
            try:
                folder.rmdir()
            except OSError:
                pass
