"""Retrieval experiments on labelled collections: a face on :class:`cbir.Index`, like the CLI."""
