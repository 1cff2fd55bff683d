"""``python -m api_shim`` (or ``acestep-api``): serve the ACE-Step API on ACESTEP_API_HOST:ACESTEP_API_PORT."""

from __future__ import annotations

import logging
import os
import sys


def main() -> None:
    os.environ.setdefault("RUNPOD_DEBUG_LEVEL", "INFO")
    import uvicorn

    from api_shim.app import create_app
    from inference.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    settings = Settings.from_env()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info",
                access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
