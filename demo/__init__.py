"""The demo: both services run against the testbed (``make demo``)."""
