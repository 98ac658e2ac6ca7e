"""The pure domain core: no I/O, no clock, no randomness of its own.

Everything here takes `now` and `rng` as arguments so it can be tested with
plain tables and hypothesis properties.
"""
