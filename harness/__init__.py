"""harness: benchmark small LLMs for harm and cost on edge devices.

Importing the package is cheap: backends, judges and analysis stacks are
imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
