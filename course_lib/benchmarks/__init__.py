"""Benchmarks behind ``course bench NAME``; each module has ``main(argv)``."""
