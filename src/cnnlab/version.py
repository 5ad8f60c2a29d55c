"""The package's version, in a leaf module: the run folder's env.json and `cnnlab --version` read it here
rather than from the package's ``__init__`` (the public API's hub, which imports no module of its own
at run time but names them all for the type checker)."""

__version__ = "0.1.0"
