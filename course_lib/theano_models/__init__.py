"""Theano track: the course models in the Theano programming model (PyTensor or Theano)."""
