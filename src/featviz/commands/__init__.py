"""Sub-commands of the ``featviz`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as the parser default. `featviz.cli` discovers the
modules here, so adding a command means adding a module.
"""
