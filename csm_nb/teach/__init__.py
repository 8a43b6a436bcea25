"""Teaching aids for the notebooks: one lesson module per notebook, plus what they share.

Each notebook imports its lesson once (`from csm_nb.teach import codec as lesson`) and calls
`lesson.<name>` for its figures, widgets and "your turn" checkers:

    codec          01  Mimi: how CSM turns sound into codes
    backbone       02  Inside CSM: one frame (gathers backbone_rows, _sampling, _generation)
    conversation   03  Segments, speakers and context
    fast           04  Where a frame's time goes
    training       05  Train a tiny CSM

`common` holds what several lessons use (figure helpers, players, the checkers' verdicts
and solutions); each lesson re-exports the common pieces its notebook calls.
"""

LESSONS = ("codec", "backbone", "conversation", "fast", "training")


def solutions() -> dict:
    """{lesson name: its Solutions}: what fill_answers needs to fill every notebook."""
    from . import backbone, codec, conversation, fast, training
    lessons = {"codec": codec, "backbone": backbone, "conversation": conversation,
               "fast": fast, "training": training}
    return {name: lessons[name].SOLUTIONS for name in LESSONS}
