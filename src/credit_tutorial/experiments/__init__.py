"""Paper-scale experiments, each registered with ``@reproduce.register`` (see :mod:`credit_tutorial.reproduce`)."""
