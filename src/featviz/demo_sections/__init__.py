"""Sections of ``featviz demo``, one module each (see `featviz.demo`)."""
