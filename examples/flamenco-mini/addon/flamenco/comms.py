# SPDX-License-Identifier: GPL-3.0-or-later
"""Talking to the manager through the generated client in flamenco.manager."""


def manager_api(url):
    """Returns the generated MetaApi client for the manager at url."""
    # Imported here: the generated client is only in the packed add-on, not in the repo.
    from .manager import ApiClient, Configuration
    from .manager.api.meta_api import MetaApi

    return MetaApi(ApiClient(Configuration(host=url)))


def describe_manager(url):
    """One line about the manager at url, e.g. 'Flamenco Mini 0.1.0 (git abc123)'."""
    version = manager_api(url).get_version()
    return "%s %s (git %s)" % (version.name, version.version, version.git)
