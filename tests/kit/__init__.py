"""The shared test kit: the only module tests import from one another (``tests/test_layers.py``).

- :mod:`tests.kit.times`: the test epochs (the units come from :mod:`lake.utc`);
- :mod:`tests.kit.ticks`: the one LAKE_SCHEMA tick builder and the shapes built on it (an
  equity's session, :class:`~tests.kit.ticks.Feed` of random minutes);
- :mod:`tests.kit.frames`: Yahoo frames (base64 protobuf, v1, or its JSON envelope, v2);
- :mod:`tests.kit.lake`: a data directory written and read back (lake, seal, sessions,
  quarantine) without going through the code under test where it matters;
- :mod:`tests.kit.features`: features as columns, the database's table, a process that holds
  the database open;
- :mod:`tests.kit.recorder`: a real Recorder against a real Simulator, and the lake the
  journal implies.

``conftest.py`` files hold fixtures only.
"""
