"""Notebook 01, section 5: residual vector quantisation (RVQ), by hand and in code.

A part of the `codec` lesson (which re-exports it): the 2-D picture of RVQ, the reference
encoder and decoder, the three "your turn" checkers (codes by hand, write the encoder, write
the decoder) and the picture of RVQ refining the toy codec's frame vectors of real speech.

In the notation of the notebook: x is one vector, C_k the codebook of level k (N entries of
D numbers), c_k the code level k picks, r_k what is left for level k (r_0 = x).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .common import Solutions, new_figure, stuck, to_numpy, unanswered, verdict

SOLUTIONS = Solutions()

# One colour per RVQ level in plot_rvq_2d (a fifth level reuses the first).
_LEVEL_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]


def untouched(fn) -> bool:
    """True for a function whose body is still the notebook's `...` placeholder: it reads no
    name and sets no local, which any attempt at the exercise does."""
    code = getattr(fn, "__code__", None)
    return (code is not None and not code.co_names
            and code.co_varnames == code.co_varnames[:code.co_argcount])


# ------------------------------------------------------------------- the references

def rvq_encode_reference(x, codebooks) -> list[int]:
    """Residual VQ: at each level take the entry nearest to what is left, subtract it."""
    residual, codes = np.asarray(x, dtype=float), []
    for book in codebooks:
        book = np.asarray(book, dtype=float)
        codes.append(int(np.argmin(((book - residual) ** 2).sum(axis=1))))
        residual = residual - book[codes[-1]]
    return codes


def rvq_decode_reference(codes, codebooks, n: int) -> np.ndarray:
    """What the first n levels of `codes` stand for: the sum of their chosen entries."""
    books = [np.asarray(b, dtype=float) for b in codebooks]
    out = np.zeros(books[0].shape[1])
    for book, code in zip(books[:n], list(codes)[:n]):
        out = out + book[int(code)]
    return out


# ------------------------------------------------------------------- RVQ in 2-D, by hand

def rvq_toy_problem() -> dict:
    """A 2-D vector and two 4-entry codebooks for doing RVQ by hand."""
    return {
        "x": np.array([2.3, 0.9]),
        "codebooks": [np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]),
                      np.array([[0.5, 0.0], [0.0, 0.5], [-0.5, 0.0], [0.0, -0.5]])],
    }


def plot_rvq_2d(x, codebooks, codes=None) -> Figure:
    """Residual VQ on a 2-D toy: level 0 picks the entry nearest x, level 1 the entry nearest
    what is left (the residual), and so on. Without `codes`, the levels choose as RVQ does."""
    x = to_numpy(x).astype(float)
    books = [to_numpy(b).astype(float) for b in codebooks]
    if codes is None:
        codes = rvq_encode_reference(x, books)
    fig, axes = new_figure(1, len(books), width=4 * len(books), height=4)
    approx = np.zeros_like(x)
    for level, (ax, book, code) in enumerate(zip(axes[0], books, codes)):
        target = x - approx                             # what this level must explain
        ax.scatter(*book.T, s=30, color=_LEVEL_COLOURS[level % len(_LEVEL_COLOURS)],
                   label=f"codebook {level}")
        for i, c in enumerate(book):
            ax.annotate(str(i), c, textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.scatter(*target, marker="x", s=80, color="k",
                   label=f"r{level} (residual)" if level else "x = r0")
        ax.plot(*zip(target, book[code]), "k:", lw=1)     # the error this level leaves
        ax.set_title(f"level {level}: nearest = {code}, left over "
                     f"{np.linalg.norm(target - book[code]):.2f}", fontsize=10)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.8)
        ax.axvline(0, color="0.85", lw=0.8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
        approx = approx + book[code]
    return fig


def _code_list(name: str, answer) -> list[int]:
    try:
        codes = [int(c) for c in np.asarray(answer).reshape(-1)]
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a list of integer codes like [1, 0], got "
                        f"{type(answer).__name__} {answer!r}") from None
    return codes


def check_rvq_codes(answer) -> bool:
    """The two RVQ codes of rvq_toy_problem()'s x, e.g. [c0, c1]."""
    if unanswered(answer):
        return None
    codes = _code_list("codes", answer)
    toy = rvq_toy_problem()
    right = rvq_encode_reference(toy["x"], toy["codebooks"])
    if codes == right:
        approx = sum(b[c] for b, c in zip(toy["codebooks"], right))
        return verdict(True, f"codes {right}: x = {toy['x'].tolist()} is approximated by "
                       f"{approx.tolist()}; level 1 refined what level 0 left over.", "")
    naive = [int(np.argmin(((np.asarray(b) - toy["x"]) ** 2).sum(axis=1)))
             for b in toy["codebooks"]]
    if len(codes) != len(right):
        hint = f"give one code per codebook ({len(right)} in all)."
    elif codes == [c + 1 for c in right]:
        hint = "codes count from 0: the first entry of a codebook is code 0."
    elif codes[0] != right[0]:
        hint = "level 0: which entry of codebook 0 is closest to x?"
    elif codes == naive:
        hint = "level 1 must quantise the residual r1 = x - C0[c0], not x itself."
    else:
        hint = "level 1: compute the residual r1 = x - C0[c0], then its nearest entry."
    return verdict(False, "", f"{codes}: {hint}" + stuck("rvq_codes"))


