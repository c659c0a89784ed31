"""PyTorch track: the reference implementation of every course model."""
