"""A run folder, in one place: writing it (``folder``: ``save_run``, ``load_run``, env.json), what goes
into its config.json (``config``: the one builder), and the schema every file is checked against when
read (``files``).

Import the module you need (``cnnlab.run.files`` stays light for the web server's scan); ``cnnlab``
re-exports ``save_run`` and ``load_run``.
"""
