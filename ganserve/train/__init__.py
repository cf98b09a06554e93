"""Training: data sets, losses and one loop that writes resumable state and shippable checkpoints."""
