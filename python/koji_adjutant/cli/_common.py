"""What the subcommands share: reading the builder's configuration and connecting to Podman."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from koji_adjutant.config import AdjutantConfig, ConfigError, load_config

__all__ = ["add_config_argument", "builder_config", "manager"]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="adjutant.conf to read (default: $KOJI_ADJUTANT_CONFIG or the plugin's)"
    )


def builder_config(args: argparse.Namespace) -> AdjutantConfig | None:
    """The configuration, or None after printing why it is invalid."""
    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def manager(config: AdjutantConfig) -> Any:
    import koji_adjutant

    return koji_adjutant.PodmanManager(config.podman_socket, worker_id=config.worker_id)
