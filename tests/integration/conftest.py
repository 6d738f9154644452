"""Fixtures shared by the integration tests.

The API's fixtures (``api_client``, ``api_keys``, ``api_settings``, ``api_models_dir``) live in
``api_support.py`` with the helpers the API tests use.
"""

from __future__ import annotations

from tests.integration.api_support import (  # noqa: F401 - re-exported as fixtures
    api_client,
    api_keys,
    api_models_dir,
    api_session_models_dir,
    api_settings,
)