SOLUTIONS["rvq_codes"] = (
    "x = (2.3, 0.9). Level 0: distances to (0,0), (2,0), (0,2), (2,2) -> nearest is (2,0),\n"
    "code 1. Residual = (0.3, 0.9). Level 1: nearest of (0.5,0), (0,0.5), (-0.5,0), (0,-0.5)\n"
    "is (0,0.5), code 1. Codes [1, 1]; approximation (2.0, 0.5), error (0.3, 0.4).")
SOLUTIONS.hints["rvq_codes"] = (
    "Level 0: compute the distance from x to each of the 4 entries of codebook 0 and take the\n"
    "closest. Then subtract that entry from x, and do the same with codebook 1 on what is left.")
SOLUTIONS.answers["rvq_codes"] = (
    "toy_problem = lesson.rvq_toy_problem()\n"
    "print(\"x =\", toy_problem[\"x\"])\n"
    "for level, book in enumerate(toy_problem[\"codebooks\"]):\n"
    "    print(f\"codebook {level}:\", book.tolist())\n"
    "\n"
    "my_codes = [1, 1]   # [code at level 0, code at level 1]\n"
    "lesson.check_rvq_codes(my_codes)")


# ------------------------------------------------------------------- write the encoder

_TRIALS = 5                    # random problems, of 2, 3, ... dimensions
_BOOK_SIZE = 8                 # entries per codebook
_LEVELS = 3


def _problems(levels: int = _LEVELS):
    """Seeded random RVQ problems: (x [D], K codebooks [N, D]), D = 2, 3, ... Each level's
    entries are half the scale of the last: what is left shrinks level by level."""
    rng = np.random.default_rng(0)
    for trial in range(_TRIALS):
        dim = 2 + trial
        books = [rng.normal(size=(_BOOK_SIZE, dim)) * 0.5 ** level for level in range(levels)]
        yield rng.normal(size=dim), books


