"""Model serving: the LitServe prediction service and offline batch prediction."""
