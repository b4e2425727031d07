"""Model side of the data path: vision tower, connectors, fusion archs and the language model."""