def check_rvq_encoder(fn) -> bool:
    """Your `rvq_encode(x, codebooks) -> list of K codes`, tried on random problems."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"rvq_encode: expected a function, got {type(fn).__name__}")
    for x, books in _problems():
        right = rvq_encode_reference(x, books)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            result = fn(x.copy(), [b.copy() for b in books])
            if result is None and untouched(fn):
                unanswered(None, fix="write the function's body (it is still `...`) and run "
                                 "the cell")
                return None
            if result is None:
                return verdict(False, "", "your function returned None; return the list of "
                               "codes, one per codebook." + stuck("rvq_encoder"))
            got = _code_list("rvq_encode(...)", result)
        except Exception as err:
            return verdict(False, "", f"your function raised {type(err).__name__}: {err}"
                           + stuck("rvq_encoder"))
        naive = [int(np.argmin(((b - x) ** 2).sum(axis=1))) for b in books]
        if got == right:
            continue
        where = (f"on a {x.size}-D problem with {len(books)} levels you gave {got}, RVQ "
                 f"gives {right}.")
        if len(got) != len(right):
            hint = "return one code per codebook."
        elif got == naive:
            hint = ("every level quantised x itself: subtract each chosen entry, so the next "
                    "level quantises what is left (the residual).")
        elif got[0] != right[0]:
            hint = "level 0 should pick the entry nearest x (smallest squared distance)."
        else:
            hint = "subtract each chosen entry before the next level."
        return verdict(False, "", f"{where} {hint}" + stuck("rvq_encoder"))
    return verdict(True, f"your encoder matches RVQ on {_TRIALS} random problems.", "")


SOLUTIONS["rvq_encoder"] = (
    "def rvq_encode(x, codebooks):\n"
    "    residual, codes = np.asarray(x, dtype=float), []\n"
    "    for book in codebooks:\n"
    "        code = int(((book - residual) ** 2).sum(axis=1).argmin())   # nearest entry\n"
    "        codes.append(code)\n"
    "        residual = residual - book[code]                            # what is left\n"
    "    return codes")
SOLUTIONS.hints["rvq_encoder"] = (
    "Keep a `residual`, starting at x. For each codebook: the squared distance to every entry\n"
    "is ((book - residual) ** 2).sum(axis=1); its argmin is the code; append it, then\n"
    "subtract book[code] from the residual before the next level.")
SOLUTIONS.answers["rvq_encoder"] = (
    "def rvq_encode(x, codebooks):\n"
    "    \"\"\"x: one vector [D]; codebooks: K arrays [N, D]. Returns K codes (ints).\"\"\"\n"
    "    residual, codes = np.asarray(x, dtype=float), []\n"
    "    for book in codebooks:\n"
    "        code = int(((book - residual) ** 2).sum(axis=1).argmin())   # nearest entry\n"
    "        codes.append(code)\n"
    "        residual = residual - book[code]                            # what is left\n"
    "    return codes\n"
    "\n"
    "\n"
    "encoder_ok = lesson.check_rvq_encoder(rvq_encode)")


# ------------------------------------------------------------------- write the decoder

def _decoder_mistake(got: np.ndarray, codes, books, n: int) -> str:
    """Name the likely mistake by comparing with the usual wrong decoders."""
    K = len(books)
    suspects = {
        "you summed every level; decode from the first n only (levels 0..n-1).":
            rvq_decode_reference(codes, books, K),
        "one level too many: the first n levels are 0..n-1 (range(n)).":
            rvq_decode_reference(codes, books, min(n + 1, K)),
        "that is level n-1's entry alone; add up the entries of every level below n.":
            np.asarray(books[n - 1], dtype=float)[codes[n - 1]],
    }
    for hint, wrong in suspects.items():
        if got.shape == wrong.shape and np.allclose(got, wrong) and not np.allclose(
                wrong, rvq_decode_reference(codes, books, n)):
            return hint
    return "add codebooks[k][codes[k]] for k = 0 .. n-1."


def check_rvq_decoder(fn) -> bool:
    """Your `rvq_decode(codes, codebooks, n) -> vector [D]`, the sum of the entries the first
    n codes pick, tried on random problems for every n."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"rvq_decode: expected a function, got {type(fn).__name__}")
    levels = _LEVELS + 1
    for x, books in _problems(levels):
        codes = rvq_encode_reference(x, books)
        for n in range(1, levels + 1):
            right = rvq_decode_reference(codes, books, n)
            where = f"on a {x.size}-D problem, codes {codes}, n={n}:"
            try:   # never crash the cell on the student's code
                result = fn(list(codes), [b.copy() for b in books], n)
                if result is None and untouched(fn):
                    unanswered(None, fix="write the function's body (it is still `...`) and run "
                               "the cell")
                    return None
                if result is None:
                    return verdict(False, "", f"{where} your function returned None; return "
                                   "the decoded vector." + stuck("rvq_decoder"))
                got = np.asarray(result, dtype=float)
            except Exception as err:
                return verdict(False, "", f"{where} your function raised "
                               f"{type(err).__name__}: {err}" + stuck("rvq_decoder"))
            if got.shape != right.shape:
                return verdict(False, "", f"{where} expected one vector of {x.size} numbers, "
                               f"got shape {got.shape}: sum the entries into one vector."
                               + stuck("rvq_decoder"))
            if not np.allclose(got, right):
                return verdict(False, "", f"{where} {_decoder_mistake(got, codes, books, n)}"
                               + stuck("rvq_decoder"))
    return verdict(True, f"your decoder matches RVQ on {_TRIALS} random problems, for every "
                   f"n from 1 to {levels}.", "")


