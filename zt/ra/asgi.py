"""The import target for uvicorn worker processes: builds the app from ZT_RA_SETTINGS_JSON."""

from __future__ import annotations

from fastapi import FastAPI

from zt import logjson
from zt.ra.app import create_app
from zt.ra.settings import RaSettings


def app_from_env() -> FastAPI:
    settings = RaSettings.from_env()
    logjson.setup("zt-ra", settings.log_level)
    return create_app(settings)
