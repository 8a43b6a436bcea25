"""Data shipped inside the package (clips, datasets): found through the package, so a wheel
installed anywhere (Colab, a venv, a temporary folder) has it. `README.md` says what each
file is, how it was made and under which licence."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The shipped file or folder `name` (e.g. "speech.wav", "two_voices")."""
    found = FOLDER / name
    if not found.exists():
        shipped = sorted(p.name for p in FOLDER.iterdir()
                         if not p.name.startswith(("_", ".")) and p.suffix != ".py")
        raise FileNotFoundError(f"csm_nb ships no data named {name!r}; it has: "
                                f"{', '.join(shipped)}. A broken install? Reinstall csm_nb.")
    return found
