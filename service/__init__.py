"""audience-authz: authorization for audience sharing between ad accounts.

The public surface is small: ``create_app`` (the Flask application), ``Settings`` (every
setting), and the ``audience-authz`` command. The client of the service is a distribution
of its own, ``audience-authz-client`` (client/ in this repository, import
``audience_authz_client``), which needs none of the server's dependencies.
"""

__version__ = "0.2.0"
__all__ = ["Settings", "__version__", "create_app"]


def __getattr__(name: str):
    # imported on first use, so that importing the package (e.g. for the CLI) stays light
    if name == "create_app":
        from audience_authz.http.app import create_app

        return create_app
    if name == "Settings":
        from audience_authz.config import Settings

        return Settings
    raise AttributeError(name)
