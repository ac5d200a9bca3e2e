"""Training: SAM's losses, interactive prompt simulation and a resumable trainer."""
