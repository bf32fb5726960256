"""Campus Energy: smart-meter polling, exact energy, and the pipeline around it."""

__version__ = "0.1.0"
