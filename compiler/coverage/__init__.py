"""Coverage of real architectures: which ones convert, how close int mode is to float, and what
blocks the rest (:mod:`compiler.coverage.architectures`, :mod:`compiler.coverage.measure`)."""
