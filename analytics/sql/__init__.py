"""ticklake's SQL files, shipped as package data of ``analytics.sql`` and read through
``analytics.sql_files``.

``schema.sql`` and ``migrate_*.sql`` build the features database, ``views.sql`` its views
over the lake, ``examples/`` the starting points for ``ticklake sql --example NAME``.
"""
