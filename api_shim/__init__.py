"""The ACE-Step 1.5 HTTP API (docs/api.md) on top of this project's worker.

``app.py`` holds the routes; a backend does the work: ``backends/local.py`` generates in this process (pod
mode), ``backends/runpod.py`` forwards to a RunPod serverless endpoint running ``handler.py``. The routes
never see tensors and the inference code never sees HTTP.
"""
