"""labkit: the helper package of sbx-dmr-lab.

Notebooks use one object, ``labkit.connect()`` (added with the `Lab` facade); the
command line is ``labkit`` (see ``labkit.cli``).
"""

__version__ = "0.1.0"
