"""The service's WSGI app for granian, set up as ``serve`` sets it up under gunicorn (JSON
logs at INFO, settings from the environment, Prometheus multiprocess metrics through
``PROMETHEUS_MULTIPROC_DIR`` set by the caller): the benchmark's comparison of servers."""

from audience_authz.http import logs
from audience_authz.http.app import create_app

logs.configure("INFO")
app = create_app()
