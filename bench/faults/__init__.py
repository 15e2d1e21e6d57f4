"""The fault suite (issue 16): ``python -m bench faults`` (``runner.py``) and the pieces the
fast cases in ``tests/faults/`` share with it: the scenarios' injections (``scenarios.py``
through ``control.py``), the invariant checker (``checker.py``), the leak sweep (``leaks.py``)
and the report row (``report.py``)."""
