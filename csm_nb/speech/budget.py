"""The context budget: how the backbone's 2048 rows are spent, and trimming to fit.

The backbone sees at most `config.max_seq_len` rows in all: context rows + the new line's text
rows + the frames it may generate (`max_audio_length_ms / 80`). When they do not fit, the
oldest whole segments are dropped, with a warning (or an error with `strict=True`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field


class ContextTrimmed(UserWarning):
    """The context did not fit the model's window; the oldest segments were dropped."""


@dataclass(frozen=True)
class ContextBudget:
    """How the 2048 rows are spent: context segments, the new line's text, its frames."""

    segment_rows: tuple[int, ...]     # per context segment: text rows + frames + 1 EOS row
    segment_frames: tuple[int, ...]   # per context segment: Mimi frames of its audio
    text_rows: int                    # the line to speak: BOS + tokens of "[n]text" + EOS
    max_frames: int                   # frames allowed for the new audio: ms / 80
    max_seq_len: int                  # rows the backbone can see (config.max_seq_len)
    labels: tuple[str, ...] = field(default=())

    @property
    def context_rows(self) -> int:
        return sum(self.segment_rows)

    @property
    def total(self) -> int:
        return self.context_rows + self.text_rows + self.max_frames

    @property
    def fits(self) -> bool:
        return self.total <= self.max_seq_len

    @property
    def first_kept(self) -> int | None:
        """Index of the oldest segment kept when trimming (len = none kept); None: the new
        line alone does not fit."""
        room = self.max_seq_len - self.text_rows - self.max_frames
        for i in range(len(self.segment_rows) + 1):
            if sum(self.segment_rows[i:]) <= room:
                return i
        return None

    def __str__(self) -> str:
        verdict = "fits" if self.fits else f"over by {self.total - self.max_seq_len}"
        return (f"{len(self.segment_rows)} context segment(s): {self.context_rows} rows "
                f"{list(self.segment_rows)} + new line {self.text_rows} text rows + up to "
                f"{self.max_frames} frames = {self.total} of {self.max_seq_len} rows ({verdict})")

    def segments_to_drop(self, text: str, strict: bool = False) -> int:
        """How many of the oldest segments must go for the rest to fit (0 if all fit), with a
        ContextTrimmed warning naming them; strict=True raises instead of dropping any."""
        if self.fits:
            return 0
        keep = self.first_kept
        if keep is None:
            raise ValueError(
                f"text={text[:40]!r}... is too long even without context: its "
                f"{self.text_rows} text rows + {self.max_frames} frames exceed the "
                f"{self.max_seq_len} rows the model sees; shorten the text or lower "
                "max_audio_length_ms (each 80 ms costs a row)")
        if strict:
            raise ValueError(f"the context does not fit (strict=True): {self}. Lower "
                             "max_audio_length_ms (each 80 ms costs a row) or shorten "
                             "the context")
        warnings.warn(f"context trimmed to fit {self.max_seq_len} rows: dropped the oldest "
                      f"segment(s) {', '.join(self.labels[:keep])} "
                      f"({sum(self.segment_rows[:keep])} rows); {self}", ContextTrimmed,
                      stacklevel=3)
        return keep
