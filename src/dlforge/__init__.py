"""dlforge: a declarative deep learning system, from versioned data to served models.

Importing the package is cheap; submodules load their heavy dependencies
(pandas, pyarrow, torch, ...) only when a command needs them.
"""

__version__ = "0.1.0"
