"""A feed publisher: a news site's stored articles as RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds."""
from feeds.app import create_app
from feeds.config import Settings, load_settings
from feeds.services import Services, open_services

__all__ = ["create_app", "open_services", "Services", "Settings", "load_settings"]
__version__ = "0.1.0"
