"""Tools on top of every layer: benchmarks (``reflexarc bench``) and evaluation (``reflexarc eval``)."""
