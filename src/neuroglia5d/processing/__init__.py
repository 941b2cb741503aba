"""Processing steps of the pipeline, each a documented function on arrays."""
