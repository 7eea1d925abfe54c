"""The request path: a context, thin stages, and ``build.py``, the one list of their order."""
