"""Where a run is assembled from the command line.

``main`` dispatches the ``salt`` subcommands, ``salt_cli`` is the LightningCLI that builds the
objects of a run, ``wiring`` derives the sizes a config leaves out, ``run_dir`` and ``loggers``
set up what a fit writes, ``errors`` turns user errors into one line and ``profile`` is
``salt profile``. ``precheck`` finds config typos before torch is imported, ``console`` filters
third-party chatter, ``help`` focuses each subcommand's help and ``completion`` answers the
shell's tab completion. Nothing below this package imports it.
"""
