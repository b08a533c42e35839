"""Configured sources: what they are (``config``), where they are kept (``store``), how their
credentials are sealed (``secrets``), and the YAML a fleet is declared in (``declarations``)."""
