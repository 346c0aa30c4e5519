"""Where workflow definitions come from: the deployer's files (and the tools beside them), checked at start."""
