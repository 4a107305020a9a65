"""The web console: start, watch, stop and compare studies from a browser.

``python -m autotune.web`` (or ``autotune-web``) serves it on 127.0.0.1:8080. See
docs/web.md. Studies run as their own ``python -m autotune`` processes and are read
back from the MLflow tracking store, so the console holds no state of its own that
matters.
"""
