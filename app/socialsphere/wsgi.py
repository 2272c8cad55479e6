"""Gunicorn / WSGI entry point: ``gunicorn -c python:socialsphere.gunicorn_conf socialsphere.wsgi:app``."""
from . import create_app

app = create_app()
