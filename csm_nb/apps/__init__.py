"""What users run: the command line (cli), the Gradio demo (demo) and the notebook runner.

USER_ERRORS are the failures a user can act on (bad input, missing weights or files, a full
GPU): the apps show their message and nothing else. Anything else is a bug and keeps its
traceback.
"""

from torch import OutOfMemoryError

from ..audio.mimi import MimiUnavailable

USER_ERRORS = (ValueError, TypeError, OSError, MimiUnavailable, OutOfMemoryError)
