"""dfwatch engines: model architectures, checkpoint loading, preprocessing, bundles and backends.

Shared by the daemon and the training module (which never import each other); also home of the
configuration schema, logging set-up and the `dfwatch` command-line entry point.
"""
__version__ = "0.1.0"
