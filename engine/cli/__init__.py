"""The ``tessera`` command (``engine.cli.main:main``): one module per subcommand.

``demo`` (demo.py), ``backup create`` (backup_cmd.py, a local engine's backups) and
``backups ...`` (backups.py, offline work on a store with no engine); ``serve`` comes from
:mod:`engine.server.main`. Each module adds its parser and handler to the one in main.py.
"""
