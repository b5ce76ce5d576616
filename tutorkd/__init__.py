"""tutorkd: teacher agents that model their student and generate tailored training data.

Importing the package is cheap: torch, vllm and trl are imported only by the modules that use them.
"""

__version__ = "0.1.0"
