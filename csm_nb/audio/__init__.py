"""Sound: Mimi (the codec CSM speaks in) and its weights, a toy codec, audio files and
signals, and how close two sounds are."""
