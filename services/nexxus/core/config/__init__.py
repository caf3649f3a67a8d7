"""Configuration: the typed `Settings` tree, layered providers and the loader.

from nexxus.core.config import load_settings
settings = load_settings(overrides=["database.adapter=postgres"])
"""

from nexxus.core.config.dump import settings_to_dict
from nexxus.core.config.errors import ConfigError
from nexxus.core.config.loader import ConfigManager, load_settings
from nexxus.core.config.providers import (
    CliProvider,
    ConfigProvider,
    EnvProvider,
    FileProvider,
    discover_providers,
    register_provider,
)
from nexxus.core.config.settings import Settings

__all__ = [
    "CliProvider",
    "ConfigError",
    "ConfigManager",
    "ConfigProvider",
    "EnvProvider",
    "FileProvider",
    "Settings",
    "discover_providers",
    "load_settings",
    "register_provider",
    "settings_to_dict",
]
