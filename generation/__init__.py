"""Model loading, task families, seeded batched sampling and steering.

A library with no Django import, usable from a notebook, the command line
(``python -m generation --help``) and the platform's Celery tasks. Submodules import
torch; this package's ``__init__`` does not, so importing ``generation`` stays cheap.
"""
