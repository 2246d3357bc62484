"""What every layer may use: errors, config composition and typed settings, io
(atomic writes, locks, hashing), the MLflow connection and tag names, the
experiment's output layout and process helpers. Imports no domain package and
no array or deep learning library."""
