"""The engines' subcommands (bundles, weights, the model server, configuration): its registry."""
from __future__ import annotations

from engines.cli import Command, register_config
from engines.cli import bundle_commands, triton_commands, weights_commands

COMMANDS = (
    Command("weights", weights_commands.register),
    Command("engines", bundle_commands.register),
    Command("serve-models", triton_commands.register_serve),
    Command("config", register_config),
)
