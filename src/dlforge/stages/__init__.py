"""The stage layer: the only code that reads another stage's files (snapshot.json,
best.yaml, retrain.json, run.json) and turns a composed config into a domain call.
One module per stage command; ``config`` merges the sources of a stage's values."""
