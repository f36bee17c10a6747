"""Where a run is assembled from the command line.

``main`` dispatches the ``salt`` subcommands, ``salt_cli`` is the LightningCLI that builds the
objects of a run, ``wiring`` derives the sizes a config leaves out, ``run_dir`` and ``loggers``
set up what a fit writes, ``errors`` turns user errors into one line and ``profile`` is
``salt profile``. Nothing below this package imports it.
"""
