"""One module per framework: ``setup(threads)`` and ``build(case, inputs) -> Impl``."""
