"""The feature store: CNN features of every image, computed once, memory-mapped for training."""