SOLUTIONS["rvq_decoder"] = (
    "def rvq_decode(codes, codebooks, n):\n"
    "    out = np.zeros(len(codebooks[0][0]))\n"
    "    for k in range(n):                         # levels 0 .. n-1\n"
    "        out = out + codebooks[k][codes[k]]\n"
    "    return out\n"
    "(or: sum(book[c] for book, c in zip(codebooks[:n], codes[:n])))")
SOLUTIONS.hints["rvq_decoder"] = (
    "Decoding is a sum: start from a vector of zeros (D numbers) and, for each level k below n,\n"
    "add the entry that level's code picks, codebooks[k][codes[k]].")
SOLUTIONS.answers["rvq_decoder"] = (
    "def rvq_decode(codes, codebooks, n):\n"
    "    \"\"\"codes: K ints; codebooks: K arrays [N, D]. Returns the vector [D] that the\n"
    "    first n levels stand for.\"\"\"\n"
    "    out = np.zeros(len(codebooks[0][0]))\n"
    "    for k in range(n):                         # levels 0 .. n-1\n"
    "        out = out + codebooks[k][codes[k]]\n"
    "    return out\n"
    "\n"
    "\n"
    "decoder_ok = lesson.check_rvq_decoder(rvq_decode)")


# ------------------------------------------------------------------- RVQ on real speech

def plot_frame_vectors(original, approximations: dict, n_mels: int,
                       frame_rate: float) -> Figure:
    """The toy codec's frame vectors as log-mel images: the original [F, D] and what the
    first n levels give, {n: [F, D]}. A vector is `hops` spectra of `n_mels` bands in a row,
    so [F, hops x mels] unfolds to [mels, F x hops]: time left to right, one column per hop."""
    panels = {"the frame vectors (what RVQ encodes)": original} | {
        f"decoded from the first {n} level{'s' if n > 1 else ''}": v
        for n, v in sorted(approximations.items())}
    images = {}
    for title, v in panels.items():
        v = to_numpy(v).astype(float)
        images[title] = v.reshape(v.shape[0] * (v.shape[1] // n_mels), n_mels).T
    top = max(im.max() for im in images.values())
    seconds = to_numpy(original).shape[0] / frame_rate
    ncols = 2
    nrows = -(-len(images) // ncols)
    fig, axes = new_figure(nrows, ncols, width=11, height=2.4 * nrows, sharex=True,
                           sharey=True)
    for ax, (title, im) in zip(axes.flat, images.items()):
        shown = ax.imshow(im, origin="lower", aspect="auto", cmap="magma", vmin=top - 80,
                          vmax=top, extent=[0, seconds, 0, n_mels])
        ax.set_title(title, fontsize=10)
    for ax in list(axes.flat)[len(images):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mel band")
    fig.colorbar(shown, ax=axes, label="dB", shrink=0.8)
    return fig
